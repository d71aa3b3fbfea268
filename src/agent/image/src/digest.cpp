#include "kata/agent/image/digest.h"

#include <openssl/evp.h>

#include "kata/common/error.h"

namespace kata::agent::image {

namespace {
constexpr std::string_view kSha256Prefix = "sha256:";
constexpr size_t kSha256HexLength = 64;
}  // namespace

bool isValidDigest(std::string_view digest) {
    if (digest.substr(0, kSha256Prefix.size()) != kSha256Prefix) return false;
    std::string_view hex = digest.substr(kSha256Prefix.size());
    if (hex.size() != kSha256HexLength) return false;
    for (char c : hex) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

void checkDigest(std::string_view digest, const std::string& what) {
    if (!isValidDigest(digest))
        throw Error(StatusCode::kInvalidArgument,
                    what + ": unsupported or malformed digest \"" + std::string(digest) + "\"");
}

std::string digestHex(std::string_view digest) {
    return std::string(digest.substr(kSha256Prefix.size()));
}

struct Sha256::Impl {
    EVP_MD_CTX* ctx = nullptr;
    bool done = false;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
    impl_->ctx = EVP_MD_CTX_new();
    if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
        throw Error("sha256: cannot initialise OpenSSL digest");
}

Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::update(const void* data, size_t len) {
    if (impl_->done) throw Error("sha256: update after finish");
    EVP_DigestUpdate(impl_->ctx, data, len);
}

std::string Sha256::finish() {
    if (impl_->done) throw Error("sha256: finished twice");
    impl_->done = true;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(impl_->ctx, md, &n);
    static const char* hex = "0123456789abcdef";
    std::string out(kSha256Prefix);
    for (unsigned int i = 0; i < n; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 0xf];
    }
    return out;
}

std::string sha256Digest(std::string_view data) {
    Sha256 h;
    h.update(data.data(), data.size());
    return h.finish();
}

VerifyingDigester::VerifyingDigester(std::string expectedDigest, int64_t expectedSize,
                                     std::string what)
    : expected_(std::move(expectedDigest)), size_(expectedSize), what_(std::move(what)) {}

void VerifyingDigester::update(const void* data, size_t len) {
    if (bytes_ + static_cast<int64_t>(len) > size_)
        throw Error(StatusCode::kDataLoss, what_ + ": larger than its declared size of " +
                                               std::to_string(size_) + " bytes");
    bytes_ += static_cast<int64_t>(len);
    hash_.update(data, len);
}

void VerifyingDigester::finish() {
    if (bytes_ != size_)
        throw Error(StatusCode::kDataLoss, what_ + ": got " + std::to_string(bytes_) +
                                               " bytes, declared " + std::to_string(size_));
    std::string got = hash_.finish();
    if (got != expected_)
        throw Error(StatusCode::kDataLoss,
                    what_ + ": digest mismatch: got " + got + ", declared " + expected_);
}

}  // namespace kata::agent::image
