#include "kata/agent/image/registry.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "kata/agent/image/digest.h"
#include "kata/common/error.h"
#include "kata/common/log.h"

namespace kata::agent::image {

namespace {

constexpr size_t kMaxErrorBody = 64 << 10;
constexpr size_t kMaxTokenBody = 1 << 20;

const log::Logger& logger() {
    static const log::Logger l("image");
    return l;
}

CURL* handle(void* p) { return static_cast<CURL*>(p); }

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

std::string base64(const std::string& in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()),
                            static_cast<int>(in.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string urlEscape(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
    return out;
}

// host part of "host:port", "[v6]:port" or a URL's authority.
std::string hostOnly(const std::string& hostPort) {
    if (!hostPort.empty() && hostPort.front() == '[') {
        size_t close = hostPort.find(']');
        return close == std::string::npos ? hostPort : hostPort.substr(0, close + 1);
    }
    return hostPort.substr(0, hostPort.find(':'));
}

// "https://auth.example/token?x=y" -> "auth.example"
std::string urlHostPort(const std::string& url) {
    size_t start = url.find("://");
    start = start == std::string::npos ? 0 : start + 3;
    size_t end = url.find_first_of("/?#", start);
    std::string authority =
        url.substr(start, end == std::string::npos ? std::string::npos : end - start);
    size_t at = authority.rfind('@');
    return at == std::string::npos ? authority : authority.substr(at + 1);
}

// WWW-Authenticate: <scheme> k="v", k2=v2 — parameter values may be quoted and hold commas.
struct Challenge {
    std::string scheme;
    std::map<std::string, std::string> params;
};

Challenge parseChallenge(const std::string& header) {
    Challenge c;
    size_t i = 0;
    while (i < header.size() && header[i] == ' ') ++i;
    size_t sp = header.find(' ', i);
    c.scheme = lower(header.substr(i, sp == std::string::npos ? std::string::npos : sp - i));
    if (sp == std::string::npos) return c;
    i = sp + 1;
    while (i < header.size()) {
        while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
        size_t eq = header.find('=', i);
        if (eq == std::string::npos) break;
        std::string key = lower(trim(header.substr(i, eq - i)));
        i = eq + 1;
        std::string value;
        if (i < header.size() && header[i] == '"') {
            ++i;
            while (i < header.size() && header[i] != '"') {
                if (header[i] == '\\' && i + 1 < header.size()) ++i;
                value += header[i++];
            }
            ++i;
        } else {
            size_t comma = header.find(',', i);
            value =
                trim(header.substr(i, comma == std::string::npos ? std::string::npos : comma - i));
            i = comma == std::string::npos ? header.size() : comma;
        }
        c.params[key] = value;
    }
    return c;
}

// {"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]} -> "MANIFEST_UNKNOWN:
// manifest unknown"
std::string registryErrorText(const std::string& body) {
    try {
        auto j = nlohmann::json::parse(body);
        std::string out;
        for (const auto& e : j.at("errors")) {
            if (!out.empty()) out += "; ";
            out += e.value("code", std::string("?")) + ": " + e.value("message", std::string());
        }
        return out;
    } catch (const std::exception&) {
        std::string t = trim(body.substr(0, 200));
        for (char& c : t) {
            if (std::iscntrl(static_cast<unsigned char>(c))) c = ' ';
        }
        return t;
    }
}

void globalInit() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            throw Error("libcurl: global initialisation failed");
    });
}

}  // namespace

Credentials parseCredentials(const std::string& text) {
    Credentials c;
    size_t colon = text.find(':');
    c.user = text.substr(0, colon);
    if (colon != std::string::npos) c.password = text.substr(colon + 1);
    if (c.user.empty() && !c.password.empty())
        throw Error(StatusCode::kInvalidArgument, "invalid registry credentials: empty user name");
    return c;
}

