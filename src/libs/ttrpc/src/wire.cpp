#include "wire.h"

#include <cstring>

namespace kata::ttrpc {

const std::string* CallContext::metadataValue(const std::string& key) const {
    for (const auto& [k, v] : metadata) {
        if (k == key) return &v;
    }
    return nullptr;
}

namespace wire {

void encodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]) {
    out[0] = uint8_t(h.length >> 24);
    out[1] = uint8_t(h.length >> 16);
    out[2] = uint8_t(h.length >> 8);
    out[3] = uint8_t(h.length);
    out[4] = uint8_t(h.streamId >> 24);
    out[5] = uint8_t(h.streamId >> 16);
    out[6] = uint8_t(h.streamId >> 8);
    out[7] = uint8_t(h.streamId);
    out[8] = h.type;
    out[9] = h.flags;
}

FrameHeader decodeHeader(const uint8_t in[kHeaderSize]) {
    FrameHeader h;
    h.length = uint32_t(in[0]) << 24 | uint32_t(in[1]) << 16 | uint32_t(in[2]) << 8 | in[3];
    h.streamId = uint32_t(in[4]) << 24 | uint32_t(in[5]) << 16 | uint32_t(in[6]) << 8 | in[7];
    h.type = in[8];
    h.flags = in[9];
    return h;
}

void FrameDecoder::feed(const char* data, size_t n) {
    // Drop what was consumed before growing, so the buffer stays about one frame large.
    if (pos_ > 0 && (pos_ == buf_.size() || pos_ > 64 * 1024)) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    buf_.append(data, n);
}

FrameDecoder::Result FrameDecoder::next(Frame* out) {
    if (oversized_ != 0) return Result::kOversized;
    if (buf_.size() - pos_ < kHeaderSize) return Result::kNeedMore;
    FrameHeader h = decodeHeader(reinterpret_cast<const uint8_t*>(buf_.data() + pos_));
    if (h.length > kMaxMessageSize) {
        oversized_ = h.length;
        return Result::kOversized;
    }
    if (buf_.size() - pos_ - kHeaderSize < h.length) return Result::kNeedMore;
    out->header = h;
    out->payload.assign(buf_, pos_ + kHeaderSize, h.length);
    pos_ += kHeaderSize + h.length;
    return Result::kFrame;
}

// ---- protobuf wire encoding (only what the envelopes need) ----

namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void putVarint(std::string* out, uint64_t v) {
    while (v >= 0x80) {
        out->push_back(char(uint8_t(v) | 0x80));
        v >>= 7;
    }
    out->push_back(char(v));
}

void putTag(std::string* out, uint32_t field, WireType wt) {
    putVarint(out, uint64_t(field) << 3 | wt);
}

void putBytes(std::string* out, uint32_t field, std::string_view v) {
    if (v.empty()) return;  // proto3: default values are not written
    putTag(out, field, kLengthDelimited);
    putVarint(out, v.size());
    out->append(v);
}

void putBytesAlways(std::string* out, uint32_t field, std::string_view v) {
    putTag(out, field, kLengthDelimited);
    putVarint(out, v.size());
    out->append(v);
}

void putInt(std::string* out, uint32_t field, int64_t v) {
    if (v == 0) return;
    putTag(out, field, kVarint);
    putVarint(out, uint64_t(v));  // negative int32/int64 are sign-extended to 10 bytes
}

class Reader {
  public:
    explicit Reader(std::string_view in) : in_(in) {}
    bool done() const { return pos_ == in_.size(); }

    bool varint(uint64_t* v) {
        uint64_t result = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos_ >= in_.size()) return false;
            uint8_t b = uint8_t(in_[pos_++]);
            result |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) {
                *v = result;
                return true;
            }
        }
        return false;  // more than 10 bytes
    }

    bool tag(uint32_t* field, uint32_t* wireType) {
        uint64_t t;
        if (!varint(&t) || t > 0xffffffffu) return false;
        *field = uint32_t(t >> 3);
        *wireType = uint32_t(t & 7);
        return *field != 0;
    }

    bool bytes(std::string_view* v) {
        uint64_t n;
        if (!varint(&n) || n > in_.size() - pos_) return false;
        *v = in_.substr(pos_, n);
        pos_ += n;
        return true;
    }

    bool skip(uint32_t wireType) {
        uint64_t ignored;
        std::string_view ignoredBytes;
        switch (wireType) {
            case kVarint:
                return varint(&ignored);
            case kFixed64:
                return advance(8);
            case kLengthDelimited:
                return bytes(&ignoredBytes);
            case kFixed32:
                return advance(4);
            default:
                return false;  // groups are not used by proto3
        }
    }

  private:
    bool advance(size_t n) {
        if (in_.size() - pos_ < n) return false;
        pos_ += n;
        return true;
    }
    std::string_view in_;
    size_t pos_ = 0;
};

