#include <fcntl.h>
#include <sched.h>

#include <cstdlib>
#include <exception>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/network/pod_network.h"
#include "rtnl.h"

namespace kata::network {

NetnsGuard::NetnsGuard(const std::string& netnsPath) : path_(netnsPath) {
    UniqueFd target = detail::openNetns(netnsPath);
    enter(target.get());
}

NetnsGuard::NetnsGuard(int netnsFd, const std::string& netnsPath) : path_(netnsPath) {
    enter(netnsFd);
}

void NetnsGuard::enter(int netnsFd) {
    // thread-self, not self: the namespace is per thread and this one may not be the leader.
    original_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!original_) throwErrno("open", "/proc/thread-self/ns/net");
    if (::setns(netnsFd, CLONE_NEWNET) != 0) throwErrno("enter network namespace", path_);
}

NetnsGuard::~NetnsGuard() {
    if (::setns(original_.get(), CLONE_NEWNET) == 0) return;
    int err = errno;
    log::Logger("network").error("cannot leave network namespace " + path_ + ": " + errnoName(err) +
                                 "; aborting");
    std::abort();
}

void runInNetns(int netnsFd, const std::string& netnsPath, const std::function<void()>& fn) {
    std::exception_ptr error;
    std::thread worker([&] {
        try {
            NetnsGuard guard(netnsFd, netnsPath);
            fn();
        } catch (...) {
            error = std::current_exception();
        }
    });
    worker.join();
    if (error) std::rethrow_exception(error);
}

void runInNetns(const std::string& netnsPath, const std::function<void()>& fn) {
    UniqueFd fd = detail::openNetns(netnsPath);
    runInNetns(fd.get(), netnsPath, fn);
}

}  // namespace kata::network
