#include <google/protobuf/any.pb.h>
#include <gtest/gtest.h>

#include "containerd/runtimeoptions/v1/api.pb.h"
#include "kata/common/error.h"
#include "options.h"
#include "paths.h"

using namespace kata::shim;

TEST(ShimOptions, ParsesContainerdStartCommandLine) {
    auto o = parseShimArgs({"/usr/bin/containerd-shim-kata-qemu-v2", "-namespace", "k8s.io",
                            "-address", "/run/containerd/containerd.sock", "-publish-binary",
                            "/usr/bin/containerd", "-id", "abc", "-debug", "start"});
    EXPECT_EQ(o.action, ShimAction::kStart);
    EXPECT_EQ(o.ns, "k8s.io");
    EXPECT_EQ(o.address, "/run/containerd/containerd.sock");
    EXPECT_EQ(o.publishBinary, "/usr/bin/containerd");
    EXPECT_EQ(o.id, "abc");
    EXPECT_TRUE(o.debug);
    EXPECT_EQ(shimName(o.argv0), "containerd-shim-kata-qemu-v2");
}

TEST(ShimOptions, ParsesDeleteWithBundleAndEqualsSyntax) {
    auto o = parseShimArgs(
        {"shim", "--namespace=default", "-id=c1", "-bundle", "/b", "-debug=false", "delete"});
    EXPECT_EQ(o.action, ShimAction::kDelete);
    EXPECT_EQ(o.ns, "default");
    EXPECT_EQ(o.id, "c1");
    EXPECT_EQ(o.bundle, "/b");
    EXPECT_FALSE(o.debug);
}

TEST(ShimOptions, NoActionMeansServe) {
    auto o = parseShimArgs({"shim", "-namespace", "n", "-id", "x", "-socket", "unix:///s"});
    EXPECT_EQ(o.action, ShimAction::kServe);
    EXPECT_EQ(o.socket, "unix:///s");
}

TEST(ShimOptions, RejectsUnknownFlagAndActionNamingThem) {
    try {
        parseShimArgs({"shim", "-bogus", "1"});
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_NE(std::string(e.what()).find("-bogus"), std::string::npos);
    }
    try {
        parseShimArgs({"shim", "-id", "x", "frobnicate"});
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_NE(std::string(e.what()).find("frobnicate"), std::string::npos);
    }
    EXPECT_THROW(parseShimArgs({"shim", "-id"}), kata::Error);
}

TEST(ShimOptions, ServeArgsRoundTrip) {
    auto o = parseShimArgs({"/x/containerd-shim-kata-v2", "-namespace", "n", "-address", "/a",
                            "-publish-binary", "/p", "-id", "i", "-debug", "start"});
    auto args = serveArgs(o, "unix:///run/containerd/s/abc");
    auto back = parseShimArgs(args);
    EXPECT_EQ(back.action, ShimAction::kServe);
    EXPECT_EQ(back.argv0, "/x/containerd-shim-kata-v2");
    EXPECT_EQ(back.ns, "n");
    EXPECT_EQ(back.address, "/a");
    EXPECT_EQ(back.id, "i");
    EXPECT_EQ(back.socket, "unix:///run/containerd/s/abc");
    EXPECT_TRUE(back.debug);
}

TEST(ShimOptions, ConfigPathFromRuntimeOptions) {
    runtimeoptions::v1::Options ro;
    ro.set_config_path("/etc/kata/configuration-qemu.toml");
    google::protobuf::Any any;
    any.set_type_url("runtimeoptions.v1.Options");
    any.set_value(ro.SerializeAsString());
    EXPECT_EQ(configPathFromOptions(any), "/etc/kata/configuration-qemu.toml");

    any.set_type_url("containerd.runc.v1.Options");
    EXPECT_EQ(configPathFromOptions(any), "");
}

TEST(ShimPaths, SocketAddressIsStableAndDistinct) {
    auto a = shimSocketAddress("/run/containerd/containerd.sock", "default", "c1");
    EXPECT_EQ(a, shimSocketAddress("/run/containerd/containerd.sock/", "default", "c1"));
    EXPECT_NE(a, shimSocketAddress("/run/containerd/containerd.sock", "default", "c2"));
    EXPECT_NE(a, shimSocketAddress("/run/containerd/containerd.sock", "k8s.io", "c1"));
    EXPECT_EQ(a.rfind("unix:///run/containerd/s/", 0), 0u);
    EXPECT_EQ(socketPathOf(a).size(), std::string("/run/containerd/s/").size() + 64);
}

TEST(ShimPaths, ContractPaths) {
    Paths p;
    EXPECT_EQ(p.sandboxStateDir("s"), "/run/vc/sbs/s");
    EXPECT_EQ(p.vmRunDir("s"), "/run/vc/vm/s");
    EXPECT_EQ(p.sharedDir("s"), "/run/kata-containers/shared/sandboxes/s/shared");
    EXPECT_EQ(p.containerRootfsHost("s", "c"),
              "/run/kata-containers/shared/sandboxes/s/shared/c/rootfs");
    EXPECT_EQ(containerRootfsGuest("c"), "/run/kata-containers/shared/containers/c/rootfs");
}
