// The user a process runs as (ids, supplementary groups, resolved from the container's
// /etc/passwd and /etc/group) and its rlimits.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "agent/oci.pb.h"

namespace kata::jail {

struct UserPlan {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary
    std::string home = "/";
};

// rootfs: the container's root as seen by the agent. A username is looked up in
// <rootfs>/etc/passwd; groups naming the user in <rootfs>/etc/group are added.
UserPlan resolveUser(const std::string& rootfs, const grpc::User& user);

struct RlimitPlan {
    int resource;
    struct rlimit limit;
};
// Throws kInvalidArgument naming an unknown rlimit type.
std::vector<RlimitPlan> planRlimits(const grpc::Process& process);

// Child side: setgroups/setresgid/setresuid keeping the permitted capabilities.
void childSwitchUser(int syncFd, const UserPlan& user);
void childSetRlimits(int syncFd, const std::vector<RlimitPlan>& rlimits);

}  // namespace kata::jail
