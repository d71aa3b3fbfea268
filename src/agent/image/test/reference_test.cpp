#include "kata/agent/image/reference.h"

#include "kata/agent/image/registry.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace kata::agent::image {
namespace {

using test::expectError;

struct Case {
    const char* text;
    const char* registry;
    const char* repository;
    const char* tag;
    const char* digest;
};

const char* kDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ReferenceTest, NormalisesLikeDocker) {
    std::string d = kDigest;
    std::vector<Case> cases = {
        {"busybox", "docker.io", "library/busybox", "latest", ""},
        {"busybox:1.36", "docker.io", "library/busybox", "1.36", ""},
        {"library/busybox", "docker.io", "library/busybox", "latest", ""},
        {"org/app", "docker.io", "org/app", "latest", ""},
        {"docker.io/busybox", "docker.io", "library/busybox", "latest", ""},
        {"index.docker.io/org/app:v1", "docker.io", "org/app", "v1", ""},
        {"localhost/app", "localhost", "app", "latest", ""},
        {"localhost:5000/app:dev", "localhost:5000", "app", "dev", ""},
        {"127.0.0.1:5000/team/app", "127.0.0.1:5000", "team/app", "latest", ""},
        {"[::1]:5000/app:x", "[::1]:5000", "app", "x", ""},
        {"ghcr.io/org/sub/app:v1.2-rc_3", "ghcr.io", "org/sub/app", "v1.2-rc_3", ""},
        {"quay.io/a-b__c.d/e---f", "quay.io", "a-b__c.d/e---f", "latest", ""},
        {"Registry/app", "Registry", "app", "latest", ""},
    };
    for (const auto& c : cases) {
        ImageReference r = parseImageReference(c.text);
        EXPECT_EQ(r.registry, c.registry) << c.text;
        EXPECT_EQ(r.repository, c.repository) << c.text;
        EXPECT_EQ(r.tag, c.tag) << c.text;
        EXPECT_EQ(r.digest, c.digest) << c.text;
    }
}

TEST(ReferenceTest, Digests) {
    std::string d = kDigest;
    ImageReference r = parseImageReference("busybox@" + d);
    EXPECT_EQ(r.tag, "");
    EXPECT_EQ(r.digest, d);
    EXPECT_EQ(r.manifestReference(), d);
    EXPECT_EQ(r.str(), "docker.io/library/busybox@" + d);

    r = parseImageReference("127.0.0.1:5000/app:v1@" + d);
    EXPECT_EQ(r.registry, "127.0.0.1:5000");
    EXPECT_EQ(r.tag, "v1");
    EXPECT_EQ(r.manifestReference(), d);  // the digest wins over the tag
    EXPECT_EQ(r.str(), "127.0.0.1:5000/app:v1@" + d);
}

TEST(ReferenceTest, ApiHostOfDockerHub) {
    EXPECT_EQ(parseImageReference("busybox").apiHost(), "registry-1.docker.io");
    EXPECT_EQ(parseImageReference("localhost:5000/a").apiHost(), "localhost:5000");
    EXPECT_EQ(parseImageReference("busybox").str(), "docker.io/library/busybox:latest");
}

TEST(ReferenceTest, RefusesMalformed) {
    struct Bad {
        const char* text;
        const char* fragment;
    };
    std::vector<Bad> bad = {
        {"", "empty"},
        {"Busybox", "must be lowercase"},
        {"docker.io/Org/app", "must be lowercase"},
        {"app:", "tag \"\" is not valid"},
        {"app:-x", "tag \"-x\" is not valid"},
        {"app@sha256:abc", "is not sha256:<64 lowercase hex digits>"},
        {"app@md5:0123456789abcdef0123456789abcdef", "digest"},
        {"host:5000/", "repository component \"\" is not valid"},
        {"a//b", "repository component \"\" is not valid"},
        {"app/-x", "repository component \"-x\" is not valid"},
        {"app name", "whitespace"},
        {"host:port/app", "registry \"host:port\" is not a valid host[:port]"},
        {"-bad.io/app", "registry \"-bad.io\""},
    };
    for (const auto& b : bad) {
        SCOPED_TRACE(b.text);
        expectError(StatusCode::kInvalidArgument, [&] { parseImageReference(b.text); },
                    {"invalid image reference \"" + std::string(b.text) + "\"", b.fragment});
    }
    std::string longName(300, 'a');
    expectError(StatusCode::kInvalidArgument, [&] { parseImageReference(longName); },
                {"longer than 255"});
}

TEST(RegistryNamesTest, LoopbackAndCredentials) {
    for (const char* h : {"localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000",
                          "127.8.9.1:1", "[::1]:5000", "LOCALHOST:80"})
        EXPECT_TRUE(isLoopbackRegistry(h)) << h;
    for (const char* h : {"docker.io", "10.0.0.1:5000", "127.example.com", "localhost.example.com",
                          "[::2]:5000", "128.0.0.1"})
        EXPECT_FALSE(isLoopbackRegistry(h)) << h;
    Credentials c = parseCredentials("user:pa:ss");
    EXPECT_EQ(c.user, "user");
    EXPECT_EQ(c.password, "pa:ss");
    EXPECT_TRUE(parseCredentials("").empty());
    EXPECT_EQ(parseCredentials("only").user, "only");
    expectError(StatusCode::kInvalidArgument, [] { parseCredentials(":secret"); },
                {"invalid registry credentials: empty user name"});
}

}  // namespace
}  // namespace kata::agent::image
