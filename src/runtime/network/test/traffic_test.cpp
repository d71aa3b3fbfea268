// Real frames through an attached pod namespace. A fake guest sits on the tap fd where QEMU's
// virtio-net would: it reads and writes Ethernet frames behind a virtio_net_hdr, answers ARP for
// the pod address and ICMP echo requests. The other end is the kernel of the "outside"
// namespace, behind the veth.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <poll.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/network/pod_network.h"
#include "pod_netns_fixture.h"

namespace kata::network {
namespace {

using testing::json;
using testing::kPodMac;
using testing::PodNetnsTest;

using Mac = std::array<uint8_t, 6>;
using Bytes = std::vector<uint8_t>;

// sizeof(struct virtio_net_hdr) (linux/virtio_net.h), the tap's default TUNSETVNETHDRSZ.
constexpr size_t kVnetHdrLen = 10;
constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint16_t kArpRequest = 1, kArpReply = 2;
constexpr uint8_t kIcmpEchoReply = 0, kIcmpEchoRequest = 8;

Mac parseMac(const std::string& text) {
    Mac m{};
    unsigned v[6];
    EXPECT_EQ(
        std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]), 6)
        << text;
    for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
    return m;
}

std::array<uint8_t, 4> ipv4(const char* text) {
    std::array<uint8_t, 4> a{};
    EXPECT_EQ(::inet_pton(AF_INET, text, a.data()), 1);
    return a;
}

void append(Bytes& out, const void* data, size_t len) {
    auto* p = static_cast<const uint8_t*>(data);
    out.insert(out.end(), p, p + len);
}
void appendU16(Bytes& out, uint16_t hostOrder) {
    uint16_t v = htons(hostOrder);
    append(out, &v, 2);
}
uint16_t readU16(const Bytes& b, size_t off) {
    return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}

// The Internet checksum (RFC 1071) over b[off, off+len).
uint16_t checksum(const Bytes& b, size_t off, size_t len) {
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2) sum += readU16(b, off + i);
    if (len % 2) sum += b[off + len - 1] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}
void putU16(Bytes& b, size_t off, uint16_t v) {
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
}

struct Frame {
    Mac dst{}, src{};
    uint16_t type = 0;
    Bytes payload;
};

Bytes ethernet(const Mac& dst, const Mac& src, uint16_t type, const Bytes& payload) {
    Bytes f;
    append(f, dst.data(), 6);
    append(f, src.data(), 6);
    appendU16(f, type);
    append(f, payload.data(), payload.size());
    return f;
}

Bytes arp(uint16_t op, const Mac& sha, std::array<uint8_t, 4> spa, const Mac& tha,
          std::array<uint8_t, 4> tpa) {
    Bytes p;
    appendU16(p, 1);  // Ethernet
    appendU16(p, ETH_P_IP);
    p.push_back(6);
    p.push_back(4);
    appendU16(p, op);
    append(p, sha.data(), 6);
    append(p, spa.data(), 4);
    append(p, tha.data(), 6);
    append(p, tpa.data(), 4);
    return p;
}

// An ICMP echo request or reply message (no IP header).
Bytes icmpMessage(uint8_t type, uint16_t id, uint16_t seq, const Bytes& data) {
    Bytes m;
    m.push_back(type);
    m.push_back(0);
    appendU16(m, 0);  // checksum, below
    appendU16(m, id);
    appendU16(m, seq);
    append(m, data.data(), data.size());
    putU16(m, 2, checksum(m, 0, m.size()));
    return m;
}

// An IPv4 packet carrying an ICMP echo request or reply.
Bytes icmpEcho(uint8_t type, std::array<uint8_t, 4> src, std::array<uint8_t, 4> dst, uint16_t id,
               uint16_t seq, const Bytes& data) {
    Bytes icmp = icmpMessage(type, id, seq, data);
    Bytes p(20, 0);
    p.reserve(20 + icmp.size());
    p[0] = 0x45;  // version 4, 5 words of header
    putU16(p, 2, static_cast<uint16_t>(20 + icmp.size()));
    p[8] = 64;  // TTL
    p[9] = IPPROTO_ICMP;
    std::memcpy(&p[12], src.data(), 4);
    std::memcpy(&p[16], dst.data(), 4);
    putU16(p, 10, checksum(p, 0, 20));
    p.insert(p.end(), icmp.begin(), icmp.end());
    return p;
}

// Fields of an IPv4 ICMP echo packet, when it is one.
struct Echo {
    uint8_t type = 0;
    std::array<uint8_t, 4> src{}, dst{};
    uint16_t id = 0, seq = 0;
    Bytes ipPacket, data;
};
std::optional<Echo> parseEcho(const Frame& f) {
    const Bytes& p = f.payload;
    if (f.type != ETH_P_IP || p.size() < 28 || (p[0] >> 4) != 4 || p[9] != IPPROTO_ICMP) {
        return std::nullopt;
    }
    size_t ihl = (p[0] & 0x0f) * 4u;
    if (p.size() < ihl + 8) return std::nullopt;
    Echo e;
    e.type = p[ihl];
    std::memcpy(e.src.data(), &p[12], 4);
    std::memcpy(e.dst.data(), &p[16], 4);
    e.id = readU16(p, ihl + 4);
    e.seq = readU16(p, ihl + 6);
    size_t total = std::min<size_t>(readU16(p, 2), p.size());
    e.data.assign(p.begin() + static_cast<long>(ihl + 8), p.begin() + static_cast<long>(total));
    return e;
}