bool isLoopbackRegistry(const std::string& hostPort) {
    std::string host = lower(hostOnly(hostPort));
    if (host == "localhost" || host == "[::1]") return true;
    struct in_addr a {};
    // An IPv4 literal in 127.0.0.0/8; a name that merely starts with "127." is not.
    return ::inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

struct RegistryClient::Response {
    long status = 0;
    std::string contentType;
    std::string wwwAuthenticate;
    std::string errorBody;
    std::string url;
};

RegistryClient::RegistryClient(ImageReference ref, Credentials creds, RegistryOptions options)
    : ref_(std::move(ref)), creds_(std::move(creds)), options_(std::move(options)) {
    globalInit();
    std::string host = ref_.apiHost();
    insecure_ = std::find(options_.insecureRegistries.begin(), options_.insecureRegistries.end(),
                          host) != options_.insecureRegistries.end() ||
                std::find(options_.insecureRegistries.begin(), options_.insecureRegistries.end(),
                          ref_.registry) != options_.insecureRegistries.end();
    plainHttpAllowed_ = insecure_ || isLoopbackRegistry(host);
    curl_ = curl_easy_init();
    if (!curl_) throw Error("libcurl: cannot create a handle");
}

RegistryClient::~RegistryClient() { curl_easy_cleanup(handle(curl_)); }

std::string RegistryClient::baseUrl() { return scheme_ + "://" + ref_.apiHost(); }

namespace {

struct TransferContext {
    CURL* curl = nullptr;
    const std::function<void(const char*, size_t)>* sink = nullptr;
    std::string* errorBody = nullptr;
    std::exception_ptr error;
    std::string* contentType = nullptr;
    std::string* wwwAuthenticate = nullptr;
};

size_t onHeader(char* data, size_t size, size_t n, void* user) {
    auto* ctx = static_cast<TransferContext*>(user);
    std::string line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect or 100-continue)
        ctx->contentType->clear();
        ctx->wwwAuthenticate->clear();
        return size * n;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) return size * n;
    std::string key = lower(line.substr(0, colon));
    std::string value = trim(line.substr(colon + 1));
    if (key == "content-type") *ctx->contentType = value;
    if (key == "www-authenticate" && ctx->wwwAuthenticate->empty()) *ctx->wwwAuthenticate = value;
    return size * n;
}

size_t onBody(char* data, size_t size, size_t n, void* user) {
    auto* ctx = static_cast<TransferContext*>(user);
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) {
        size_t room = kMaxErrorBody - std::min(kMaxErrorBody, ctx->errorBody->size());
        ctx->errorBody->append(data, std::min(room, len));
        return len;
    }
    try {
        (*ctx->sink)(data, len);
    } catch (...) {
        ctx->error = std::current_exception();
        return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    return len;
}

}  // namespace

