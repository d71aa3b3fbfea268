#include "kata/oci/spec.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kata/common/error.h"

namespace fs = std::filesystem;
using google::protobuf::util::MessageDifferencer;
using nlohmann::json;

namespace {

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "kata-oci-test.XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

std::string readFile(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Runs `runc spec` in dir; false when runc is not installed.
bool runcSpec(const fs::path& dir) {
    if (::access("/usr/sbin/runc", X_OK) != 0 && ::access("/usr/bin/runc", X_OK) != 0) return false;
    std::string cmd = "cd '" + dir.string() + "' && runc spec";
    int rc = std::system(cmd.c_str());
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

std::string errorOf(const std::string& text) {
    try {
        kata::oci::specFromJson(text);
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kInvalidArgument) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no error for: " << text;
    return "";
}

TEST(OciSpec, ParsesRuncSpecAndWritesItBackUnchanged) {
    TempDir dir;
    if (!runcSpec(dir.path())) GTEST_SKIP() << "runc is not installed";
    std::string original = readFile(dir.path() / "config.json");

    grpc::Spec spec = kata::oci::loadSpecFile((dir.path() / "config.json").string());
    EXPECT_EQ(spec.version(), json::parse(original)["ociVersion"]);
    EXPECT_TRUE(spec.process().terminal());
    ASSERT_EQ(spec.process().args_size(), 1);
    EXPECT_EQ(spec.process().args(0), "sh");
    EXPECT_EQ(spec.process().cwd(), "/");
    EXPECT_EQ(spec.process().capabilities().bounding_size(), 3);
    ASSERT_EQ(spec.process().rlimits_size(), 1);
    EXPECT_EQ(spec.process().rlimits(0).type(), "RLIMIT_NOFILE");
    EXPECT_EQ(spec.process().rlimits(0).hard(), 1024u);
    EXPECT_TRUE(spec.process().nonewprivileges());
    EXPECT_EQ(spec.root().path(), "rootfs");
    EXPECT_TRUE(spec.root().readonly());
    EXPECT_EQ(spec.hostname(), "runc");
    ASSERT_GE(spec.mounts_size(), 2);
    EXPECT_EQ(spec.mounts(0).destination(), "/proc");
    EXPECT_EQ(spec.mounts(1).options_size(), 4);
    ASSERT_EQ(spec.linux().resources().devices_size(), 1);
    const auto& rule = spec.linux().resources().devices(0);
    EXPECT_FALSE(rule.allow());
    EXPECT_EQ(rule.access(), "rwm");
    EXPECT_EQ(rule.major(), kata::oci::kWildcardDevice);
    EXPECT_EQ(rule.minor(), kata::oci::kWildcardDevice);
    EXPECT_EQ(spec.linux().namespaces(0).type(), "pid");
    EXPECT_GT(spec.linux().maskedpaths_size(), 0);
    EXPECT_GT(spec.linux().readonlypaths_size(), 0);

    // Everything runc wrote is carried by the protocol, so the JSON comes back identical.
    EXPECT_EQ(json::parse(kata::oci::specToJson(spec)), json::parse(original));
}

TEST(OciSpec, ProtobufJsonParserAgreesThanksToJsonNames) {
    TempDir dir;
    if (!runcSpec(dir.path())) GTEST_SKIP() << "runc is not installed";
    std::string original = readFile(dir.path() / "config.json");
    grpc::Spec viaProtobuf;
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = true;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(original, &viaProtobuf, opts).ok());
    grpc::Spec ours = kata::oci::specFromJson(original);
    // The only difference: protobuf's parser cannot know that absent major/minor mean "any".
    auto* rule = viaProtobuf.mutable_linux()->mutable_resources()->mutable_devices(0);
    rule->set_major(kata::oci::kWildcardDevice);
    rule->set_minor(kata::oci::kWildcardDevice);
    EXPECT_TRUE(MessageDifferencer::Equals(ours, viaProtobuf));
}

const char* kFullConfig = R"({
  "ociVersion": "1.1.0",
  "process": {
    "user": {"uid": 1000, "gid": 0, "additionalGids": [5, 6], "umask": 18},
    "args": ["/bin/true"],
    "cwd": "/work",
    "consoleSize": {"height": 24, "width": 80},
    "rlimits": [{"type": "RLIMIT_CORE", "hard": 18446744073709551615, "soft": 0}],
    "oomScoreAdj": -500,
    "apparmorProfile": "unconfined",
    "selinuxLabel": "system_u:system_r:container_t:s0"
  },
  "root": {"path": "/run/kata-containers/c1/rootfs"},
  "annotations": {"io.kubernetes.cri.container-type": "sandbox", "b": "2"},
  "hooks": {"prestart": [{"path": "/bin/hook", "args": ["hook", "x"], "timeout": 5}]},
  "linux": {
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "sysctl": {"net.ipv4.ip_forward": "1"},
    "cgroupsPath": "/kata/c1",
    "resources": {
      "devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rw"}
      ],
      "memory": {"limit": 268435456, "reservation": 0, "swap": -1, "swappiness": 60, "disableOOMKiller": true},
      "cpu": {"shares": 1024, "quota": -1, "period": 100000, "cpus": "0-1", "mems": "0"},
      "pids": {"limit": 0},
      "blockIO": {
        "weight": 500,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]
      },
      "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
      "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 0}]},
      "unified": {"memory.high": "max"}
    },
    "namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1"}],
    "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}],
    "seccomp": {
      "defaultAction": "SCMP_ACT_ERRNO",
      "defaultErrnoRet": 1,
      "architectures": ["SCMP_ARCH_X86_64"],
      "flags": ["SECCOMP_FILTER_FLAG_LOG"],
      "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0,
         "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 1, "value": 4294967295, "op": "SCMP_CMP_MASKED_EQ"}]}
      ]
    },
    "rootfsPropagation": "rslave",
    "maskedPaths": ["/proc/kcore"],
    "readonlyPaths": ["/proc/sys"],
    "mountLabel": "",
    "intelRdt": {"l3CacheSchema": "L3:0=ff"}
  }
})";