bool isArp(const Frame& f, uint16_t op) {
    return f.type == ETH_P_ARP && f.payload.size() >= 28 && readU16(f.payload, 6) == op;
}
std::array<uint8_t, 4> arpAddress(const Frame& f, size_t off) {
    std::array<uint8_t, 4> a{};
    std::memcpy(a.data(), &f.payload[off], 4);
    return a;
}
Mac arpMac(const Frame& f, size_t off) {
    Mac m{};
    std::memcpy(m.data(), &f.payload[off], 6);
    return m;
}
// Offsets in an ARP payload: sender MAC 8, sender IP 14, target MAC 18, target IP 24.

// ping, without needing the ping tool: count echo requests from a raw ICMP socket in the
// namespace at netnsPath to dst; returns how many were answered (each within 2 s).
int pingFrom(const std::string& netnsPath, const char* dst, int count) {
    int answered = 0;
    runInNetns(netnsPath, [&] {
        UniqueFd sock(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP));
        if (!sock) throwErrno("socket", "raw ICMP");
        sockaddr_in to{};
        to.sin_family = AF_INET;
        ::inet_pton(AF_INET, dst, &to.sin_addr);
        const uint16_t id = 0x7e57;
        for (uint16_t seq = 1; seq <= count; ++seq) {
            Bytes req = icmpMessage(kIcmpEchoRequest, id, seq, Bytes(32, 0x5a));
            if (::sendto(sock.get(), req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&to),
                         sizeof to) < 0) {
                throwErrno("send echo request to", dst);
            }
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
            while (std::chrono::steady_clock::now() < deadline) {
                pollfd pfd{sock.get(), POLLIN, 0};
                if (::poll(&pfd, 1, 100) <= 0) continue;
                Bytes buf(2048);
                ssize_t n = ::recv(sock.get(), buf.data(), buf.size(), 0);
                if (n <= 0) continue;
                buf.resize(static_cast<size_t>(n));
                Frame f;  // a raw socket gets the IP packet: wrap it to reuse parseEcho
                f.type = ETH_P_IP;
                f.payload = buf;
                auto e = parseEcho(f);
                if (e && e->type == kIcmpEchoReply && e->id == id && e->seq == seq) {
                    ++answered;
                    break;
                }
            }
        }
    });
    return answered;
}

// Plays the guest on a tap fd opened with IFF_VNET_HDR: every frame has a 10-byte
// virtio_net_hdr in front (all zero here: no checksum offload, no GSO).
class FakeGuest {
  public:
    FakeGuest(int tapFd, Mac mac, std::array<uint8_t, 4> ip) : fd_(tapFd), mac_(mac), ip_(ip) {
        int p[2];
        EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
        stopRead_.reset(p[0]);
        stopWrite_.reset(p[1]);
        thread_ = std::thread([this] { loop(); });
    }
    ~FakeGuest() { stop(); }

    void stop() {
        if (!thread_.joinable()) return;
        ASSERT_EQ(::write(stopWrite_.get(), "x", 1), 1);
        thread_.join();
    }

    void send(const Bytes& frame) {
        Bytes out(kVnetHdrLen, 0);
        out.insert(out.end(), frame.begin(), frame.end());
        ASSERT_EQ(::write(fd_, out.data(), out.size()), static_cast<ssize_t>(out.size()))
            << std::strerror(errno);
    }

    // The first frame received (so far or within the timeout) that matches.
    std::optional<Frame> waitFor(const std::function<bool(const Frame&)>& match,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        std::unique_lock lock(mu_);
        std::optional<Frame> found;
        cv_.wait_for(lock, timeout, [&] {
            for (const auto& f : received_) {
                if (match(f)) {
                    found = f;
                    return true;
                }
            }
            return false;
        });
        return found;
    }

    int echoRepliesSent() {
        std::lock_guard lock(mu_);
        return echoReplies_;
    }

  private:
    void loop() {
        std::vector<uint8_t> buf(65536 + kVnetHdrLen);
        for (;;) {
            pollfd fds[2] = {{fd_, POLLIN, 0}, {stopRead_.get(), POLLIN, 0}};
            if (::poll(fds, 2, -1) < 0) {
                if (errno == EINTR) continue;
                return;
            }
            if (fds[1].revents) return;
            if (!(fds[0].revents & POLLIN)) {
                if (fds[0].revents) return;  // the tap went away
                continue;
            }
            ssize_t n = ::read(fd_, buf.data(), buf.size());
            if (n < static_cast<ssize_t>(kVnetHdrLen + 14)) continue;
            Bytes raw(buf.begin() + kVnetHdrLen, buf.begin() + n);
            Frame f;
            std::memcpy(f.dst.data(), &raw[0], 6);
            std::memcpy(f.src.data(), &raw[6], 6);
            f.type = readU16(raw, 12);
            f.payload.assign(raw.begin() + 14, raw.end());
            answer(f);
            std::lock_guard lock(mu_);
            received_.push_back(std::move(f));
            cv_.notify_all();
        }
    }

