// Linux namespaces from the spec: which to create (clone flags) and which to join by path.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "agent/oci.pb.h"
#include "kata/common/fd.h"

namespace kata::jail {

struct NamespaceJoin {
    int type;  // CLONE_NEW*
    std::string path;
    int fd = -1;  // opened by the agent before forking
};

struct NamespacePlan {
    int cloneFlags = 0;  // namespaces to create
    std::vector<NamespaceJoin> joins;
    bool has(int type) const;  // created or joined
};

// Throws kInvalidArgument on an unknown namespace type.
NamespacePlan planNamespaces(const grpc::Spec& spec, const std::string& sandboxPidNsPath);
const char* namespaceName(int type);

// Agent side: opens every join path (owned by the returned fds; the plan keeps raw numbers).
std::vector<UniqueFd> openJoins(NamespacePlan& plan);
// Agent side: the namespaces of a running process that differ from the agent's own, in the
// order setns needs them (user first, mount last).
std::vector<NamespaceJoin> processNamespaces(pid_t pid, std::vector<UniqueFd>* owners);

// Child side: setns into each join (user first); reports failures on syncFd.
void childJoinNamespaces(int syncFd, const std::vector<NamespaceJoin>& joins);

}  // namespace kata::jail