TEST(OciSpec, ParsesSeccompResourcesDevicesAndMappings) {
    grpc::Spec spec = kata::oci::specFromJson(kFullConfig);
    const auto& p = spec.process();
    EXPECT_EQ(p.user().uid(), 1000u);
    EXPECT_EQ(p.user().additionalgids_size(), 2);
    EXPECT_EQ(p.consolesize().width(), 80u);
    EXPECT_EQ(p.rlimits(0).hard(), UINT64_MAX);
    EXPECT_EQ(p.oomscoreadj(), -500);
    EXPECT_EQ(spec.annotations().at("io.kubernetes.cri.container-type"), "sandbox");
    EXPECT_EQ(spec.hooks().prestart(0).timeout(), 5);

    const auto& l = spec.linux();
    EXPECT_EQ(l.uidmappings(0).hostid(), 100000u);
    EXPECT_EQ(l.uidmappings(0).containerid(), 0u);
    EXPECT_EQ(l.gidmappings(0).size(), 65536u);
    EXPECT_EQ(l.sysctl().at("net.ipv4.ip_forward"), "1");
    EXPECT_EQ(l.cgroupspath(), "/kata/c1");

    const auto& r = l.resources();
    ASSERT_EQ(r.devices_size(), 3);
    EXPECT_EQ(r.devices(0).major(), kata::oci::kWildcardDevice);
    EXPECT_EQ(r.devices(1).major(), 1);
    EXPECT_EQ(r.devices(1).minor(), 3);
    EXPECT_EQ(r.devices(2).major(), 136);
    EXPECT_EQ(r.devices(2).minor(), kata::oci::kWildcardDevice);
    EXPECT_EQ(r.memory().limit(), 268435456);
    EXPECT_EQ(r.memory().swap(), -1);
    EXPECT_EQ(r.memory().swappiness(), 60u);
    EXPECT_TRUE(r.memory().disableoomkiller());
    EXPECT_EQ(r.cpu().quota(), -1);
    EXPECT_EQ(r.cpu().cpus(), "0-1");
    EXPECT_TRUE(r.has_pids());
    EXPECT_EQ(r.blockio().weightdevice(0).weight(), 100u);
    EXPECT_EQ(r.blockio().throttlereadbpsdevice(0).rate(), 1048576u);
    EXPECT_EQ(r.hugepagelimits(0).pagesize(), "2MB");
    EXPECT_EQ(r.network().classid(), 7u);

    EXPECT_EQ(l.namespaces(1).path(), "/var/run/netns/cni-1");
    EXPECT_EQ(l.devices(0).filemode(), 438u);
    EXPECT_EQ(l.devices(0).minor(), 229);

    const auto& sc = l.seccomp();
    EXPECT_EQ(sc.defaultaction(), "SCMP_ACT_ERRNO");
    EXPECT_EQ(sc.architectures(0), "SCMP_ARCH_X86_64");
    EXPECT_EQ(sc.flags(0), "SECCOMP_FILTER_FLAG_LOG");
    EXPECT_EQ(sc.syscalls(0).ErrnoRet_case(), grpc::LinuxSyscall::ERRNORET_NOT_SET);
    EXPECT_EQ(sc.syscalls(1).ErrnoRet_case(), grpc::LinuxSyscall::kErrnoret);
    EXPECT_EQ(sc.syscalls(1).errnoret(), 0u);
    EXPECT_EQ(sc.syscalls(1).args(1).value(), 4294967295u);
    EXPECT_EQ(sc.syscalls(1).args(1).op(), "SCMP_CMP_MASKED_EQ");
    EXPECT_EQ(l.rootfspropagation(), "rslave");
    EXPECT_EQ(l.intelrdt().l3cacheschema(), "L3:0=ff");
}

