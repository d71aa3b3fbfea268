#include "kata/portforward/protocol.h"

#include <cstring>

namespace kata::portforward {

namespace {
void putU32(char* p, uint32_t v) {
    p[0] = char(v >> 24);
    p[1] = char(v >> 16);
    p[2] = char(v >> 8);
    p[3] = char(v);
}
uint32_t getU32(const char* p) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return uint32_t(u[0]) << 24 | uint32_t(u[1]) << 16 | uint32_t(u[2]) << 8 | uint32_t(u[3]);
}
}  // namespace

const char* frameTypeName(FrameType t) {
    switch (t) {
        case FrameType::kHello:
            return "HELLO";
        case FrameType::kHelloAck:
            return "HELLO_ACK";
        case FrameType::kOpen:
            return "OPEN";
        case FrameType::kOpenOk:
            return "OPEN_OK";
        case FrameType::kOpenFail:
            return "OPEN_FAIL";
        case FrameType::kData:
            return "DATA";
        case FrameType::kCredit:
            return "CREDIT";
        case FrameType::kClose:
            return "CLOSE";
        case FrameType::kReset:
            return "RESET";
    }
    return "UNKNOWN";
}

void appendFrame(std::string& out, uint32_t streamId, FrameType type, std::string_view payload) {
    char h[kHeaderSize];
    putU32(h, streamId);
    h[4] = char(type);
    h[5] = 0;
    putU32(h + 6, uint32_t(payload.size()));
    out.append(h, sizeof h);
    out.append(payload);
}

std::string encodeU32(uint32_t v) {
    std::string s(4, '\0');
    putU32(s.data(), v);
    return s;
}

std::string encodeOpen(uint16_t port, uint32_t window) {
    std::string s(6, '\0');
    s[0] = char(port >> 8);
    s[1] = char(port);
    putU32(s.data() + 2, window);
    return s;
}

bool parseOpen(std::string_view p, uint16_t* port, uint32_t* window) {
    if (p.size() < 6) return false;
    *port = uint16_t(uint8_t(p[0]) << 8 | uint8_t(p[1]));
    *window = getU32(p.data() + 2);
    return true;
}

bool parseU32(std::string_view p, uint32_t* v) {
    if (p.size() < 4) return false;
    *v = getU32(p.data());
    return true;
}

std::string encodeOpenFail(uint32_t err, std::string_view text) {
    return encodeU32(err) + std::string(text);
}

bool parseOpenFail(std::string_view p, uint32_t* err, std::string* text) {
    if (!parseU32(p, err)) return false;
    text->assign(p.substr(4));
    return true;
}

void FrameDecoder::feed(const char* data, size_t n) {
    if (pos_ > 0 && pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
    } else if (pos_ > 64 * 1024) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    buf_.append(data, n);
}

FrameDecoder::Result FrameDecoder::next(Frame* out) {
    if (oversized_) return Result::kOversized;
    if (buffered() < kHeaderSize) return Result::kNeedMore;
    const char* h = buf_.data() + pos_;
    uint32_t length = getU32(h + 6);
    if (length > kMaxPayload) {
        oversized_ = length;
        return Result::kOversized;
    }
    if (buffered() < kHeaderSize + length) return Result::kNeedMore;
    out->header.streamId = getU32(h);
    out->header.type = FrameType(uint8_t(h[4]));
    out->header.flags = uint8_t(h[5]);
    out->header.length = length;
    out->payload.assign(h + kHeaderSize, length);
    pos_ += kHeaderSize + length;
    return Result::kFrame;
}

}  // namespace kata::portforward
