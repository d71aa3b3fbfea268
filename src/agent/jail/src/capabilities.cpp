#include "capabilities.h"

#include <sys/capability.h>
#include <sys/prctl.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "kata/common/error.h"
#include "sync.h"

namespace kata::jail {

namespace {
std::vector<int> parseSet(const google::protobuf::RepeatedPtrField<std::string>& names,
                          const char* setName) {
    std::vector<int> out;
    for (const auto& name : names) {
        std::string lower = name;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return std::tolower(c); });
        cap_value_t v;
        if (cap_from_name(lower.c_str(), &v) != 0)
            throw Error(
                StatusCode::kInvalidArgument,
                std::string("capability \"") + name + "\" in the " + setName + " set is unknown");
        // A capability newer than the running kernel cannot be granted; skip it like runc.
        if (v > static_cast<cap_value_t>(cap_max_bits()) - 1) continue;
        out.push_back(v);
    }
    return out;
}

bool contains(const std::vector<int>& v, int c) {
    return std::find(v.begin(), v.end(), c) != v.end();
}
}  // namespace

CapabilityPlan planCapabilities(const grpc::Process& process) {
    CapabilityPlan plan;
    if (!process.has_capabilities()) return plan;
    const auto& c = process.capabilities();
    plan.present = true;
    plan.bounding = parseSet(c.bounding(), "bounding");
    plan.effective = parseSet(c.effective(), "effective");
    plan.inheritable = parseSet(c.inheritable(), "inheritable");
    plan.permitted = parseSet(c.permitted(), "permitted");
    plan.ambient = parseSet(c.ambient(), "ambient");
    return plan;
}

void childDropBounding(int syncFd, const CapabilityPlan& plan) {
    if (!plan.present) return;
    int last = static_cast<int>(cap_max_bits()) - 1;
    for (int c = 0; c <= last; ++c) {
        if (contains(plan.bounding, c)) continue;
        if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
            childFail(syncFd, "drop bounding capability", cap_to_name(c), errno);
    }
}

void childApplyCapabilities(int syncFd, const CapabilityPlan& plan) {
    if (!plan.present) return;
    cap_t caps = cap_init();
    if (!caps) childFail(syncFd, "cap_init", "", errno);
    auto setFlag = [&](const std::vector<int>& values, cap_flag_t flag) {
        if (values.empty()) return;
        std::vector<cap_value_t> v(values.begin(), values.end());
        if (cap_set_flag(caps, flag, static_cast<int>(v.size()), v.data(), CAP_SET) != 0)
            childFail(syncFd, "cap_set_flag", "", errno);
    };
    setFlag(plan.effective, CAP_EFFECTIVE);
    setFlag(plan.permitted, CAP_PERMITTED);
    setFlag(plan.inheritable, CAP_INHERITABLE);
    if (cap_set_proc(caps) != 0) childFail(syncFd, "set capabilities", "of the process", errno);
    cap_free(caps);
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        childFail(syncFd, "clear ambient capabilities", "", errno);
    for (int c : plan.ambient) {
        // Raising an ambient capability needs it permitted and inheritable; runc ignores the
        // failure the same way.
        (void)::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
    }
}

}  // namespace kata::jail
