#include "netlink.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "kata/common/error.h"

namespace kata::agent::net::detail {

NlRequest::NlRequest(uint16_t type, uint16_t flags) {
    append(nullptr, sizeof(nlmsghdr));
    hdr()->nlmsg_type = type;
    hdr()->nlmsg_flags = flags | NLM_F_REQUEST;
}

size_t NlRequest::append(const void* data, size_t len) {
    size_t off = NLMSG_ALIGN(buf_.size());
    buf_.resize(off + NLMSG_ALIGN(len), 0);
    if (data) std::memcpy(buf_.data() + off, data, len);
    reinterpret_cast<nlmsghdr*>(buf_.data())->nlmsg_len = static_cast<uint32_t>(buf_.size());
    return off;
}

void NlRequest::put(uint16_t type, const void* data, size_t len) {
    rtattr rta{};
    rta.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    rta.rta_type = type;
    size_t off = append(&rta, sizeof rta);
    size_t dataOff = off + RTA_ALIGN(sizeof rta);
    buf_.resize(NLMSG_ALIGN(dataOff + len), 0);
    std::memcpy(buf_.data() + dataOff, data, len);
    hdr()->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

Attrs parseAttrs(const char* data, size_t len) {
    Attrs attrs;
    auto* rta = reinterpret_cast<const rtattr*>(data);
    int remaining = static_cast<int>(len);
    while (RTA_OK(rta, remaining)) {
        attrs[rta->rta_type & NLA_TYPE_MASK] =
            std::string_view(static_cast<const char*>(RTA_DATA(rta)), RTA_PAYLOAD(rta));
        rta = RTA_NEXT(rta, remaining);
    }
    return attrs;
}

Attrs parseAttrs(const NlMessage& msg, size_t headerLen) {
    size_t off = NLMSG_ALIGN(headerLen);
    if (msg.payload.size() <= off) return {};
    return parseAttrs(msg.payload.data() + off, msg.payload.size() - off);
}

NetlinkSocket::NetlinkSocket() : fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {
    if (!fd_) throwErrno("socket", "NETLINK_ROUTE");
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
        throwErrno("bind", "NETLINK_ROUTE socket");
    }
    int one = 1;
    // Extended ACKs give the kernel's reason text; older kernels just ignore the option.
    ::setsockopt(fd_.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
}

void NetlinkSocket::send(NlRequest& req, const std::string& op, const std::string& what) {
    req.hdr()->nlmsg_seq = ++seq_;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    ssize_t n;
    do {
        n = ::sendto(fd_.get(), req.hdr(), req.hdr()->nlmsg_len, 0,
                     reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throwErrno(op, what);
}

// The largest datagram the kernel sends for a dump (it fills up to a page-sized multiple).
constexpr size_t kReceiveBufferSize = 65536;

// Receives one datagram of netlink messages; calls fn(nlmsghdr*) for each; stops when fn
// returns true.
bool NetlinkSocket::receive(uint32_t seq, const std::string& op, const std::string& what,
                            const std::function<bool(nlmsghdr*)>& fn) {
    if (!buf_) buf_ = std::make_unique<char[]>(kReceiveBufferSize);
    ssize_t n;
    do {
        n = ::recv(fd_.get(), buf_.get(), kReceiveBufferSize, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throwErrno(op, what);
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf_.get()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != seq) continue;  // a late answer to an earlier request
        if (fn(h)) return true;
    }
    return false;
}

void NetlinkSocket::request(NlRequest& req, const std::string& op, const std::string& what) {
    req.hdr()->nlmsg_flags |= NLM_F_ACK;
    send(req, op, what);
    uint32_t seq = seq_;
    while (!receive(seq, op, what, [&](nlmsghdr* h) {
        if (h->nlmsg_type != NLMSG_ERROR) return false;
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        if (err->error != 0) throw SystemError(op, what, -err->error);
        return true;
    })) {
    }
}

std::vector<NlMessage> NetlinkSocket::dump(NlRequest& req, const std::string& what) {
    req.hdr()->nlmsg_flags |= NLM_F_DUMP;
    send(req, "netlink dump", what);
    uint32_t seq = seq_;
    std::vector<NlMessage> out;
    while (!receive(seq, "netlink dump", what, [&](nlmsghdr* h) {
        if (h->nlmsg_type == NLMSG_DONE) return true;
        if (h->nlmsg_type == NLMSG_ERROR) {
            auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
            if (err->error != 0) throw SystemError("netlink dump", what, -err->error);
            return true;
        }
        NlMessage m;
        m.type = h->nlmsg_type;
        auto* data = static_cast<const char*>(NLMSG_DATA(h));
        m.payload.assign(data, data + NLMSG_PAYLOAD(h, 0));
        out.push_back(std::move(m));
        return false;
    })) {
    }
    return out;
}

}  // namespace kata::agent::net::detail
