// ttrpc's wire format: the 10-byte frame header and the two envelope messages (ttrpc.Request,
// ttrpc.Response with google.rpc.Status), encoded and decoded by hand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kata/ttrpc/ttrpc.h"

namespace kata::ttrpc::wire {

constexpr size_t kHeaderSize = 10;

enum FrameType : uint8_t {
    kTypeRequest = 1,
    kTypeResponse = 2,
    kTypeData = 3,
};

enum FrameFlags : uint8_t {
    kFlagRemoteClosed = 0x1,
    kFlagRemoteOpen = 0x2,
    kFlagNoData = 0x4,
};

struct FrameHeader {
    uint32_t length = 0;
    uint32_t streamId = 0;
    uint8_t type = 0;
    uint8_t flags = 0;
};

void encodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]);
FrameHeader decodeHeader(const uint8_t in[kHeaderSize]);

struct Frame {
    FrameHeader header;
    std::string payload;
};

// Splits a byte stream into frames. Feed it whatever read() returned, then take frames out.
class FrameDecoder {
  public:
    enum class Result { kFrame, kNeedMore, kOversized };
    void feed(const char* data, size_t n);
    // kOversized is final: the stream cannot be resynchronised.
    Result next(Frame* out);
    // Declared length of the frame that was too large (for error messages).
    uint32_t oversizedLength() const { return oversized_; }
    size_t buffered() const { return buf_.size() - pos_; }

  private:
    std::string buf_;
    size_t pos_ = 0;
    uint32_t oversized_ = 0;
};

struct Request {
    std::string service;
    std::string method;
    std::string payload;
    int64_t timeoutNano = 0;
    Metadata metadata;
};

struct Status {
    int32_t code = 0;
    std::string message;
    std::vector<std::string> details;  // serialized google.protobuf.Any, kept opaque
};

struct Response {
    bool hasStatus = false;
    Status status;
    std::string payload;
};

std::string encodeRequest(const Request& r);
// false when the bytes are not a valid ttrpc.Request.
bool decodeRequest(std::string_view in, Request* out);
std::string encodeResponse(const Response& r);
bool decodeResponse(std::string_view in, Response* out);

}  // namespace kata::ttrpc::wire
