// A minimal rtnetlink client: builds requests, waits for ACKs, collects dumps. The socket lives
// in the network namespace of the thread that creates it.
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kata/common/fd.h"

namespace kata::agent::net::detail {

// One request being built: nlmsghdr, the family header, then attributes.
class NlRequest {
  public:
    NlRequest(uint16_t type, uint16_t flags);
    // Appends the family header (ifinfomsg, ifaddrmsg, rtmsg, ndmsg) and returns it.
    template <typename T>
    T* header() {
        size_t off = append(nullptr, sizeof(T));
        return reinterpret_cast<T*>(buf_.data() + off);
    }
    void put(uint16_t type, const void* data, size_t len);
    void putU32(uint16_t type, uint32_t v) { put(type, &v, sizeof v); }
    void putString(uint16_t type, const std::string& s) { put(type, s.c_str(), s.size() + 1); }
    nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }

  private:
    size_t append(const void* data, size_t len);
    std::vector<char> buf_;
};

// A message received from a dump: its type and payload (family header + attributes).
struct NlMessage {
    uint16_t type = 0;
    std::vector<char> payload;
    template <typename T>
    const T* header() const {
        return payload.size() >= sizeof(T) ? reinterpret_cast<const T*>(payload.data()) : nullptr;
    }
};

// Attributes after a family header of size headerLen, by type (the last one of a type wins).
using Attrs = std::map<uint16_t, std::string_view>;
Attrs parseAttrs(const char* data, size_t len);
Attrs parseAttrs(const NlMessage& msg, size_t headerLen);

class NetlinkSocket {
  public:
    NetlinkSocket();
    // Sends the request with NLM_F_ACK and waits for the answer; a negative error becomes a
    // SystemError "<op> <what>: <reason>".
    void request(NlRequest& req, const std::string& op, const std::string& what);
    // Sends a dump request and returns every message until NLMSG_DONE.
    std::vector<NlMessage> dump(NlRequest& req, const std::string& what);

  private:
    void send(NlRequest& req, const std::string& op, const std::string& what);
    bool receive(uint32_t seq, const std::string& op, const std::string& what,
                 const std::function<bool(nlmsghdr*)>& fn);
    UniqueFd fd_;
    uint32_t seq_ = 0;
    // One datagram of answers; allocated with the socket (a static thread_local buffer would be
    // 64 KiB resident in every thread of the agent).
    std::unique_ptr<char[]> buf_;
};

}  // namespace kata::agent::net::detail
