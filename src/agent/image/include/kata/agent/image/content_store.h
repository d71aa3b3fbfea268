// A directory of blobs by digest (<root>/blobs/sha256/<hex>), shared by every pull in the guest,
// so a layer used by two images or two containers is fetched once. A blob only enters the store
// once its size and digest were checked; partial downloads live in <root>/ingest and go away on
// failure.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "kata/agent/image/digest.h"
#include "kata/common/fd.h"

namespace kata::agent::image {

class ContentStore {
  public:
    // Creates <root>/blobs/sha256 and <root>/ingest when missing.
    explicit ContentStore(std::string root);

    const std::string& root() const { return root_; }
    std::string blobPath(const std::string& digest) const;
    // True when the blob is stored with exactly this size.
    bool has(const std::string& digest, int64_t size) const;

    // Receives a blob's bytes, checking size and digest on the way; commit() moves it into the
    // store. Dropped without commit(), the partial file is removed. Running out of space is a
    // kata::Error(kResourceExhausted) naming the store, the blob and its size.
    class Writer {
      public:
        Writer(const ContentStore& store, std::string digest, int64_t size, std::string what);
        ~Writer();
        Writer(const Writer&) = delete;
        Writer& operator=(const Writer&) = delete;
        void write(const void* data, size_t len);
        void commit();
        int64_t bytes() const { return digester_->bytes(); }
        // Forget what was received (a retried download starts over).
        void restart();

      private:
        const ContentStore& store_;
        std::string digest_;
        int64_t size_;
        std::string what_;
        std::string tmpPath_;
        UniqueFd fd_;
        std::unique_ptr<VerifyingDigester> digester_;
        bool committed_ = false;
    };
    std::unique_ptr<Writer> writer(const std::string& digest, int64_t size,
                                   const std::string& what) const;

    // Reads a small stored blob whole (configs, manifests).
    std::string read(const std::string& digest) const;

    // Serialises fetches of one digest across concurrent pulls: hold it while checking has()
    // and fetching, so the second pull finds the blob instead of downloading it again.
    std::unique_lock<std::mutex> lockDigest(const std::string& digest);

  private:
    std::string root_;
    std::mutex mu_;
    std::map<std::string, std::shared_ptr<std::mutex>> locks_;
};

}  // namespace kata::agent::image
