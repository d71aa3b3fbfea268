#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "channel.h"
#include "test_util.h"

namespace kata::ttrpc {
namespace {

using namespace std::chrono_literals;

TEST(Channel, CloseReleasesTheUnderlyingFileAtOnce) {
    // A virtio-serial port can be open once only: after close() the next session must be able
    // to reopen it even while handlers still hold the channel.
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    UniqueFd writer(p[1]);
    auto ch = std::make_shared<Channel>(UniqueFd(p[0]), "pipe");
    ch->close();
    ::signal(SIGPIPE, SIG_IGN);
    errno = 0;
    EXPECT_EQ(::write(writer.get(), "x", 1), -1);
    EXPECT_EQ(errno, EPIPE) << "the read end is still open";
    EXPECT_THROW(ch->writeFrame(1, wire::kTypeData, 0, "late"), Error);
    wire::Frame f;
    EXPECT_EQ(ch->readFrame(&f), Channel::ReadResult::kClosed);
}

TEST(Channel, CloseWakesABlockedReaderAndWriter) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd peer(sv[1]);
    Channel ch(UniqueFd(sv[0]), "socketpair");
    std::thread reader([&] {
        wire::Frame f;
        EXPECT_EQ(ch.readFrame(&f), Channel::ReadResult::kClosed);
    });
    // The peer never reads: the writer fills the socket buffer and blocks.
    std::thread writer([&] {
        std::string big(kMaxMessageSize, 'x');
        EXPECT_THROW(for (;;) ch.writeFrame(1, wire::kTypeData, 0, big), Error);
    });
    std::this_thread::sleep_for(200ms);
    ch.close();
    reader.join();
    writer.join();
}

TEST(Channel, ReportsEofWhenThePeerHangsUp) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd peer(sv[1]);
    Channel ch(UniqueFd(sv[0]), "socketpair");
    testing::writeAllOrThrow(peer.get(), testing::rawFrame(7, wire::kTypeData, 1, "abc"));
    peer.reset();
    wire::Frame f;
    ASSERT_EQ(ch.readFrame(&f), Channel::ReadResult::kFrame);
    EXPECT_EQ(f.header.streamId, 7u);
    EXPECT_EQ(f.header.flags, 1);
    EXPECT_EQ(f.payload, "abc");
    EXPECT_EQ(ch.readFrame(&f), Channel::ReadResult::kEof);
    EXPECT_EQ(ch.bytesRead(), wire::kHeaderSize + 3);
}

}  // namespace
}  // namespace kata::ttrpc
