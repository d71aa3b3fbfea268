// A client of the OCI distribution API (libcurl): manifests and blobs of one repository, over
// HTTPS, or plain HTTP for registries named insecure or on loopback; anonymous, basic and
// bearer-token authentication.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kata/agent/image/content_store.h"
#include "kata/agent/image/manifest.h"
#include "kata/agent/image/reference.h"

namespace kata::agent::image {

struct RegistryOptions {
    // host[:port] entries allowed over plain HTTP and with unverified TLS.
    std::vector<std::string> insecureRegistries;
    // Extra CA bundle (PEM) for the registries' TLS certificates; empty: the system's.
    std::string caFile;
    long connectTimeoutSeconds = 30;
    // A transfer slower than 1 byte/s for this long is abandoned.
    long stallTimeoutSeconds = 60;
    std::string userAgent = "kata-agent";
};

struct Credentials {
    std::string user;
    std::string password;
    bool empty() const { return user.empty(); }
};

// "user:password" (or "user", or "" for anonymous); the password may hold ':'.
Credentials parseCredentials(const std::string& text);

// True for localhost, 127.0.0.0/8 and [::1], with or without a port.
bool isLoopbackRegistry(const std::string& host);

struct FetchedManifest {
    std::string body;
    std::string contentType;
    std::string digest;  // sha256 of body
};

class RegistryClient {
  public:
    RegistryClient(ImageReference ref, Credentials creds, RegistryOptions options);
    ~RegistryClient();
    RegistryClient(const RegistryClient&) = delete;
    RegistryClient& operator=(const RegistryClient&) = delete;

    // Fetches a manifest or index by tag or digest (at most kMaxManifestBytes); by digest, the
    // body must match it.
    FetchedManifest fetchManifest(const std::string& reference, const std::string& what);
    // Streams a blob into the store through a writer that checks size and digest as the bytes
    // arrive, then commits it.
    void fetchBlob(const Descriptor& blob, ContentStore& store, const std::string& what);

    // Bytes of blobs received (for logs and tests).
    int64_t blobBytesFetched() const { return blobBytes_; }
    int blobsFetched() const { return blobs_; }
    // "http" or "https", once decided by the first request.
    const std::string& scheme() const { return scheme_; }

  private:
    struct Response;
    using Sink = std::function<void(const char*, size_t)>;
    // GET with the current authorisation; on 401 answers the challenge once and retries.
    Response get(const std::string& path, const std::string& accept, const Sink& sink,
                 const std::function<void()>& restart, const std::string& what);
    Response perform(const std::string& url, const std::string& accept, const Sink& sink,
                     const std::string& what);
    void authenticate(const Response& challenge, const std::string& what);
    void fetchToken(const std::string& params, const std::string& what);
    [[noreturn]] void failStatus(const Response& r, const std::string& what);
    // A 401 after answering the challenge: kUnauthenticated naming the user (or anonymity).
    [[noreturn]] void refused(const Response& r, const std::string& what);
    std::string baseUrl();

    ImageReference ref_;
    Credentials creds_;
    RegistryOptions options_;
    bool plainHttpAllowed_;
    bool insecure_;
    std::string scheme_;
    std::string authorization_;  // "Authorization: ..." header line, or empty
    void* curl_ = nullptr;
    int64_t blobBytes_ = 0;
    int blobs_ = 0;
};

}  // namespace kata::agent::image
