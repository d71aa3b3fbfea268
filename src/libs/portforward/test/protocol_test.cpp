#include "kata/portforward/protocol.h"

#include <gtest/gtest.h>

#include <vector>

namespace kata::portforward {
namespace {

TEST(ProtocolTest, FramesComeBackWhateverTheByteStreamCutsThemInto) {
    std::string wire;
    appendFrame(wire, 0, FrameType::kHello, encodeU32(kProtocolVersion));
    appendFrame(wire, 7, FrameType::kOpen, encodeOpen(8080, 65536));
    appendFrame(wire, 7, FrameType::kData, std::string(3000, 'x'));
    appendFrame(wire, 7, FrameType::kClose, "");
    // The header is 10 bytes: stream id, type, flags, length; big-endian.
    EXPECT_EQ(wire.substr(0, 10), std::string("\0\0\0\0\x01\0\0\0\0\x04", 10));

    FrameDecoder d;
    std::vector<Frame> got;
    for (char c : wire) {
        d.feed(&c, 1);
        Frame f;
        while (d.next(&f) == FrameDecoder::Result::kFrame) got.push_back(f);
    }
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[0].header.type, FrameType::kHello);
    uint32_t v = 0;
    ASSERT_TRUE(parseU32(got[0].payload, &v));
    EXPECT_EQ(v, kProtocolVersion);
    EXPECT_EQ(got[1].header.streamId, 7u);
    uint16_t port = 0;
    uint32_t window = 0;
    ASSERT_TRUE(parseOpen(got[1].payload, &port, &window));
    EXPECT_EQ(port, 8080);
    EXPECT_EQ(window, 65536u);
    EXPECT_EQ(got[2].payload, std::string(3000, 'x'));
    EXPECT_EQ(got[3].header.type, FrameType::kClose);
    EXPECT_TRUE(got[3].payload.empty());
    EXPECT_EQ(d.buffered(), 0u);
}

TEST(ProtocolTest, AnOversizedFrameEndsTheStream) {
    std::string wire;
    appendFrame(wire, 1, FrameType::kData, std::string(kMaxPayload + 1, 'x'));
    FrameDecoder d;
    d.feed(wire.data(), 10);
    Frame f;
    EXPECT_EQ(d.next(&f), FrameDecoder::Result::kOversized);
    EXPECT_EQ(d.oversizedLength(), kMaxPayload + 1);
    appendFrame(wire, 1, FrameType::kClose, "");
    d.feed(wire.data() + 10, wire.size() - 10);
    EXPECT_EQ(d.next(&f), FrameDecoder::Result::kOversized);
}

TEST(ProtocolTest, OpenFailCarriesTheErrnoAndTheReason) {
    uint32_t err = 0;
    std::string text;
    ASSERT_TRUE(parseOpenFail(encodeOpenFail(111, "connect 127.0.0.1:81: refused"), &err, &text));
    EXPECT_EQ(err, 111u);
    EXPECT_EQ(text, "connect 127.0.0.1:81: refused");
    EXPECT_FALSE(parseOpenFail("ab", &err, &text));
    uint16_t port;
    uint32_t window;
    EXPECT_FALSE(parseOpen("12345", &port, &window));
}

}  // namespace
}  // namespace kata::portforward
