// Content digests ("sha256:<hex>") and an incremental hasher that checks a stream against the
// digest and size it was declared with while the bytes go by.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace kata::agent::image {

// True for "sha256:" followed by 64 lowercase hex digits (the only algorithm accepted).
bool isValidDigest(std::string_view digest);
// Throws kata::Error(kInvalidArgument) "<what>: unsupported or malformed digest \"...\"".
void checkDigest(std::string_view digest, const std::string& what);
// The hex part of a valid digest.
std::string digestHex(std::string_view digest);

std::string sha256Digest(std::string_view data);

class Sha256 {
  public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(const void* data, size_t len);
    // "sha256:<hex>"; the hasher cannot be updated afterwards.
    std::string finish();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Feeds a hasher and refuses, at the first byte too many, a stream longer than declared;
// finish() checks the length and the digest. Errors name `what` (e.g. "layer sha256:... of
// docker.io/library/busybox:latest").
class VerifyingDigester {
  public:
    VerifyingDigester(std::string expectedDigest, int64_t expectedSize, std::string what);
    // Throws kata::Error(kDataLoss) "<what>: larger than its declared size of N bytes".
    void update(const void* data, size_t len);
    // Throws kDataLoss "<what>: got N bytes, declared M" or "<what>: digest mismatch: got
    // sha256:..., declared sha256:...".
    void finish();
    int64_t bytes() const { return bytes_; }

  private:
    Sha256 hash_;
    std::string expected_;
    int64_t size_;
    std::string what_;
    int64_t bytes_ = 0;
};

}  // namespace kata::agent::image
