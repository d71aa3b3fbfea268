// One byte stream (socket, serial port, pty) carrying ttrpc frames. One thread reads; any
// thread writes (writes are serialized). close() from any thread wakes both sides.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <string_view>

#include "kata/common/fd.h"
#include "wire.h"

namespace kata::ttrpc {

class Channel {
  public:
    // `what` names the peer in errors and logs ("unix:/run/x.sock", "/dev/vport0p1").
    Channel(UniqueFd fd, std::string what);
    ~Channel();
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    enum class ReadResult {
        kFrame,
        kEof,        // the peer went away (EOF, hangup, reset)
        kClosed,     // close() was called
        kOversized,  // a frame over kMaxMessageSize: the stream is unusable
    };
    // Blocks until a whole frame arrived or the stream ended. Reader thread only.
    ReadResult readFrame(wire::Frame* out);
    // Bytes received so far.
    size_t bytesRead() const { return bytesRead_; }
    uint32_t oversizedLength() const { return decoder_.oversizedLength(); }

    // Throws kata::Error(kUnavailable) when the channel is closed or broken, and
    // kResourceExhausted when payload exceeds kMaxMessageSize.
    void writeFrame(uint32_t streamId, uint8_t type, uint8_t flags, std::string_view payload);

    // Idempotent and thread safe. The fd stays open until destruction so its number is not
    // reused while another thread may still be using it.
    void close();
    bool closed() const { return closed_.load(); }
    const std::string& what() const { return what_; }

  private:
    bool waitFor(short events);  // false when closed
    void writeAll(const char* p, size_t n);

    UniqueFd fd_;
    UniqueFd wake_;  // eventfd, readable once close() ran
    std::string what_;
    bool isSocket_ = false;
    std::atomic<bool> closed_{false};
    std::mutex writeMu_;
    wire::FrameDecoder decoder_;
    size_t bytesRead_ = 0;
};

}  // namespace kata::ttrpc
