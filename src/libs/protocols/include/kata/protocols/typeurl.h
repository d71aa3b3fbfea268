// google.protobuf.Any as containerd uses it. containerd resolves an Any by its type_url through
// its own registry or the protobuf message name, so a message must be packed under its bare full
// name ("containerd.events.TaskExit"), without the "type.googleapis.com/" prefix that
// Any::PackFrom adds: containerd 1.6 (typeurl v1) looks the URL up verbatim as a message name.
// OCI structures travel as JSON under containerd's own URLs below.
#pragma once

#include <google/protobuf/any.pb.h>
#include <google/protobuf/message.h>

#include <string>
#include <string_view>

namespace kata::protocols {

// Exec's process spec (containerd.task.v2.ExecProcessRequest.spec): JSON of an OCI Process.
inline constexpr std::string_view kOciProcessTypeUrl =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";
// Update's resources (containerd.task.v2.UpdateTaskRequest.resources): JSON of LinuxResources.
inline constexpr std::string_view kOciLinuxResourcesTypeUrl =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
// CRI runtime options in CreateTaskRequest.options: containerd 1.6/1.7, and 2.x.
inline constexpr std::string_view kCriRuntimeOptionsTypeUrl = "cri.runtimeoptions.v1.Options";
inline constexpr std::string_view kRuntimeOptionsTypeUrl = "runtimeoptions.v1.Options";

// The type URL containerd uses for a protobuf message: its full name.
inline std::string typeUrlOf(const google::protobuf::Message& msg) {
    return msg.GetDescriptor()->full_name();
}

// Packs msg the way containerd's typeurl.MarshalAny does.
inline google::protobuf::Any packAny(const google::protobuf::Message& msg) {
    google::protobuf::Any any;
    any.set_type_url(typeUrlOf(msg));
    any.set_value(msg.SerializeAsString());
    return any;
}

// The message name an Any carries, whether or not its URL has a "host/" prefix.
inline std::string_view anyMessageName(const google::protobuf::Any& any) {
    std::string_view url = any.type_url();
    auto slash = url.rfind('/');
    return slash == std::string_view::npos ? url : url.substr(slash + 1);
}

// Unpacks into msg when the Any holds that message type (prefixed or bare URL); false otherwise
// or when the payload does not parse.
inline bool unpackAny(const google::protobuf::Any& any, google::protobuf::Message* msg) {
    if (anyMessageName(any) != msg->GetDescriptor()->full_name()) return false;
    return msg->ParseFromString(any.value());
}

}  // namespace kata::protocols