    void answer(const Frame& f) {
        if (isArp(f, kArpRequest) && arpAddress(f, 24) == ip_) {
            send(ethernet(f.src, mac_, ETH_P_ARP,
                          arp(kArpReply, mac_, ip_, arpMac(f, 8), arpAddress(f, 14))));
            return;
        }
        auto echo = parseEcho(f);
        if (echo && echo->type == kIcmpEchoRequest && echo->dst == ip_) {
            send(ethernet(
                f.src, mac_, ETH_P_IP,
                icmpEcho(kIcmpEchoReply, ip_, echo->src, echo->id, echo->seq, echo->data)));
            std::lock_guard lock(mu_);
            ++echoReplies_;
        }
    }

    int fd_;
    Mac mac_;
    std::array<uint8_t, 4> ip_;
    UniqueFd stopRead_, stopWrite_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Frame> received_;
    int echoReplies_ = 0;
};

TEST_F(PodNetnsTest, FramesWrittenToTheTapLeaveThroughTheVeth) {
    auto eps = attach(podPath());
    ASSERT_EQ(eps.size(), 1u);
    const Mac guestMac = parseMac(eps[0].guestLink().mac);
    const auto podIp = ipv4("10.123.0.2"), gatewayIp = ipv4("10.123.0.1");
    const Mac outsideMac =
        parseMac(json::parse(outside("-j link show dev veth-out"))[0]["address"]);
    FakeGuest guest(eps[0].tapFd(), guestMac, podIp);

    // ARP: who has 10.123.0.1? The outside kernel answers with veth-out's MAC.
    guest.send(ethernet(kBroadcast, guestMac, ETH_P_ARP,
                        arp(kArpRequest, guestMac, podIp, Mac{}, gatewayIp)));
    auto reply = guest.waitFor(
        [&](const Frame& f) { return isArp(f, kArpReply) && arpAddress(f, 14) == gatewayIp; });
    ASSERT_TRUE(reply) << "no ARP reply from 10.123.0.1 on the tap";
    EXPECT_EQ(arpMac(*reply, 8), outsideMac);
    EXPECT_EQ(reply->dst, guestMac);

    // ICMP echo to 10.123.0.1 and its reply.
    const Bytes data = {'k', 'a', 't', 'a', '-', 't', 'c', 'f', 'i', 'l', 't', 'e', 'r'};
    guest.send(ethernet(outsideMac, guestMac, ETH_P_IP,
                        icmpEcho(kIcmpEchoRequest, podIp, gatewayIp, 0x4b41, 1, data)));
    auto pong = guest.waitFor([&](const Frame& f) {
        auto e = parseEcho(f);
        return e && e->type == kIcmpEchoReply && e->src == gatewayIp && e->id == 0x4b41;
    });
    ASSERT_TRUE(pong) << "no echo reply from 10.123.0.1 on the tap";
    auto echo = parseEcho(*pong);
    EXPECT_EQ(echo->dst, podIp);
    EXPECT_EQ(echo->seq, 1);
    EXPECT_EQ(echo->data, data);
    // The outside learned the guest's MAC, which is the veth's.
    EXPECT_NE(outside("neigh show 10.123.0.2").find(kPodMac), std::string::npos);
}

TEST_F(PodNetnsTest, APingFromOutsideIsAnsweredThroughTheTap) {
    auto eps = attach(podPath());
    ASSERT_EQ(eps.size(), 1u);
    const auto podIp = ipv4("10.123.0.2"), gatewayIp = ipv4("10.123.0.1");
    {
        FakeGuest guest(eps[0].tapFd(), parseMac(eps[0].guestLink().mac), podIp);
        EXPECT_EQ(pingFrom(outsidePath(), "10.123.0.2", 3), 3);
        // The requests arrived as frames on the tap fd, and the fake guest made the replies:
        // the pod namespace's own stack never saw them.
        auto request = guest.waitFor([&](const Frame& f) {
            auto e = parseEcho(f);
            return e && e->type == kIcmpEchoRequest && e->src == gatewayIp && e->dst == podIp;
        });
        ASSERT_TRUE(request);
        EXPECT_EQ(request->dst, parseMac(kPodMac));
        EXPECT_GE(guest.echoRepliesSent(), 3);
    }
    eps[0].detach();
    expectAsCniLeftIt();
    // Detached, the pod namespace answers for itself again, as CNI set it up.
    EXPECT_EQ(pingFrom(outsidePath(), "10.123.0.2", 1), 1);
}

}  // namespace
}  // namespace kata::network
