#include "kata/netlink/netlink.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "kata/common/error.h"

namespace kata::netlink {

Request::Request(uint16_t type, uint16_t flags) {
    append(nullptr, sizeof(nlmsghdr));
    hdr()->nlmsg_type = type;
    hdr()->nlmsg_flags = flags | NLM_F_REQUEST;
}

size_t Request::append(const void* data, size_t len) {
    size_t off = NLMSG_ALIGN(buf_.size());
    buf_.resize(off + NLMSG_ALIGN(len), 0);
    if (data) std::memcpy(buf_.data() + off, data, len);
    hdr()->nlmsg_len = static_cast<uint32_t>(buf_.size());
    return off;
}

void Request::put(uint16_t type, const void* data, size_t len) {
    rtattr rta{};
    rta.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    rta.rta_type = type;
    size_t off = append(&rta, sizeof rta);
    size_t dataOff = off + RTA_ALIGN(sizeof rta);
    buf_.resize(NLMSG_ALIGN(dataOff + len), 0);
    if (len) std::memcpy(buf_.data() + dataOff, data, len);
    hdr()->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

size_t Request::beginNest(uint16_t type) {
    rtattr rta{};
    rta.rta_len = static_cast<unsigned short>(RTA_LENGTH(0));
    // The kernel's strict validation (tc actions, for one) wants nests marked as such.
    rta.rta_type = type | NLA_F_NESTED;
    return append(&rta, sizeof rta);
}

void Request::endNest(size_t token) {
    auto* rta = reinterpret_cast<rtattr*>(buf_.data() + token);
    rta->rta_len = static_cast<unsigned short>(buf_.size() - token);
}

Attrs parseAttrs(const char* data, size_t len) {
    Attrs attrs;
    for (const auto& [type, value] : attrList(std::string_view(data, len))) attrs[type] = value;
    return attrs;
}

Attrs parseAttrs(const Message& msg, size_t headerLen) {
    size_t off = NLMSG_ALIGN(headerLen);
    if (msg.payload.size() <= off) return {};
    return parseAttrs(msg.payload.data() + off, msg.payload.size() - off);
}

std::vector<std::pair<uint16_t, std::string_view>> attrList(std::string_view nested) {
    std::vector<std::pair<uint16_t, std::string_view>> out;
    auto* rta = reinterpret_cast<const rtattr*>(nested.data());
    int remaining = static_cast<int>(nested.size());
    while (RTA_OK(rta, remaining)) {
        out.emplace_back(
            rta->rta_type & NLA_TYPE_MASK,
            std::string_view(static_cast<const char*>(RTA_DATA(rta)), RTA_PAYLOAD(rta)));
        rta = RTA_NEXT(rta, remaining);
    }
    return out;
}

std::optional<uint32_t> u32Attr(const Attrs& attrs, uint16_t type) {
    auto it = attrs.find(type);
    if (it == attrs.end() || it->second.size() < sizeof(uint32_t)) return std::nullopt;
    uint32_t v;
    std::memcpy(&v, it->second.data(), sizeof v);
    return v;
}

std::string stringAttr(const Attrs& attrs, uint16_t type) {
    auto it = attrs.find(type);
    if (it == attrs.end()) return "";
    std::string_view s = it->second;
    if (size_t nul = s.find('\0'); nul != std::string_view::npos) s = s.substr(0, nul);
    return std::string(s);
}

std::string formatMac(std::string_view raw) {
    std::string out;
    char part[4];
    for (size_t i = 0; i < raw.size(); ++i) {
        std::snprintf(part, sizeof part, "%s%02x", i ? ":" : "",
                      static_cast<unsigned char>(raw[i]));
        out += part;
    }
    return out;
}

std::string formatIp(int family, std::string_view raw) {
    size_t want = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    if (want == 0 || raw.size() < want) return "";
    char buf[INET6_ADDRSTRLEN] = {};
    if (!::inet_ntop(family, raw.data(), buf, sizeof buf)) return "";
    return buf;
}

Socket::Socket() : fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {
    if (!fd_) throwErrno("socket", "NETLINK_ROUTE");
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
        throwErrno("bind", "NETLINK_ROUTE socket");
    }
    int one = 1;
    // Extended ACKs give the kernel's reason text; capped ACKs leave out the echoed request.
    // Older kernels ignore both options.
    ::setsockopt(fd_.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    ::setsockopt(fd_.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
}

void Socket::send(Request& req, const std::string& op, const std::string& what) {
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
bool Socket::receive(uint32_t seq, const std::string& op, const std::string& what,
                     const std::function<bool(nlmsghdr*)>& fn) {
    if (!buf_) buf_ = std::make_unique<char[]>(kReceiveBufferSize);
    ssize_t n;
    do {
        n = ::recv(fd_.get(), buf_.get(), kReceiveBufferSize, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throwErrno(op, what);
    // NLMSG_OK/NLMSG_NEXT by hand: the macros compare the u32 length with an int.
    size_t left = static_cast<size_t>(n);
    char* p = buf_.get();
    while (left >= sizeof(nlmsghdr)) {
        auto* h = reinterpret_cast<nlmsghdr*>(p);
        if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > left) break;
        // A late answer to an earlier request is skipped.
        if (h->nlmsg_seq == seq && fn(h)) return true;
        size_t step = NLMSG_ALIGN(h->nlmsg_len);
        if (step >= left) break;
        left -= step;
        p += step;
    }
    return false;
}

namespace {

// The kernel's NLMSGERR_ATTR_MSG text of an error answer, or "".
std::string extAckMessage(const nlmsghdr* h) {
    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
    auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    size_t off = sizeof(nlmsgerr);
    if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += NLMSG_ALIGN(err->msg.nlmsg_len - NLMSG_HDRLEN);
    size_t payload = NLMSG_PAYLOAD(h, 0);
    if (off >= payload) return "";
    Attrs tlvs = parseAttrs(static_cast<const char*>(NLMSG_DATA(h)) + off, payload - off);
    return stringAttr(tlvs, NLMSGERR_ATTR_MSG);
}

[[noreturn]] void throwAnswer(const nlmsghdr* h, const std::string& op, const std::string& what) {
    auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    std::string reason = extAckMessage(h);
    throw SystemError(op, reason.empty() ? what : what + " (kernel: " + reason + ")", -err->error);
}

}  // namespace

void Socket::request(Request& req, const std::string& op, const std::string& what) {
    req.hdr()->nlmsg_flags |= NLM_F_ACK;
    send(req, op, what);
    uint32_t seq = seq_;
    while (!receive(seq, op, what, [&](nlmsghdr* h) {
        if (h->nlmsg_type != NLMSG_ERROR) return false;
        if (static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error != 0) throwAnswer(h, op, what);
        return true;
    })) {
    }
}

std::vector<Message> Socket::dump(Request& req, const std::string& what) {
    req.hdr()->nlmsg_flags |= NLM_F_DUMP;
    send(req, "netlink dump", what);
    uint32_t seq = seq_;
    std::vector<Message> out;
    while (!receive(seq, "netlink dump", what, [&](nlmsghdr* h) {
        if (h->nlmsg_type == NLMSG_DONE) return true;
        if (h->nlmsg_type == NLMSG_ERROR) {
            if (static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error != 0) {
                throwAnswer(h, "netlink dump", what);
            }
            return true;
        }
        Message m;
        m.type = h->nlmsg_type;
        auto* data = static_cast<const char*>(NLMSG_DATA(h));
        m.payload.assign(data, data + NLMSG_PAYLOAD(h, 0));
        out.push_back(std::move(m));
        return false;
    })) {
    }
    return out;
}

}  // namespace kata::netlink