TEST(OciSpec, RoundTripKeepsEverythingTheProtocolCarries) {
    grpc::Spec spec = kata::oci::specFromJson(kFullConfig);
    std::string text = kata::oci::specToJson(spec);
    grpc::Spec again = kata::oci::specFromJson(text);
    std::string diff;
    MessageDifferencer d;
    d.ReportDifferencesToString(&diff);
    EXPECT_TRUE(d.Compare(spec, again)) << diff;

    json out = json::parse(text);
    // 64-bit values are plain numbers, wildcards are absent again, explicit zeros are kept.
    EXPECT_TRUE(out["linux"]["resources"]["memory"]["limit"].is_number_integer());
    EXPECT_EQ(out["process"]["rlimits"][0]["hard"].get<uint64_t>(), UINT64_MAX);
    EXPECT_EQ(out["linux"]["resources"]["memory"]["swap"], -1);
    EXPECT_FALSE(out["linux"]["resources"]["devices"][0].contains("major"));
    EXPECT_FALSE(out["linux"]["resources"]["devices"][2].contains("minor"));
    EXPECT_EQ(out["linux"]["resources"]["devices"][2]["major"], 136);
    EXPECT_EQ(out["linux"]["resources"]["devices"][0]["allow"], false);
    EXPECT_EQ(out["linux"]["uidMappings"][0]["containerID"], 0);
    EXPECT_EQ(out["linux"]["resources"]["pids"]["limit"], 0);
    EXPECT_FALSE(out["linux"]["seccomp"]["syscalls"][0].contains("errnoRet"));
    EXPECT_EQ(out["linux"]["seccomp"]["syscalls"][1]["errnoRet"], 0);
    EXPECT_EQ(out["process"]["user"]["gid"], 0);
    // Keys the protocol does not carry are dropped, not invented.
    EXPECT_FALSE(out["linux"]["resources"].contains("unified"));
    EXPECT_FALSE(out["process"]["user"].contains("umask"));
}

TEST(OciSpec, MalformedJsonNamesThePosition) {
    std::string msg =
        errorOf("{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\"args\": [\"sh\" }\n}");
    EXPECT_EQ(msg.rfind("invalid config.json: ", 0), 0u) << msg;
    EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("[json.exception"), std::string::npos) << msg;

    EXPECT_NE(errorOf("").find("invalid config.json"), std::string::npos);
    EXPECT_EQ(errorOf(R"({"process": {"oomScoreAdj": 1e999}})"),
              "invalid config.json: number overflow parsing '1e999'");
    EXPECT_NE(errorOf("[1, 2]").find("expected a JSON object at the top level, got array"),
              std::string::npos);
}

