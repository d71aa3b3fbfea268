#include "kata/agent/service/port_forward.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "kata/agent/service/init.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/portforward/protocol.h"
#include "kata/portforward/relay.h"

namespace kata::agent {

namespace {
// The shim's VM has the port from boot; only a VM without it waits this long, in the background.
constexpr std::chrono::milliseconds kFindPortTimeout{3000};
}  // namespace

void startPortForwardService(const AgentConfig& cfg) {
    std::thread([] {
        const log::Logger log("portforward");
        std::string dev;
        try {
            dev = findSerialPort(portforward::kSerialPortName, kFindPortTimeout);
        } catch (const Error& e) {
            log.info("no port-forward channel: CRI PortForward is not served in this VM",
                     {{"port", portforward::kSerialPortName}, {"reason", e.what()}});
            return;
        }
        try {
            // Opened once and kept: closing a virtio-serial port drops what the host sent.
            UniqueFd port(::open(dev.c_str(), O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
            if (!port) throwErrno("open port-forward channel", dev);
            if (::isatty(port.get())) {
                termios t{};
                if (::tcgetattr(port.get(), &t) == 0) {
                    ::cfmakeraw(&t);
                    ::tcsetattr(port.get(), TCSANOW, &t);
                }
            }
            portforward::RelayOptions opts;
            opts.waitForPeer = true;
            portforward::Relay relay(portforward::Role::kGuest, std::move(port), dev, opts, log);
            log.info("serving CRI PortForward", {{"port", dev}});
            relay.run();
        } catch (const std::exception& e) {
            log.error("CRI PortForward stopped", {{"port", dev}, {"error", e.what()}});
        }
    }).detach();
    (void)cfg;
}

}  // namespace kata::agent
