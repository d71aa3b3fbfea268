// A bearer-token server for the registry's token auth, on 127.0.0.1: it hands out JWTs
// (RS256, the signing certificate in the x5c header) that docker-registry checks against the
// certificate in its rootcertbundle. Access is granted only with the right basic credentials.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "registry_fixture.h"

namespace kata::agent::image::test {

inline std::string base64url(const std::string& in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()),
                            static_cast<int>(in.size()));
    out.resize(static_cast<size_t>(n));
    for (char& c : out) {
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    while (!out.empty() && out.back() == '=') out.pop_back();
    return out;
}

inline std::string base64std(const std::string& in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()),
                            static_cast<int>(in.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

class TokenServer {
  public:
    static constexpr const char* kIssuer = "kata-test-issuer";
    static constexpr const char* kService = "kata-test-registry";

    TokenServer(const std::string& dir, std::string user, std::string password)
        : dir_(dir), basic_("Basic " + base64std(user + ":" + password)), user_(std::move(user)) {
        sh("set -e; cd " + dir_ +
           "; openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kata-token-signer "
           "-keyout token.key -out token.crt");
        FILE* f = std::fopen((dir_ + "/token.key").c_str(), "r");
        key_ = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
        std::fclose(f);
        f = std::fopen((dir_ + "/token.crt").c_str(), "r");
        X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
        std::fclose(f);
        unsigned char* der = nullptr;
        int len = i2d_X509(cert, &der);
        certDer_.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
        OPENSSL_free(der);
        X509_free(cert);

        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        socklen_t alen = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &alen);
        port_ = ntohs(a.sin_port);
        ::listen(fd_, 16);
        thread_ = std::thread([this] { serve(); });
    }
    ~TokenServer() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
        EVP_PKEY_free(key_);
    }

    std::string realm() const { return "http://127.0.0.1:" + std::to_string(port_) + "/token"; }
    std::string certFile() const { return dir_ + "/token.crt"; }
    int tokensIssued() const { return issued_; }
    int refused() const { return refused_; }

  private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            std::string req;
            char buf[4096];
            while (req.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) break;
                req.append(buf, static_cast<size_t>(n));
            }
            std::string resp = answer(req);
            ::write(c, resp.data(), resp.size());
            ::close(c);
        }
    }

    static std::string unescape(const std::string& s) {
        std::string out;
        for (size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '%' && i + 2 < s.size()) {
                out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
                i += 2;
            } else {
                out += s[i] == '+' ? ' ' : s[i];
            }
        }
        return out;
    }

    std::string answer(const std::string& req) {
        std::string line = req.substr(0, req.find("\r\n"));
        std::string target = line.substr(line.find(' ') + 1);
        target = target.substr(0, target.find(' '));
        bool authorized = false;
        size_t at = req.find("\r\nAuthorization: ");
        if (at != std::string::npos) {
            std::string v = req.substr(at + 17, req.find("\r\n", at + 2) - at - 17);
            authorized = v == basic_;
        }
        if (!authorized) {
            ++refused_;
            std::string body = R"({"details":"unauthorized"})";
            return "HTTP/1.1 401 Unauthorized\r\nContent-Type: "
                   "application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        }
        nlohmann::json access = nlohmann::json::array();
        std::string query =
            target.find('?') == std::string::npos ? "" : target.substr(target.find('?') + 1);
        size_t i = 0;
        while (i < query.size()) {
            size_t amp = query.find('&', i);
            std::string kv =
                query.substr(i, amp == std::string::npos ? std::string::npos : amp - i);
            i = amp == std::string::npos ? query.size() : amp + 1;
            if (kv.rfind("scope=", 0) != 0) continue;
            std::string scope = unescape(kv.substr(6));  // repository:<name>:<actions>
            size_t c1 = scope.find(':');
            size_t c2 = scope.rfind(':');
            nlohmann::json actions = nlohmann::json::array();
            std::string acts = scope.substr(c2 + 1);
            size_t j = 0;
            while (j <= acts.size()) {
                size_t comma = acts.find(',', j);
                if (comma == std::string::npos) comma = acts.size();
                if (comma > j) actions.push_back(acts.substr(j, comma - j));
                j = comma + 1;
            }
            access.push_back({{"type", scope.substr(0, c1)},
                              {"name", scope.substr(c1 + 1, c2 - c1 - 1)},
                              {"actions", actions}});
        }
        long now = static_cast<long>(std::time(nullptr));
        nlohmann::json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"x5c", {base64std(certDer_)}}};
        nlohmann::json claims = {{"iss", kIssuer},
                                 {"sub", user_},
                                 {"aud", kService},
                                 {"exp", now + 600},
                                 {"nbf", now - 60},
                                 {"iat", now},
                                 {"jti", std::to_string(now) + "-" + std::to_string(issued_)},
                                 {"access", access}};
        std::string signingInput = base64url(header.dump()) + "." + base64url(claims.dump());
        std::string token = signingInput + "." + base64url(sign(signingInput));
        ++issued_;
        std::string body = nlohmann::json{{"token", token}, {"expires_in", 600}}.dump();
        return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    }

    std::string sign(const std::string& data) {
        EVP_MD_CTX* ctx = EVP_MD_CTX_new();
        EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_);
        size_t len = 0;
        EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                       data.size());
        std::string sig(len, '\0');
        EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size());
        sig.resize(len);
        EVP_MD_CTX_free(ctx);
        return sig;
    }

    std::string dir_;
    std::string basic_;
    std::string user_;
    std::string certDer_;
    EVP_PKEY* key_ = nullptr;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> issued_{0};
    std::atomic<int> refused_{0};
    std::thread thread_;
};

}  // namespace kata::agent::image::test
