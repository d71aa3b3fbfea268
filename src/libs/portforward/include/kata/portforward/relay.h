// One end of the port-forward channel (protocol.h): relays TCP connections as streams over one
// byte stream. The host end (the shim) takes accepted connections and opens a stream for each,
// to the port the connection was dialed on; the guest end (the agent) connects each opened
// stream to 127.0.0.1:<port> (then [::1]:<port>) in its network namespace. One thread runs
// everything with non-blocking I/O, so one slow connection never holds up another: its stream
// stops when its window is used up, and the channel itself is always read.
//
// The channel is any connected byte-stream fd: the host side of a virtio-serial port (QEMU's
// chardev unix socket), the guest's /dev/vportNpM, a vsock or unix socket. Only the guest's
// serial port needs RelayOptions::waitForPeer (its hangup means "host not there yet").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kata/common/fd.h"
#include "kata/common/log.h"

namespace kata::portforward {

enum class Role { kHost, kGuest };

struct RelayOptions {
    // Bytes a peer may send on one stream before the receiver credits them back: the most
    // either side holds for one connection.
    uint32_t window = 256 * 1024;
    uint32_t maxData = 16 * 1024;  // largest DATA payload this side sends
    // No socket is read while this many bytes wait to be written to the channel.
    size_t channelHighWater = 256 * 1024;
    size_t maxStreams = 1024;
    // The channel is the guest's virtio-serial port: EOF or a hangup means the host side is not
    // connected (yet); keep the port open, wait for the host and greet it again. Without it a
    // guest relay's run() returns when the channel ends (a socket: accept the next one), a
    // host relay keeps resetting what it is handed.
    bool waitForPeer = false;
    // Host: how long an accepted connection waits for the guest's HELLO before it is reset.
    std::chrono::milliseconds readyTimeout{10000};
};

struct RelayStats {
    bool ready = false;             // HELLO exchanged with the peer
    bool channelOpen = true;        // false once the channel ended (host end)
    size_t streams = 0;             // streams alive now
    uint64_t streamsOpened = 0;     // streams that reached OPEN_OK
    uint64_t streamsFailed = 0;     // OPEN_FAIL answered or received
    size_t maxStreamBuffered = 0;   // most bytes held now for one stream's socket
    size_t peakStreamBuffered = 0;  // the most ever held for one stream's socket
    size_t channelQueued = 0;       // bytes waiting to be written to the channel
};

class Relay {
  public:
    // channelName names the channel in logs ("/dev/vport1p2", "unix:///run/vc/vm/<sid>/pf.sock").
    Relay(Role role, UniqueFd channel, std::string channelName, RelayOptions opts = {},
          const log::Logger& log = log::Logger("portforward"));
    ~Relay();  // stop()s
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;

    // Host: each connection accepted on this listening socket becomes a stream to the port it
    // was dialed on (getsockname of the accepted socket). Thread-safe.
    void addListener(UniqueFd listener);
    // Host: one connected socket to relay to `port` in the guest. Thread-safe.
    void addConnection(UniqueFd conn, uint16_t port);

    void start();  // runs the relay on a thread of its own
    void run();    // runs it on the calling thread until stop()
    void stop();   // thread-safe, idempotent; every relayed connection is reset
    RelayStats stats() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kata::portforward