RegistryClient::Response RegistryClient::perform(const std::string& url, const std::string& accept,
                                                 const Sink& sink, const std::string& what) {
    CURL* c = handle(curl_);
    curl_easy_reset(c);  // keeps the connection cache
    Response r;
    r.url = url;
    TransferContext ctx;
    ctx.curl = c;
    ctx.sink = &sink;
    ctx.errorBody = &r.errorBody;
    ctx.contentType = &r.contentType;
    ctx.wwwAuthenticate = &r.wwwAuthenticate;
    char errbuf[CURL_ERROR_SIZE] = {0};

    struct curl_slist* headers = nullptr;
    if (!accept.empty()) headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
    if (!authorization_.empty()) headers = curl_slist_append(headers, authorization_.c_str());
    bool https = url.rfind("https://", 0) == 0;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    // Redirects (to blob storage) never downgrade an HTTPS registry to plain HTTP.
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options_.connectTimeoutSeconds);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.stallTimeoutSeconds);
    curl_easy_setopt(c, CURLOPT_USERAGENT, options_.userAgent.c_str());
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, onHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &ctx);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, onBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
    if (!options_.caFile.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.caFile.c_str());
    if (insecure_) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    if (ctx.error) std::rethrow_exception(ctx.error);
    if (rc != CURLE_OK) {
        std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
        while (!detail.empty() && detail.back() == '\n') detail.pop_back();
        throw Error(rc == CURLE_OPERATION_TIMEDOUT ? StatusCode::kDeadlineExceeded
                                                   : StatusCode::kUnavailable,
                    what + ": request to " + url + " failed: " + detail + " (curl error " +
                        std::to_string(static_cast<int>(rc)) + ")");
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

void RegistryClient::failStatus(const Response& r, const std::string& what) {
    std::string detail = registryErrorText(r.errorBody);
    std::string msg = what + ": registry " + ref_.registry + " answered " +
                      std::to_string(r.status) + " for " + r.url;
    if (!detail.empty()) msg += " (" + detail + ")";
    StatusCode code = StatusCode::kUnknown;
    if (r.status == 404)
        code = StatusCode::kNotFound;
    else if (r.status == 401)
        code = StatusCode::kUnauthenticated;
    else if (r.status == 403)
        code = StatusCode::kPermissionDenied;
    else if (r.status == 429 || r.status >= 500)
        code = StatusCode::kUnavailable;
    else if (r.status >= 400)
        code = StatusCode::kFailedPrecondition;
    throw Error(code, msg);
}

RegistryClient::Response RegistryClient::get(const std::string& path, const std::string& accept,
                                             const Sink& sink, const std::function<void()>& restart,
                                             const std::string& what) {
    auto attempt = [&] {
        Response r = perform(baseUrl() + path, accept, sink, what);
        if (r.status == 401) {
            restart();
            authenticate(r, what);
            r = perform(baseUrl() + path, accept, sink, what);
            if (r.status == 401) refused(r, what);
        }
        if (r.status < 200 || r.status >= 300) failStatus(r, what);
        return r;
    };
    if (!scheme_.empty()) return attempt();
    scheme_ = "https";
    try {
        return attempt();
    } catch (const Error& e) {
        // An HTTP server answering a TLS handshake: fall back where plain HTTP is allowed.
        if (!plainHttpAllowed_ || e.code() != StatusCode::kUnavailable ||
            std::string(e.what()).find("(curl error 35)") == std::string::npos)
            throw;
    }
    logger().debug("registry does not speak TLS, using plain HTTP", {{"registry", ref_.registry}});
    scheme_ = "http";
    restart();
    return attempt();
}

void RegistryClient::authenticate(const Response& r, const std::string& what) {
    Challenge ch = parseChallenge(r.wwwAuthenticate);
    std::string where = what + ": registry " + ref_.registry;
    if (!authorization_.empty()) {
        // A bearer token expires: ask for a new one once; refused basic credentials stay refused.
        if (authorization_.rfind("Authorization: Bearer ", 0) != 0) refused(r, what);
        authorization_.clear();
    }
    if (ch.scheme == "basic") {
        if (creds_.empty())
            throw Error(StatusCode::kUnauthenticated,
                        where + " requires credentials (401 Unauthorized, WWW-Authenticate: " +
                            r.wwwAuthenticate + ")");
        authorization_ = "Authorization: Basic " + base64(creds_.user + ":" + creds_.password);
        return;
    }
    if (ch.scheme == "bearer") {
        auto realm = ch.params.find("realm");
        if (realm == ch.params.end() || realm->second.empty())
            throw Error(StatusCode::kUnauthenticated,
                        where + " sent a Bearer challenge without a realm: " + r.wwwAuthenticate);
        std::string scope = ch.params.count("scope") ? ch.params["scope"]
                                                     : "repository:" + ref_.repository + ":pull";
        std::string query;
        if (ch.params.count("service")) query += "service=" + urlEscape(ch.params["service"]);
        if (!query.empty()) query += "&";
        query += "scope=" + urlEscape(scope);
        std::string url = realm->second;
        url += (url.find('?') == std::string::npos ? "?" : "&") + query;
        fetchToken(url, what);
        return;
    }
    throw Error(
        StatusCode::kUnauthenticated,
        where + " asks for an unsupported authentication scheme: " +
            (r.wwwAuthenticate.empty() ? "(no WWW-Authenticate header)" : r.wwwAuthenticate));
}

void RegistryClient::refused(const Response& r, const std::string& what) {
    std::string detail = registryErrorText(r.errorBody);
    throw Error(
        StatusCode::kUnauthenticated,
        what + ": registry " + ref_.registry + " refused " +
            (creds_.empty() ? std::string("anonymous access (private image? give credentials)")
                            : "the credentials of user \"" + creds_.user + "\"") +
            (detail.empty() ? std::string() : " (" + detail + ")"));
}

void RegistryClient::fetchToken(const std::string& url, const std::string& what) {
    bool https = url.rfind("https://", 0) == 0;
    bool http = url.rfind("http://", 0) == 0;
    std::string tokenHost = urlHostPort(url);
    if (!https && !(http && (isLoopbackRegistry(tokenHost) || insecure_)))
        throw Error(StatusCode::kUnauthenticated,
                    what + ": refusing token realm " + url +
                        " (only https, or http on loopback or an insecure registry)");
    if (!creds_.empty())
        authorization_ = "Authorization: Basic " + base64(creds_.user + ":" + creds_.password);
    std::string body;
    Sink sink = [&](const char* d, size_t n) {
        if (body.size() + n > kMaxTokenBody)
            throw Error(StatusCode::kResourceExhausted,
                        what + ": token response from " + url + " is over 1 MiB");
        body.append(d, n);
    };
    Response r = perform(url, "application/json", sink, what + ": token request");
    authorization_.clear();
    if (r.status == 401 || r.status == 403) {
        throw Error(StatusCode::kUnauthenticated,
                    what + ": token server " + tokenHost + " refused " +
                        (creds_.empty() ? std::string("anonymous access")
                                        : "the credentials of user \"" + creds_.user + "\"") +
                        " (" + std::to_string(r.status) + ")");
    }
    if (r.status < 200 || r.status >= 300) failStatus(r, what + ": token request");
    std::string token;
    try {
        auto j = nlohmann::json::parse(body);
        if (j.contains("token") && j["token"].is_string()) token = j["token"];
        if (token.empty() && j.contains("access_token") && j["access_token"].is_string())
            token = j["access_token"];
    } catch (const std::exception& e) {
        throw Error(StatusCode::kUnauthenticated,
                    what + ": token server " + tokenHost + " sent invalid JSON: " + e.what());
    }
    if (token.empty())
        throw Error(StatusCode::kUnauthenticated,
                    what + ": token server " + tokenHost + " sent no token");
    authorization_ = "Authorization: Bearer " + token;
}

FetchedManifest RegistryClient::fetchManifest(const std::string& reference,
                                              const std::string& what) {
    FetchedManifest m;
    Sink sink = [&](const char* d, size_t n) {
        if (static_cast<int64_t>(m.body.size() + n) > kMaxManifestBytes)
            throw Error(StatusCode::kInvalidArgument,
                        what + ": manifest is over the size limit of " +
                            std::to_string(kMaxManifestBytes) + " bytes");
        m.body.append(d, n);
    };
    Response r = get(
        "/v2/" + ref_.repository + "/manifests/" + reference, manifestAcceptHeader(), sink,
        [&] { m.body.clear(); }, what);
    m.contentType = r.contentType;
    m.digest = sha256Digest(m.body);
    if (isValidDigest(reference) && m.digest != reference)
        throw Error(StatusCode::kDataLoss, what + ": manifest digest mismatch: got " + m.digest +
                                               ", requested " + reference);
    return m;
}

void RegistryClient::fetchBlob(const Descriptor& blob, ContentStore& store,
                               const std::string& what) {
    auto writer = store.writer(blob.digest, blob.size, what);
    Sink sink = [&](const char* d, size_t n) { writer->write(d, n); };
    get(
        "/v2/" + ref_.repository + "/blobs/" + blob.digest, "", sink, [&] { writer->restart(); },
        what);
    writer->commit();
    blobBytes_ += blob.size;
    ++blobs_;
}

}  // namespace kata::agent::image
