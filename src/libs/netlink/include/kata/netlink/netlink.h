// A minimal rtnetlink (NETLINK_ROUTE) client shared by the agent and the runtime: builds
// requests (with nested attributes for tc), waits for ACKs, collects dumps. A socket lives in the
// network namespace of the thread that created it, for its whole life.
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kata/common/fd.h"

namespace kata::netlink {

// One request being built: nlmsghdr, the family header, then attributes.
class Request {
  public:
    Request(uint16_t type, uint16_t flags);
    // Appends the family header (ifinfomsg, ifaddrmsg, rtmsg, ndmsg, tcmsg) and returns it. The
    // pointer is valid until the next append; fill it in before adding attributes.
    template <typename T>
    T* header() {
        size_t off = append(nullptr, sizeof(T));
        return reinterpret_cast<T*>(buf_.data() + off);
    }
    void put(uint16_t type, const void* data, size_t len);
    void putU8(uint16_t type, uint8_t v) { put(type, &v, sizeof v); }
    void putU16(uint16_t type, uint16_t v) { put(type, &v, sizeof v); }
    void putU32(uint16_t type, uint32_t v) { put(type, &v, sizeof v); }
    void putString(uint16_t type, const std::string& s) { put(type, s.c_str(), s.size() + 1); }
    // Opens a nested attribute: everything put until the matching endNest(token) is its payload.
    // Nests may contain nests; close them innermost first.
    size_t beginNest(uint16_t type);
    void endNest(size_t token);
    nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
    const std::vector<char>& bytes() const { return buf_; }

  private:
    size_t append(const void* data, size_t len);
    std::vector<char> buf_;
};

// A message received from a dump: its type and payload (family header + attributes).
struct Message {
    uint16_t type = 0;
    std::vector<char> payload;
    template <typename T>
    const T* header() const {
        return payload.size() >= sizeof(T) ? reinterpret_cast<const T*>(payload.data()) : nullptr;
    }
};

// Attributes by type (the last one of a type wins; NLA_F_NESTED and NLA_F_NET_BYTEORDER are
// masked off the type). Views point into the buffer that was parsed.
using Attrs = std::map<uint16_t, std::string_view>;
Attrs parseAttrs(const char* data, size_t len);
inline Attrs parseAttrs(std::string_view nested) {
    return parseAttrs(nested.data(), nested.size());
}
// The attributes after a family header of size headerLen.
Attrs parseAttrs(const Message& msg, size_t headerLen);

// Every attribute in order, duplicates kept (action lists are nests numbered 1, 2, ...).
std::vector<std::pair<uint16_t, std::string_view>> attrList(std::string_view nested);

// A u32 attribute, or nullopt when it is absent or too short.
std::optional<uint32_t> u32Attr(const Attrs& attrs, uint16_t type);
// A NUL-terminated string attribute without its NUL, or "" when absent.
std::string stringAttr(const Attrs& attrs, uint16_t type);

// "02:00:00:00:01:01" from the raw bytes of a link-layer address.
std::string formatMac(std::string_view raw);
// "10.1.0.2" / "fd00::2" from a raw 4- or 16-byte address; "" when it does not fit the family.
std::string formatIp(int family, std::string_view raw);

class Socket {
  public:
    Socket();
    // Sends the request with NLM_F_ACK and waits for the answer; a negative error becomes a
    // SystemError "<op> <what>: <reason>", with the kernel's extended-ACK text in <what> when it
    // gives one ("... (kernel: Exclusivity flag on, cannot modify)").
    void request(Request& req, const std::string& op, const std::string& what);
    // Sends a dump request and returns every message until NLMSG_DONE.
    std::vector<Message> dump(Request& req, const std::string& what);

  private:
    void send(Request& req, const std::string& op, const std::string& what);
    bool receive(uint32_t seq, const std::string& op, const std::string& what,
                 const std::function<bool(nlmsghdr*)>& fn);
    UniqueFd fd_;
    uint32_t seq_ = 0;
    // One datagram of answers; allocated with the socket (a static thread_local buffer would be
    // 64 KiB resident in every thread of the agent).
    std::unique_ptr<char[]> buf_;
};

}  // namespace kata::netlink
