// The shim's command line (containerd's shim v2 contract) and containerd's runtime options.
#pragma once

#include <string>
#include <vector>

namespace google::protobuf {
class Any;
}

namespace kata::shim {

enum class ShimAction { kServe, kStart, kDelete, kVersion };

struct ShimOptions {
    std::string argv0;          // as invoked: its basename selects the configuration file
    std::string ns;             // -namespace
    std::string address;        // -address: containerd's gRPC socket
    std::string publishBinary;  // -publish-binary
    std::string id;             // -id
    std::string bundle;         // -bundle (delete); the working directory otherwise
    std::string socket;         // -socket: serve on this address (internal, start -> serve)
    bool debug = false;         // -debug
    ShimAction action = ShimAction::kServe;
    std::string ttrpcAddress;  // $TTRPC_ADDRESS: containerd's ttrpc socket, for events
    std::string grpcAddress;   // $GRPC_ADDRESS
};

// Go flag syntax: "-name value", "-name=value", "--name value"; booleans take no value unless
// written "-debug=true". The one positional argument is the action. Throws kInvalidArgument
// naming the flag.
ShimOptions parseShimArgs(const std::vector<std::string>& args);

// Arguments start passes to the server process it spawns.
std::vector<std::string> serveArgs(const ShimOptions& opts, const std::string& socketAddress);

// ConfigPath from CreateTaskRequest.options (runtimeoptions.v1.Options); "" when absent or of
// another type.
std::string configPathFromOptions(const google::protobuf::Any& options);

// basename of argv[0].
std::string shimName(const std::string& argv0);

}  // namespace kata::shim
