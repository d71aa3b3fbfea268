// OCI hooks: each runs with the container state JSON on stdin and an optional timeout.
#pragma once

#include <sys/types.h>

#include <string>

#include "agent/oci.pb.h"

namespace kata::jail {

std::string containerStateJson(const grpc::Spec& spec, const std::string& id,
                               const std::string& status, pid_t pid, const std::string& bundle);

// Runs the hooks in order; throws on the first that fails (exit status, timeout, exec error),
// naming the stage and the hook's path and including what it wrote to stderr.
void runHooks(const char* stage, const google::protobuf::RepeatedPtrField<grpc::Hook>& hooks,
              const std::string& stateJson);

}  // namespace kata::jail
