#include "tc.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>

#include <algorithm>
#include <cstring>
#include <map>

namespace kata::network::tc {

namespace {

// The ingress qdisc lives at the fixed handle ffff: under the pseudo parent TC_H_INGRESS; its
// filters are attached to parent ffff:.
constexpr uint32_t kIngressHandle = TC_H_MAKE(TC_H_INGRESS, 0);

tcmsg* tcHeader(netlink::Request& req, int ifindex) {
    auto* hdr = req.header<tcmsg>();
    hdr->tcm_family = AF_UNSPEC;
    hdr->tcm_ifindex = ifindex;
    return hdr;
}

netlink::Request ingressQdiscRequest(uint16_t type, uint16_t flags, int ifindex) {
    netlink::Request req(type, flags);
    tcmsg* hdr = tcHeader(req, ifindex);
    hdr->tcm_parent = TC_H_INGRESS;
    hdr->tcm_handle = kIngressHandle;
    req.putString(TCA_KIND, "ingress");
    return req;
}

// The u32 selector that matches every frame: one key with mask 0. TC_U32_TERMINAL makes the
// node run its actions (u32 only executes them on terminal nodes).
std::vector<char> matchAllSelector() {
    tc_u32_sel sel{};
    sel.flags = TC_U32_TERMINAL;
    sel.nkeys = 1;
    tc_u32_key key{};  // mask 0, value 0, offset 0
    std::vector<char> out(sizeof sel + sizeof key);
    std::memcpy(out.data(), &sel, sizeof sel);
    std::memcpy(out.data() + sizeof sel, &key, sizeof key);
    return out;
}

// The targets of mirred egress-redirect actions in a TCA_*_ACT nest, and whether it holds any
// other action.
void readActions(std::string_view actList, IngressFilter& out) {
    for (const auto& [order, action] : netlink::attrList(actList)) {
        netlink::Attrs a = netlink::parseAttrs(action);
        if (netlink::stringAttr(a, TCA_ACT_KIND) != "mirred" || !a.count(TCA_ACT_OPTIONS)) {
            out.otherActions = true;
            continue;
        }
        netlink::Attrs opts = netlink::parseAttrs(a[TCA_ACT_OPTIONS]);
        auto parms = opts.find(TCA_MIRRED_PARMS);
        tc_mirred m{};
        if (parms == opts.end() || parms->second.size() < sizeof m) {
            out.otherActions = true;
            continue;
        }
        std::memcpy(&m, parms->second.data(), sizeof m);
        if (m.eaction != TCA_EGRESS_REDIR) {
            out.otherActions = true;
            continue;
        }
        out.redirectTargets.push_back(static_cast<int>(m.ifindex));
    }
}

}  // namespace

void addIngressQdisc(netlink::Socket& nl, int ifindex, const std::string& what) {
    // NLM_F_EXCL: an ingress qdisc someone else put there is theirs, not to be taken over.
    auto req = ingressQdiscRequest(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, ifindex);
    nl.request(req, "add ingress qdisc on", what);
}

bool hasIngressQdisc(netlink::Socket& nl, int ifindex, const std::string& what) {
    netlink::Request req(RTM_GETQDISC, 0);
    tcHeader(req, ifindex);
    for (const auto& m : nl.dump(req, "qdiscs of " + what)) {
        const auto* hdr = m.header<tcmsg>();
        if (m.type != RTM_NEWQDISC || !hdr || hdr->tcm_ifindex != ifindex) continue;
        if (hdr->tcm_parent != TC_H_INGRESS || hdr->tcm_handle != kIngressHandle) continue;
        if (netlink::stringAttr(netlink::parseAttrs(m, sizeof(tcmsg)), TCA_KIND) == "ingress") {
            return true;
        }
    }
    return false;
}

void deleteIngressQdisc(netlink::Socket& nl, int ifindex, const std::string& what) {
    auto req = ingressQdiscRequest(RTM_DELQDISC, 0, ifindex);
    nl.request(req, "delete ingress qdisc on", what);
}

void addRedirectFilter(netlink::Socket& nl, int ifindex, int targetIfindex,
                       const std::string& what) {
    netlink::Request req(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
    tcmsg* hdr = tcHeader(req, ifindex);
    hdr->tcm_parent = kIngressHandle;
    hdr->tcm_info = TC_H_MAKE(uint32_t{kRedirectPriority} << 16, htons(ETH_P_ALL));
    req.putString(TCA_KIND, "u32");

    size_t options = req.beginNest(TCA_OPTIONS);
    std::vector<char> sel = matchAllSelector();
    req.put(TCA_U32_SEL, sel.data(), sel.size());
    size_t actions = req.beginNest(TCA_U32_ACT);
    size_t first = req.beginNest(1);  // actions are numbered by their order, from 1
    req.putString(TCA_ACT_KIND, "mirred");
    size_t actOptions = req.beginNest(TCA_ACT_OPTIONS);
    tc_mirred mirred{};
    mirred.action = TC_ACT_STOLEN;
    mirred.eaction = TCA_EGRESS_REDIR;
    mirred.ifindex = static_cast<uint32_t>(targetIfindex);
    req.put(TCA_MIRRED_PARMS, &mirred, sizeof mirred);
    req.endNest(actOptions);
    req.endNest(first);
    req.endNest(actions);
    req.endNest(options);

    nl.request(req, "add u32 mirred redirect filter on", what);
}

std::vector<IngressFilter> ingressFilters(netlink::Socket& nl, int ifindex,
                                          const std::string& what) {
    netlink::Request req(RTM_GETTFILTER, 0);
    tcmsg* hdr = tcHeader(req, ifindex);
    hdr->tcm_parent = kIngressHandle;
    std::map<uint32_t, IngressFilter> byInfo;  // keyed by tcm_info: priority and protocol
    for (const auto& m : nl.dump(req, "ingress filters of " + what)) {
        const auto* t = m.header<tcmsg>();
        if (m.type != RTM_NEWTFILTER || !t || t->tcm_ifindex != ifindex) continue;
        IngressFilter& f = byInfo[t->tcm_info];
        f.priority = static_cast<uint16_t>(TC_H_MAJ(t->tcm_info) >> 16);
        f.protocol = static_cast<uint16_t>(TC_H_MIN(t->tcm_info));
        netlink::Attrs a = netlink::parseAttrs(m, sizeof(tcmsg));
        f.kind = netlink::stringAttr(a, TCA_KIND);
        if (!a.count(TCA_OPTIONS)) continue;  // the chain head, or a u32 hash table
        if (f.kind != "u32") {
            f.otherActions = true;  // a classifier this code does not read: never ours
            continue;
        }
        netlink::Attrs opts = netlink::parseAttrs(a[TCA_OPTIONS]);
        if (opts.count(TCA_U32_ACT)) readActions(opts[TCA_U32_ACT], f);
    }
    std::vector<IngressFilter> out;
    out.reserve(byInfo.size());
    for (auto& [info, f] : byInfo) out.push_back(std::move(f));
    return out;
}

void deleteIngressFilter(netlink::Socket& nl, int ifindex, const IngressFilter& filter,
                         const std::string& what) {
    netlink::Request req(RTM_DELTFILTER, 0);
    tcmsg* hdr = tcHeader(req, ifindex);
    hdr->tcm_parent = kIngressHandle;
    hdr->tcm_info = TC_H_MAKE(uint32_t{filter.priority} << 16, filter.protocol);
    if (!filter.kind.empty()) req.putString(TCA_KIND, filter.kind);
    nl.request(req,
               "delete " + filter.kind + " filter pref " + std::to_string(filter.priority) + " on",
               what);
}

}  // namespace kata::network::tc
