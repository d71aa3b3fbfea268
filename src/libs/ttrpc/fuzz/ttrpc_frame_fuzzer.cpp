// libFuzzer target: arbitrary bytes through the frame decoder (in arbitrary chunks) and every
// frame's payload through the envelope decoders; what decodes must re-encode to something that
// decodes to the same values.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "wire.h"

using namespace kata::ttrpc;

namespace {

void checkRequest(std::string_view payload) {
    wire::Request req;
    if (!wire::decodeRequest(payload, &req)) return;
    wire::Request back;
    if (!wire::decodeRequest(wire::encodeRequest(req), &back)) abort();
    if (back.service != req.service || back.method != req.method || back.payload != req.payload ||
        back.timeoutNano != req.timeoutNano || back.metadata != req.metadata) {
        abort();
    }
}

void checkResponse(std::string_view payload) {
    wire::Response resp;
    if (!wire::decodeResponse(payload, &resp)) return;
    wire::Response back;
    if (!wire::decodeResponse(wire::encodeResponse(resp), &back)) abort();
    if (back.payload != resp.payload || back.status.code != resp.status.code ||
        back.status.message != resp.status.message || back.status.details != resp.status.details) {
        abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // The first byte picks the chunk size, so frames split across reads get exercised.
    size_t chunk = size_t(data[0] % 17) + 1;
    const char* p = reinterpret_cast<const char*>(data + 1);
    size_t left = size - 1;
    wire::FrameDecoder dec;
    while (left > 0) {
        size_t n = left < chunk ? left : chunk;
        dec.feed(p, n);
        p += n;
        left -= n;
        wire::Frame f;
        wire::FrameDecoder::Result r;
        while ((r = dec.next(&f)) == wire::FrameDecoder::Result::kFrame) {
            if (f.payload.size() != f.header.length) abort();
            checkRequest(f.payload);
            checkResponse(f.payload);
        }
        if (r == wire::FrameDecoder::Result::kOversized) {
            if (dec.oversizedLength() <= kMaxMessageSize) abort();
            break;
        }
    }
    // The raw input as an envelope, too.
    checkRequest(std::string_view(reinterpret_cast<const char*>(data), size));
    checkResponse(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