TEST(OciSpec, WrongTypesNameTheField) {
    EXPECT_EQ(errorOf(R"({"process": {"user": {"uid": "0"}}})"),
              "invalid config.json: process.user.uid: expected an unsigned 32-bit integer, got "
              "string");
    EXPECT_EQ(errorOf(R"({"process": {"user": {"uid": -1}}})"),
              "invalid config.json: process.user.uid: -1 is out of range for an unsigned 32-bit "
              "integer");
    EXPECT_EQ(errorOf(R"({"process": {"user": {"uid": 4294967296}}})"),
              "invalid config.json: process.user.uid: 4294967296 is out of range for an unsigned "
              "32-bit integer");
    EXPECT_EQ(errorOf(R"({"mounts": {"destination": "/x"}})"),
              "invalid config.json: mounts: expected an array, got object");
    EXPECT_EQ(errorOf(R"({"mounts": [{"destination": 5}]})"),
              "invalid config.json: mounts[0].destination: expected a string, got number");
    EXPECT_EQ(errorOf(R"({"linux": {"resources": {"memory": {"limit": 1.5}}}})"),
              "invalid config.json: linux.resources.memory.limit: expected a 64-bit integer, got a "
              "fraction");
    EXPECT_EQ(errorOf(R"({"process": {"noNewPrivileges": "yes"}})"),
              "invalid config.json: process.noNewPrivileges: expected a boolean, got string");
    EXPECT_EQ(errorOf(R"({"annotations": {"a": 1}})"),
              "invalid config.json: annotations[\"a\"]: expected a string, got number");
    EXPECT_EQ(errorOf(R"({"process": "sh"})"),
              "invalid config.json: process: expected an object, got string");
}

TEST(OciSpec, UnknownKeysAndNullsAreIgnored) {
    grpc::Spec spec = kata::oci::specFromJson(
        R"({"ociVersion": "1.0.2", "vm": {"kernel": {"path": "/k"}}, "hostname": null,
            "process": {"scheduler": {"policy": "SCHED_OTHER"}, "args": ["a"]}})");
    EXPECT_EQ(spec.version(), "1.0.2");
    EXPECT_EQ(spec.hostname(), "");
    EXPECT_EQ(spec.process().args(0), "a");
}

TEST(OciSpec, SaveAndLoadFile) {
    TempDir dir;
    fs::path file = dir.path() / "config.json";
    grpc::Spec spec = kata::oci::specFromJson(kFullConfig);
    kata::oci::saveSpecFile(spec, file.string());
    EXPECT_TRUE(MessageDifferencer::Equals(kata::oci::loadSpecFile(file.string()), spec));
    EXPECT_EQ(fs::status(file).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                  fs::perms::others_read);
    // Only config.json is left behind, no temporary file.
    EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(OciSpec, LoadErrorsNameThePath) {
    TempDir dir;
    std::string missing = (dir.path() / "nope.json").string();
    try {
        kata::oci::loadSpecFile(missing);
        FAIL() << "no error for a missing file";
    } catch (const kata::SystemError& e) {
        EXPECT_EQ(e.err(), ENOENT);
        EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    }
    fs::path bad = dir.path() / "bad.json";
    std::ofstream(bad) << R"({"process": {"args": "sh"}})";
    try {
        kata::oci::loadSpecFile(bad.string());
        FAIL() << "no error for a bad file";
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kInvalidArgument);
        EXPECT_EQ(std::string(e.what()), "load " + bad.string() +
                                             ": invalid config.json: process.args: expected an "
                                             "array, got string");
    }
}

TEST(OciSpec, ProcessAndResourcesDocuments) {
    grpc::Process p = kata::oci::processFromJson(
        R"({"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo hi"],
            "env": ["A=1"], "cwd": "/"})");
    EXPECT_EQ(p.args(2), "echo hi");
    grpc::LinuxResources r = kata::oci::resourcesFromJson(R"({"cpu": {"quota": 50000}})");
    EXPECT_EQ(r.cpu().quota(), 50000);
    try {
        kata::oci::resourcesFromJson(R"({"cpu": {"quota": "x"}})");
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "invalid resources: cpu.quota: expected a 64-bit integer, got string");
    }
}

}  // namespace
