#include "port_forward.h"

#include <chrono>

#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/network/loopback_intercept.h"
#include "kata/portforward/relay.h"
#include "kata/ttrpc/ttrpc.h"

namespace kata::shim {

std::unique_ptr<PortForward> PortForward::start(const std::string& sandboxId,
                                                const std::string& netnsPath,
                                                const std::string& channelAddress) {
    const log::Logger log =
        log::Logger("portforward").with("sandbox", sandboxId).with("netns", netnsPath);
    if (channelAddress.empty()) {
        log.info("CRI PortForward unavailable for this pod: the VM has no port-forward channel");
        return nullptr;
    }
    std::unique_ptr<PortForward> pf(new PortForward());
    try {
        pf->intercept_ = network::LoopbackIntercept::attach(netnsPath);
        // QEMU listens on the chardev socket from its start; the guest end may open later,
        // the relays greet each other whenever it does.
        UniqueFd channel = ttrpc::dial(channelAddress, std::chrono::seconds(2));
        pf->relay_ =
            std::make_unique<portforward::Relay>(portforward::Role::kHost, std::move(channel),
                                                 channelAddress, portforward::RelayOptions{}, log);
        for (auto& l : pf->intercept_->takeListeners()) pf->relay_->addListener(std::move(l));
        pf->relay_->start();
    } catch (const std::exception& e) {
        log.warn(std::string("CRI PortForward unavailable for this pod: ") + e.what());
        return nullptr;  // pf's destructor undoes what was made
    }
    log.info("CRI PortForward: loopback TCP in the pod netns is relayed into the guest",
             {{"channel", channelAddress}});
    return pf;
}

PortForward::~PortForward() {
    // Unhook the namespace first, so no connection lands on a listener that is going away.
    intercept_.reset();
    relay_.reset();
}

}  // namespace kata::shim
