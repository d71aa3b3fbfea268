// libFuzzer target: arbitrary bytes sent by a "client" into Server::serveConnection, which must
// dispatch what it can, answer or drop the rest, and return once the peer hangs up.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <thread>

#include "kata/common/log.h"
#include "kata/ttrpc/ttrpc.h"

using namespace kata;
using namespace kata::ttrpc;

namespace {

Server& server() {
    static Server* s = [] {
        log::setLevel(log::Level::kFatal);
        auto* srv = new Server();
        srv->registerRaw("f", "echo", [](const CallContext&, const std::string& p) { return p; });
        srv->registerRaw("f", "fail", [](const CallContext& c, const std::string&) -> std::string {
            throw Error(StatusCode::kNotFound, c.method);
        });
        srv->registerStream("f", "stream",
                            [](const CallContext&, const std::string&, ServerStream& s) {
                                std::string m;
                                while (s.recv(&m)) s.send(m);
                                return std::string("done");
                            });
        return srv;
    }();
    return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Server& srv = server();
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return 0;
    UniqueFd client(sv[1]);
    std::thread writer([&] {
        size_t off = 0;
        while (off < size) {
            ssize_t n = ::send(client.get(), data + off, size - off, MSG_NOSIGNAL);
            if (n <= 0) break;
            off += size_t(n);
        }
        // The half-close ends the session: serveConnection returns at EOF.
        ::shutdown(client.get(), SHUT_WR);
        // Drain answers so the server never blocks on a full socket.
        char buf[4096];
        while (::read(client.get(), buf, sizeof buf) > 0) {
        }
    });
    srv.serveConnection(UniqueFd(sv[0]));
    writer.join();
    return 0;
}
