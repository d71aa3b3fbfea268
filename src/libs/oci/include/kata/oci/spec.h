// OCI runtime-spec JSON (config.json) <-> the agent protocol's grpc::Spec.
//
// The messages of agent/oci.proto carry the OCI JSON keys as json_name, so the conversion is a
// walk over the protobuf descriptors. Keys the protocol does not carry are ignored.
//
// Shape differences between OCI JSON and the protocol, handled here:
//  - linux.resources.devices[].major/minor: absent in JSON means "any device" (wildcard); the
//    protocol has no presence for int64, so a wildcard is carried as kWildcardDevice (-1).
//  - seccomp syscalls[].errnoRet: a oneof in the protocol, so absent and 0 stay distinct.
//  - 64-bit integers are JSON numbers (not strings as in protobuf's canonical JSON).
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <string>

#include "agent/oci.pb.h"

namespace kata::oci {

// Major/minor of a device cgroup rule that matches any device.
constexpr int64_t kWildcardDevice = -1;

// Parses a config.json document. Throws kata::Error(kInvalidArgument) whose message starts with
// "invalid config.json: " and names the bad field path (e.g. "process.user.uid") or the
// line/column of a syntax error.
grpc::Spec specFromJson(const std::string& json);

// Writes OCI JSON again (e.g. config.json in the guest). pretty: indented, else compact.
std::string specToJson(const grpc::Spec& spec, bool pretty = true);

// Reads and parses a config.json file; a missing or unreadable file is a SystemError
// ("read <path>: ..."), bad content kInvalidArgument naming the path.
grpc::Spec loadSpecFile(const std::string& path);

// Writes config.json atomically (temporary file in the same directory, then rename).
void saveSpecFile(const grpc::Spec& spec, const std::string& path);

// The same conversion for any message of agent/oci.proto, e.g. the OCI Process that containerd
// sends with an exec, or the LinuxResources of an update. `what` names the document in errors
// ("invalid <what>: ...").
void messageFromJson(const std::string& json, google::protobuf::Message* msg,
                     const std::string& what);
std::string messageToJson(const google::protobuf::Message& msg, bool pretty = false);

inline grpc::Process processFromJson(const std::string& json) {
    grpc::Process p;
    messageFromJson(json, &p, "process spec");
    return p;
}

inline grpc::LinuxResources resourcesFromJson(const std::string& json) {
    grpc::LinuxResources r;
    messageFromJson(json, &r, "resources");
    return r;
}

}  // namespace kata::oci
