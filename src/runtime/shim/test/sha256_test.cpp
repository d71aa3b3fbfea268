// Known answers from coreutils' sha256sum, covering the padding edges (55, 56, 64 bytes) and
// messages of several blocks.
#include <gtest/gtest.h>

#include "paths.h"
#include "sha256.h"

using kata::shim::sha256Hex;

TEST(Sha256, MatchesSha256sum) {
    EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256Hex(std::string(55, 'a')),
              "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    EXPECT_EQ(sha256Hex(std::string(56, 'b')),
              "a5fc6e203a4c2b657d0d153885932414b2ffc6a93f0f8bf8b3183315e5a7212c");
    EXPECT_EQ(sha256Hex(std::string(64, 'c')),
              "52b6419d27bd7f547cee3b92f8c17a908b8a49601ecbec161e5030de1dfe9e0a");
    EXPECT_EQ(sha256Hex(std::string(200, 'd')),
              "20cf3bf2a752e844ce2db98a159617ccad0583a054d7e5dd771557b3295e3751");
}

TEST(Sha256, ShimSocketIsNamedLikeContainerdNamesIt) {
    EXPECT_EQ(kata::shim::shimSocketAddress("/run/containerd/containerd.sock", "default", "c1"),
              "unix:///run/containerd/s/"
              "d25aa4ef11a84e954e74a5bcff06557d0b6ea8d0c00243896f29826694bbd888");
}
