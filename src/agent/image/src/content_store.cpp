#include "kata/agent/image/content_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "kata/common/error.h"
#include "kata/common/file.h"

namespace kata::agent::image {

namespace fs = std::filesystem;

ContentStore::ContentStore(std::string root) : root_(std::move(root)) {
    for (const char* sub : {"/blobs/sha256", "/ingest"}) {
        std::error_code ec;
        fs::create_directories(root_ + sub, ec);
        if (ec) throw SystemError("create content store directory", root_ + sub, ec.value());
    }
}

std::string ContentStore::blobPath(const std::string& digest) const {
    checkDigest(digest, "content store " + root_);
    return root_ + "/blobs/sha256/" + digestHex(digest);
}

bool ContentStore::has(const std::string& digest, int64_t size) const {
    struct stat st {};
    if (::lstat(blobPath(digest).c_str(), &st) != 0) return false;
    return S_ISREG(st.st_mode) && st.st_size == size;
}

std::string ContentStore::read(const std::string& digest) const {
    return readFile(blobPath(digest));
}

std::unique_lock<std::mutex> ContentStore::lockDigest(const std::string& digest) {
    std::shared_ptr<std::mutex> m;
    {
        std::lock_guard<std::mutex> g(mu_);
        auto& slot = locks_[digest];
        if (!slot) slot = std::make_shared<std::mutex>();
        m = slot;
    }
    // The map keeps the mutex alive: entries are few (one per digest ever pulled).
    return std::unique_lock<std::mutex>(*m);
}

std::unique_ptr<ContentStore::Writer> ContentStore::writer(const std::string& digest, int64_t size,
                                                           const std::string& what) const {
    return std::make_unique<Writer>(*this, digest, size, what);
}

ContentStore::Writer::Writer(const ContentStore& store, std::string digest, int64_t size,
                             std::string what)
    : store_(store),
      digest_(std::move(digest)),
      size_(size),
      what_(std::move(what)),
      digester_(std::make_unique<VerifyingDigester>(digest_, size_, what_)) {
    checkDigest(digest_, what_);
    tmpPath_ = store_.root() + "/ingest/" + digestHex(digest_) + ".XXXXXX";
    int fd = ::mkostemp(tmpPath_.data(), O_CLOEXEC);
    if (fd < 0) throwErrno("create ingest file", tmpPath_);
    fd_.reset(fd);
}

ContentStore::Writer::~Writer() {
    if (!committed_) ::unlink(tmpPath_.c_str());
}

void ContentStore::Writer::restart() {
    if (::ftruncate(fd_.get(), 0) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) != 0)
        throwErrno("truncate ingest file", tmpPath_);
    digester_ = std::make_unique<VerifyingDigester>(digest_, size_, what_);
}

void ContentStore::Writer::write(const void* data, size_t len) {
    digester_->update(data, len);
    const char* p = static_cast<const char*>(data);
    while (len > 0) {
        ssize_t n = ::write(fd_.get(), p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            if (err == ENOSPC || err == EDQUOT) {
                throw Error(StatusCode::kResourceExhausted,
                            what_ + ": no space left in content store " + store_.root() +
                                " for a blob of " + std::to_string(size_) + " bytes");
            }
            throw SystemError("write", tmpPath_ + " (" + what_ + ")", err);
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
}

void ContentStore::Writer::commit() {
    digester_->finish();
    if (::fsync(fd_.get()) != 0 && errno != EINVAL) {
        int err = errno;
        if (err == ENOSPC || err == EDQUOT)
            throw Error(StatusCode::kResourceExhausted,
                        what_ + ": no space left in content store " + store_.root() +
                            " for a blob of " + std::to_string(size_) + " bytes");
        throw SystemError("sync", tmpPath_, err);
    }
    ::fchmod(fd_.get(), 0444);
    std::string dest = store_.blobPath(digest_);
    if (::rename(tmpPath_.c_str(), dest.c_str()) != 0) throwErrno("store blob", dest);
    committed_ = true;
}

}  // namespace kata::agent::image
