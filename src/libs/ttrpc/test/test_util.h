// Helpers shared by the ttrpc tests: temp dirs, raw frames, a server running in a thread.
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>

#include "kata/ttrpc/ttrpc.h"
#include "wire.h"

namespace kata::ttrpc::testing {

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/ttrpc-test-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

inline std::string rawFrame(uint32_t id, uint8_t type, uint8_t flags, const std::string& payload,
                            uint32_t declaredLength) {
    wire::FrameHeader h;
    h.length = declaredLength;
    h.streamId = id;
    h.type = type;
    h.flags = flags;
    uint8_t hdr[wire::kHeaderSize];
    wire::encodeHeader(h, hdr);
    return std::string(reinterpret_cast<char*>(hdr), sizeof hdr) + payload;
}

inline std::string rawFrame(uint32_t id, uint8_t type, uint8_t flags, const std::string& payload) {
    return rawFrame(id, type, flags, payload, uint32_t(payload.size()));
}

inline void writeAllOrThrow(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data.data() + off, data.size() - off);
        if (n <= 0) throw std::runtime_error("write failed");
        off += size_t(n);
    }
}

// Reads until `n` bytes arrived, EOF, or the timeout; returns what was read.
inline std::string readSome(int fd, size_t n, int timeoutMs, bool* eof = nullptr) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    if (eof) *eof = false;
    while (out.size() < n) {
        int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(
                           deadline - std::chrono::steady_clock::now())
                           .count());
        if (left <= 0) break;
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, left) <= 0) break;
        char buf[4096];
        ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
        if (r <= 0) {
            if (r < 0 && errno == EAGAIN) continue;
            if (eof) *eof = true;
            break;
        }
        out.append(buf, size_t(r));
    }
    return out;
}

// A Server listening on a unix socket in a temp dir, served from a background thread.
class RunningServer {
  public:
    explicit RunningServer(Server& server) : server_(server), path_(dir_.file("ttrpc.sock")) {
        UniqueFd l = listenUnix(path_);
        thread_ = std::thread(
            [this, fd = std::move(l)]() mutable { server_.serveListener(std::move(fd)); });
    }
    ~RunningServer() {
        server_.shutdown();
        thread_.join();
    }
    const std::string& path() const { return path_; }
    Client client() { return Client(dial(path_, std::chrono::seconds(5))); }
    UniqueFd rawConnection() { return dial(path_, std::chrono::seconds(5)); }

  private:
    Server& server_;
    TempDir dir_;
    std::string path_;
    std::thread thread_;
};

}  // namespace kata::ttrpc::testing
