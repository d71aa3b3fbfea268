#include "kata/agent/image/digest.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "kata/agent/image/content_store.h"
#include "test_util.h"

namespace kata::agent::image {
namespace {

using test::expectError;

// sha256("hello\n")
const std::string kHello =
    "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

TEST(DigestTest, Sha256) {
    EXPECT_EQ(sha256Digest("hello\n"), kHello);
    Sha256 h;
    h.update("hel", 3);
    h.update("lo\n", 3);
    EXPECT_EQ(h.finish(), kHello);
    EXPECT_TRUE(isValidDigest(kHello));
    EXPECT_FALSE(isValidDigest("sha256:ABC"));
    EXPECT_FALSE(isValidDigest("sha512:" + std::string(64, 'a')));
    EXPECT_FALSE(isValidDigest("sha256:" + std::string(64, 'A')));
}

TEST(DigestTest, VerifierRefusesTheFirstByteTooMany) {
    VerifyingDigester v(kHello, 6, "layer x");
    v.update("hello", 5);
    expectError(StatusCode::kDataLoss, [&] { v.update("\n!", 2); },
                {"layer x: larger than its declared size of 6 bytes"});
}

TEST(DigestTest, VerifierChecksLengthAndDigest) {
    {
        VerifyingDigester v(kHello, 6, "layer x");
        v.update("hello", 5);
        expectError(StatusCode::kDataLoss, [&] { v.finish(); },
                    {"layer x: got 5 bytes, declared 6"});
    }
    {
        VerifyingDigester v(kHello, 6, "layer x");
        v.update("HELLO\n", 6);
        expectError(StatusCode::kDataLoss, [&] { v.finish(); },
                    {"layer x: digest mismatch: got sha256:", "declared " + kHello});
    }
    VerifyingDigester ok(kHello, 6, "layer x");
    ok.update("hello\n", 6);
    ok.finish();
}

TEST(ContentStoreTest, CommitsOnlyVerifiedBlobs) {
    test::TempDir dir;
    ContentStore store(dir.path() + "/store");
    EXPECT_FALSE(store.has(kHello, 6));
    {
        auto w = store.writer(kHello, 6, "blob");
        w->write("HELLO\n", 6);
        expectError(StatusCode::kDataLoss, [&] { w->commit(); }, {"digest mismatch"});
    }
    EXPECT_FALSE(store.has(kHello, 6));
    EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/store/ingest"));
    {
        auto w = store.writer(kHello, 6, "blob");
        w->write("xx", 2);
        w->restart();
        w->write("hello\n", 6);
        w->commit();
    }
    EXPECT_TRUE(store.has(kHello, 6));
    EXPECT_FALSE(store.has(kHello, 7));
    EXPECT_EQ(store.read(kHello), "hello\n");
    EXPECT_EQ(store.blobPath(kHello), dir.path() + "/store/blobs/sha256/" + kHello.substr(7));
    EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/store/ingest"));
}

}  // namespace
}  // namespace kata::agent::image
