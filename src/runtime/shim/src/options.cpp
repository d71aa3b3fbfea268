#include "options.h"

#include <google/protobuf/any.pb.h>

#include "containerd/runtimeoptions/v1/api.pb.h"
#include "kata/common/error.h"

namespace kata::shim {

namespace {
bool parseBool(const std::string& flag, const std::string& v) {
    if (v == "true" || v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "True") return true;
    if (v == "false" || v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "False")
        return false;
    throw Error(StatusCode::kInvalidArgument,
                "parse shim flag -" + flag + ": invalid boolean value \"" + v + "\"");
}
}  // namespace

ShimOptions parseShimArgs(const std::vector<std::string>& args) {
    ShimOptions o;
    if (!args.empty()) o.argv0 = args[0];
    std::vector<std::string> positional;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.size() < 2 || a[0] != '-' || !positional.empty()) {
            positional.push_back(a);
            continue;
        }
        std::string name = a.substr(a[1] == '-' ? 2 : 1);
        std::string value;
        bool hasValue = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            hasValue = true;
        }
        if (name == "debug") {
            o.debug = hasValue ? parseBool(name, value) : true;
            continue;
        }
        if (name == "v" || name == "version") {
            o.action = ShimAction::kVersion;
            continue;
        }
        std::string* target = nullptr;
        if (name == "namespace")
            target = &o.ns;
        else if (name == "address")
            target = &o.address;
        else if (name == "publish-binary")
            target = &o.publishBinary;
        else if (name == "id")
            target = &o.id;
        else if (name == "bundle")
            target = &o.bundle;
        else if (name == "socket")
            target = &o.socket;
        else
            throw Error(StatusCode::kInvalidArgument,
                        "parse shim arguments: flag provided but not defined: -" + name);
        if (!hasValue) {
            if (i + 1 >= args.size()) {
                throw Error(StatusCode::kInvalidArgument,
                            "parse shim arguments: flag needs an argument: -" + name);
            }
            value = args[++i];
        }
        *target = value;
    }
    if (o.action != ShimAction::kVersion && !positional.empty()) {
        if (positional[0] == "start")
            o.action = ShimAction::kStart;
        else if (positional[0] == "delete")
            o.action = ShimAction::kDelete;
        else
            throw Error(StatusCode::kInvalidArgument, "parse shim arguments: unknown action \"" +
                                                          positional[0] +
                                                          "\" (expected start or delete)");
    }
    return o;
}

std::vector<std::string> serveArgs(const ShimOptions& o, const std::string& socketAddress) {
    std::vector<std::string> a = {o.argv0, "-namespace", o.ns, "-id", o.id, "-address", o.address};
    if (!o.publishBinary.empty()) {
        a.push_back("-publish-binary");
        a.push_back(o.publishBinary);
    }
    a.push_back("-socket");
    a.push_back(socketAddress);
    if (o.debug) a.push_back("-debug");
    return a;
}

std::string configPathFromOptions(const google::protobuf::Any& options) {
    const std::string& url = options.type_url();
    static const std::string kSuffix = "runtimeoptions.v1.Options";
    if (url.size() < kSuffix.size() ||
        url.compare(url.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
        return "";
    }
    runtimeoptions::v1::Options o;
    if (!o.ParseFromString(options.value())) {
        throw Error(StatusCode::kInvalidArgument,
                    "parse runtime options " + url + ": invalid protobuf payload");
    }
    return o.config_path();
}

std::string shimName(const std::string& argv0) {
    auto slash = argv0.rfind('/');
    return slash == std::string::npos ? argv0 : argv0.substr(slash + 1);
}

}  // namespace kata::shim