// Reads one field of the expected wire type, or skips an unknown one.
#define KATA_WIRE_EXPECT(wt, expected) \
    if ((wt) != (expected)) return false

bool decodeKeyValue(std::string_view in, std::pair<std::string, std::string>* out) {
    Reader r(in);
    while (!r.done()) {
        uint32_t field, wt;
        if (!r.tag(&field, &wt)) return false;
        std::string_view v;
        if (field == 1 || field == 2) {
            KATA_WIRE_EXPECT(wt, kLengthDelimited);
            if (!r.bytes(&v)) return false;
            (field == 1 ? out->first : out->second).assign(v);
        } else if (!r.skip(wt)) {
            return false;
        }
    }
    return true;
}

bool decodeStatus(std::string_view in, Status* out) {
    Reader r(in);
    while (!r.done()) {
        uint32_t field, wt;
        if (!r.tag(&field, &wt)) return false;
        std::string_view v;
        uint64_t n;
        switch (field) {
            case 1:
                KATA_WIRE_EXPECT(wt, kVarint);
                if (!r.varint(&n)) return false;
                out->code = int32_t(uint32_t(n));
                break;
            case 2:
                KATA_WIRE_EXPECT(wt, kLengthDelimited);
                if (!r.bytes(&v)) return false;
                out->message.assign(v);
                break;
            case 3:
                KATA_WIRE_EXPECT(wt, kLengthDelimited);
                if (!r.bytes(&v)) return false;
                out->details.emplace_back(v);
                break;
            default:
                if (!r.skip(wt)) return false;
        }
    }
    return true;
}

}  // namespace

std::string encodeRequest(const Request& req) {
    std::string out;
    out.reserve(req.service.size() + req.method.size() + req.payload.size() + 32);
    putBytes(&out, 1, req.service);
    putBytes(&out, 2, req.method);
    putBytes(&out, 3, req.payload);
    putInt(&out, 4, req.timeoutNano);
    for (const auto& [k, v] : req.metadata) {
        std::string kv;
        putBytes(&kv, 1, k);
        putBytes(&kv, 2, v);
        putBytesAlways(&out, 5, kv);
    }
    return out;
}

bool decodeRequest(std::string_view in, Request* out) {
    *out = Request{};
    Reader r(in);
    while (!r.done()) {
        uint32_t field, wt;
        if (!r.tag(&field, &wt)) return false;
        std::string_view v;
        uint64_t n;
        switch (field) {
            case 1:
            case 2:
            case 3:
                KATA_WIRE_EXPECT(wt, kLengthDelimited);
                if (!r.bytes(&v)) return false;
                (field == 1 ? out->service : field == 2 ? out->method : out->payload).assign(v);
                break;
            case 4:
                KATA_WIRE_EXPECT(wt, kVarint);
                if (!r.varint(&n)) return false;
                out->timeoutNano = int64_t(n);
                break;
            case 5: {
                KATA_WIRE_EXPECT(wt, kLengthDelimited);
                if (!r.bytes(&v)) return false;
                std::pair<std::string, std::string> kv;
                if (!decodeKeyValue(v, &kv)) return false;
                out->metadata.push_back(std::move(kv));
                break;
            }
            default:
                if (!r.skip(wt)) return false;
        }
    }
    return true;
}

std::string encodeResponse(const Response& resp) {
    std::string out;
    out.reserve(resp.payload.size() + resp.status.message.size() + 16);
    if (resp.hasStatus) {
        std::string st;
        putInt(&st, 1, resp.status.code);
        putBytes(&st, 2, resp.status.message);
        for (const auto& d : resp.status.details) putBytesAlways(&st, 3, d);
        putBytesAlways(&out, 1, st);
    }
    putBytes(&out, 2, resp.payload);
    return out;
}

bool decodeResponse(std::string_view in, Response* out) {
    *out = Response{};
    Reader r(in);
    while (!r.done()) {
        uint32_t field, wt;
        if (!r.tag(&field, &wt)) return false;
        std::string_view v;
        switch (field) {
            case 1:
                KATA_WIRE_EXPECT(wt, kLengthDelimited);
                if (!r.bytes(&v)) return false;
                out->hasStatus = true;
                // A message field that appears twice is merged, as protobuf does.
                if (!decodeStatus(v, &out->status)) return false;
                break;
            case 2:
                KATA_WIRE_EXPECT(wt, kLengthDelimited);
                if (!r.bytes(&v)) return false;
                out->payload.assign(v);
                break;
            default:
                if (!r.skip(wt)) return false;
        }
    }
    return true;
}

#undef KATA_WIRE_EXPECT

}  // namespace wire
}  // namespace kata::ttrpc
