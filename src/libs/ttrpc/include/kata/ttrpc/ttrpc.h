// ttrpc: containerd's lightweight RPC protocol (protobuf messages in small length-prefixed frames,
// many calls multiplexed over one byte stream). The guest agent serves it over virtio-serial or
// vsock, the shim serves containerd's Task API with it and calls the agent and containerd's event
// service with it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kata/common/error.h"
#include "kata/common/fd.h"

namespace kata::ttrpc {

// Largest frame payload accepted or sent; a peer announcing more is dropped.
constexpr size_t kMaxMessageSize = 4 << 20;

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct CallContext {
    std::string service, method;
    Metadata metadata;
    // 0 when the client set no timeout.
    std::chrono::nanoseconds timeout{0};
    // When the client stops waiting (steady clock), time_point::max() without a timeout. The
    // server does not cancel handlers; long-running ones may check this.
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();

    // First value for key, or nullptr.
    const std::string* metadataValue(const std::string& key) const;
};

// Returns the serialized response payload; throw kata::Error(code, msg) to answer a status.
using RawHandler = std::function<std::string(const CallContext&, const std::string& payload)>;

// The server's end of a streaming call. Messages are serialized payloads.
class ServerStream {
  public:
    virtual ~ServerStream() = default;
    // Waits for the next message from the client; false once the client closed its sending side
    // (or the connection is gone).
    virtual bool recv(std::string* msg) = 0;
    // Sends one message to the client; throws kUnavailable when the connection is gone.
    virtual void send(const std::string& msg) = 0;
};

// Runs for the life of a streaming call. `payload` is the request's payload (the first message
// when the client streams). The returned string is the final response payload (often empty);
// throwing kata::Error ends the stream with that status.
using StreamHandler =
    std::function<std::string(const CallContext&, const std::string& payload, ServerStream&)>;

class Server {
  public:
    Server();
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    void registerRaw(const std::string& service, const std::string& method, RawHandler h);
    // parse failure -> INVALID_ARGUMENT naming the method
    template <class Req, class Resp>
    void registerMethod(const std::string& service, const std::string& method,
                        std::function<Resp(const CallContext&, const Req&)> fn);
    // A streaming method; clientStreams: the client sends data frames after the request,
    // serverStreams: the handler may send messages before its final response.
    void registerStream(const std::string& service, const std::string& method, StreamHandler h,
                        bool clientStreams = true, bool serverStreams = true);

    void serveListener(UniqueFd listenFd);  // blocks; accepts connections until shutdown()
    void serveConnection(UniqueFd fd);      // blocks until the peer goes away or shutdown()
    // virtio-serial port: reopen and keep serving when the host side goes away and comes back;
    // returns after shutdown()
    void serveSerial(const std::string& devicePath);
    // What serveSerial does, with the opening left to the caller: serves on each fd `open`
    // returns, calls it again (after a pause) when the peer hangs up or open throws.
    void serveReopening(const std::function<UniqueFd()>& open, const std::string& what);
    void shutdown();  // thread-safe, makes serve* return

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Listens on a unix socket path; replaces a stale socket file.
UniqueFd listenUnix(const std::string& path);
UniqueFd listenVsock(uint32_t port);
// "unix:///p", "unix:/p", "/p", "vsock://cid:port"; retries until timeout (the VM may be booting)
UniqueFd dial(const std::string& address, std::chrono::milliseconds timeout);

// The client's end of a streaming call.
class ClientStream {
  public:
    virtual ~ClientStream() = default;
    // Sends one message (only for client-streaming calls).
    virtual void send(const std::string& msg) = 0;
    // Tells the server that no more messages follow.
    virtual void closeSend() = 0;
    // Waits for the next message from the server; false when the server finished the call
    // (then finish() returns at once). Throws kDeadlineExceeded when timeout (>0) passes.
    virtual bool recv(std::string* msg,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) = 0;
    // Waits for the final response: returns its payload or throws kata::Error with the remote
    // status. Messages not yet received are dropped.
    virtual std::string finish(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) = 0;
};

class Client {
  public:
    explicit Client(UniqueFd fd);
    // peer names the other side in errors ("unix:///run/vc/vm/<id>/kata.sock").
    Client(UniqueFd fd, const std::string& peer);
    // dial(address, timeout) and a Client named after the address.
    static std::unique_ptr<Client> connect(const std::string& address,
                                           std::chrono::milliseconds timeout);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    // A moved-from Client is closed: calls fail with kUnavailable.
    Client(Client&& other) noexcept;
    Client& operator=(Client&& other) noexcept;

    // throws kata::Error carrying the remote status code and message; kDeadlineExceeded on
    // timeout; kUnavailable when the connection is gone. timeout 0 = wait forever.
    std::string callRaw(const std::string& service, const std::string& method,
                        const std::string& payload, std::chrono::milliseconds timeout,
                        const Metadata& md = {});
    template <class Req, class Resp>
    Resp call(const std::string& service, const std::string& method, const Req& req,
              std::chrono::milliseconds timeout, const Metadata& md = {});
    // Opens a streaming call. clientStreams must match the server's registration. timeout is
    // sent to the server as the call's timeout (0 = none).
    std::unique_ptr<ClientStream> openStream(const std::string& service, const std::string& method,
                                             const std::string& payload, bool clientStreams,
                                             const Metadata& md = {},
                                             std::chrono::milliseconds timeout = {});
    bool connected() const;
    void close();

    struct Impl;  // opaque; public only so the stream implementation can share it

  private:
    std::shared_ptr<Impl> impl_;
};

// ---- templates ----

template <class Req, class Resp>
void Server::registerMethod(const std::string& service, const std::string& method,
                            std::function<Resp(const CallContext&, const Req&)> fn) {
    registerRaw(
        service, method, [fn = std::move(fn)](const CallContext& ctx, const std::string& payload) {
            Req req;
            if (!req.ParseFromString(payload)) {
                throw Error(StatusCode::kInvalidArgument, "parse request of " + ctx.service + "/" +
                                                              ctx.method +
                                                              ": invalid protobuf payload");
            }
            return fn(ctx, req).SerializeAsString();
        });
}

template <class Req, class Resp>
Resp Client::call(const std::string& service, const std::string& method, const Req& req,
                  std::chrono::milliseconds timeout, const Metadata& md) {
    std::string out = callRaw(service, method, req.SerializeAsString(), timeout, md);
    Resp resp;
    if (!resp.ParseFromString(out)) {
        throw Error(StatusCode::kInternal,
                    "parse response of " + service + "/" + method + ": invalid protobuf payload");
    }
    return resp;
}

}  // namespace kata::ttrpc
