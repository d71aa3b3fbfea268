#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "kata/common/error.h"
#include "persist.h"

using namespace kata::shim;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/shim-persist-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};
}  // namespace

TEST(Persist, SaveLoadRemoveRoundTrip) {
    TempDir t;
    Paths p;
    p.stateRoot = t.path + "/sbs";
    SandboxState s;
    s.sandboxId = "sb1";
    s.ns = "default";
    s.vmRunDir = "/run/vc/vm/sb1";
    s.shareRoot = "/run/kata-containers/shared/sandboxes/sb1";
    s.hypervisorPid = 4242;
    s.containers["c1"] = {"c1", "/bundles/c1", {"/share/c1/rootfs", "/share/c1-3-hosts"}};
    saveState(p, s);
    EXPECT_TRUE(fs::exists(t.path + "/sbs/sb1/state.json"));
    EXPECT_FALSE(fs::exists(t.path + "/sbs/sb1/state.json.tmp"));

    auto back = loadState(p, "sb1");
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->sandboxId, "sb1");
    EXPECT_EQ(back->ns, "default");
    EXPECT_EQ(back->vmRunDir, "/run/vc/vm/sb1");
    EXPECT_EQ(back->hypervisorPid, 4242);
    ASSERT_EQ(back->containers.size(), 1u);
    EXPECT_EQ(back->containers["c1"].bundle, "/bundles/c1");
    EXPECT_EQ(back->containers["c1"].mounts,
              (std::vector<std::string>{"/share/c1/rootfs", "/share/c1-3-hosts"}));

    removeState(p, "sb1");
    EXPECT_FALSE(fs::exists(t.path + "/sbs/sb1"));
    EXPECT_FALSE(loadState(p, "sb1").has_value());
    removeState(p, "sb1");  // idempotent
}

TEST(Persist, CorruptStateNamesTheFile) {
    TempDir t;
    Paths p;
    p.stateRoot = t.path;
    fs::create_directories(t.path + "/bad");
    std::ofstream(t.path + "/bad/state.json") << "{ not json";
    try {
        loadState(p, "bad");
        FAIL() << "corrupt state accepted";
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kDataLoss);
        EXPECT_NE(std::string(e.what()).find(t.path + "/bad/state.json"), std::string::npos);
    }
}
