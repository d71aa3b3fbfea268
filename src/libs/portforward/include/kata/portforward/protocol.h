// The port-forward channel's wire format: one byte stream (a virtio-serial port, or any socket)
// carries many TCP connections as streams. Every frame is a 10-byte header, all integers
// big-endian, then the payload:
//
//   u32 stream id | u8 type | u8 flags (0) | u32 payload length
//
// Stream 0 is the channel itself (HELLO, HELLO_ACK). The host opens streams (odd and even ids
// alike, never reused within a session); the guest answers OPEN with OPEN_OK or OPEN_FAIL.
// Flow control is per stream and credit-based: OPEN and OPEN_OK each carry the receive window
// of the side that sends it, the peer may have at most that many DATA bytes unacknowledged, and
// the receiver returns CREDIT once it has written bytes to its socket. A stalled reader thus
// stops its own stream only, and no side buffers more than the windows it granted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kata::portforward {

// The virtio-serial port that carries the channel (docs/CONTRACTS.md).
inline constexpr const char* kSerialPortName = "kata.portforward.0";
inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kHeaderSize = 10;
// Larger frames break the protocol: the byte stream cannot be resynchronised after one.
inline constexpr uint32_t kMaxPayload = 64 * 1024;

enum class FrameType : uint8_t {
    kHello = 1,     // stream 0; u32 version. The receiver resets all streams and answers ACK.
    kHelloAck = 2,  // stream 0; u32 version
    kOpen = 3,      // host -> guest; u16 port, u32 the host's receive window
    kOpenOk = 4,    // guest -> host; u32 the guest's receive window
    kOpenFail = 5,  // guest -> host; u32 errno, then a text naming what failed and why
    kData = 6,      // bytes of the connection, counted against the receiver's window
    kCredit = 7,    // u32 bytes the sender of CREDIT has consumed: the window grows by that
    kClose = 8,     // the sender will send no more DATA (half-close, shutdown(SHUT_WR))
    kReset = 9,     // the stream is gone both ways; optional text says why
};
const char* frameTypeName(FrameType t);

struct FrameHeader {
    uint32_t streamId = 0;
    FrameType type = FrameType::kData;
    uint8_t flags = 0;
    uint32_t length = 0;
};

struct Frame {
    FrameHeader header;
    std::string payload;
};

// Appends one encoded frame to out.
void appendFrame(std::string& out, uint32_t streamId, FrameType type, std::string_view payload);

// Payload helpers; the parsers return false when the payload is too short.
std::string encodeU32(uint32_t v);
std::string encodeOpen(uint16_t port, uint32_t window);
bool parseOpen(std::string_view p, uint16_t* port, uint32_t* window);
bool parseU32(std::string_view p, uint32_t* v);
std::string encodeOpenFail(uint32_t err, std::string_view text);
bool parseOpenFail(std::string_view p, uint32_t* err, std::string* text);

// Splits the byte stream into frames: feed what read() returned, then take frames out.
class FrameDecoder {
  public:
    enum class Result { kFrame, kNeedMore, kOversized };
    void feed(const char* data, size_t n);
    // kOversized is final.
    Result next(Frame* out);
    uint32_t oversizedLength() const { return oversized_; }
    size_t buffered() const { return buf_.size() - pos_; }

  private:
    std::string buf_;
    size_t pos_ = 0;
    uint32_t oversized_ = 0;
};

}  // namespace kata::portforward
