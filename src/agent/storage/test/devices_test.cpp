#include "kata/agent/devices.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "kata/common/error.h"
#include "test_util.h"

namespace kata::agent {
namespace {

namespace fs = std::filesystem;

void addDevice(grpc::Spec* spec, const std::string& path, const std::string& type, int64_t major,
               int64_t minor) {
    auto* d = spec->mutable_linux()->add_devices();
    d->set_path(path);
    d->set_type(type);
    d->set_major(major);
    d->set_minor(minor);
    d->set_filemode(0660);
}

void addRule(grpc::Spec* spec, bool allow, const std::string& type, int64_t major, int64_t minor,
             const std::string& access) {
    auto* r = spec->mutable_linux()->mutable_resources()->add_devices();
    r->set_allow(allow);
    r->set_type(type);
    r->set_major(major);
    r->set_minor(minor);
    r->set_access(access);
}

// A spec as the shim sends it: the host's numbers for each device, cgroup rules that allow them.
grpc::Spec hostSpec() {
    grpc::Spec spec;
    spec.mutable_process()->add_env("PATH=/bin");
    addDevice(&spec, "/dev/xda", "b", 8, 0);
    addDevice(&spec, "/dev/xdb", "b", 8, 16);
    addDevice(&spec, "/dev/null", "c", 1, 3);
    addRule(&spec, false, "a", 0, 0, "rwm");
    addRule(&spec, true, "b", 8, 0, "rw");
    addRule(&spec, true, "b", 8, 16, "r");
    addRule(&spec, true, "c", 1, 3, "rwm");
    return spec;
}

DeviceUpdate update(const std::string& containerPath, char type, int64_t major, int64_t minor,
                    std::vector<std::string> env = {}) {
    DeviceUpdate u;
    u.containerPath = containerPath;
    u.guestPath = "/dev/guest" + containerPath;
    u.node = {type, major, minor};
    u.env = std::move(env);
    return u;
}

TEST(ApplyDeviceUpdatesTest, OnePassRewritesDevicesRulesAndEnv) {
    grpc::Spec spec = hostSpec();
    DeviceUpdates updates;
    // The guest numbers are the host's swapped: a rewrite applied device by device would move
    // the first rule to 8:16 and then move it back with the second device.
    updates["/dev/xda"] = update("/dev/xda", 'b', 8, 16);
    updates["/dev/xdb"] = update("/dev/xdb", 'b', 8, 0, {"XDB_GUEST=/dev/vdb"});
    updates["device:extra"] = update("", 'b', 0, 0, {"PATH=/usr/bin:/bin"});

    applyDeviceUpdates(updates, &spec);

    const auto& devs = spec.linux().devices();
    ASSERT_EQ(devs.size(), 3);
    EXPECT_EQ(devs[0].path(), "/dev/xda");
    EXPECT_EQ(devs[0].major(), 8);
    EXPECT_EQ(devs[0].minor(), 16);
    EXPECT_EQ(devs[0].filemode(), 0660u);  // untouched fields stay
    EXPECT_EQ(devs[1].major(), 8);
    EXPECT_EQ(devs[1].minor(), 0);
    EXPECT_EQ(devs[2].major(), 1);  // no update for /dev/null
    EXPECT_EQ(devs[2].minor(), 3);

    const auto& rules = spec.linux().resources().devices();
    ASSERT_EQ(rules.size(), 4);
    EXPECT_EQ(rules[0].type(), "a");
    EXPECT_FALSE(rules[0].allow());
    // The "rw" rule belonged to /dev/xda and follows it to 8:16; the "r" rule follows /dev/xdb.
    EXPECT_EQ(rules[1].access(), "rw");
    EXPECT_EQ(rules[1].minor(), 16);
    EXPECT_EQ(rules[2].access(), "r");
    EXPECT_EQ(rules[2].minor(), 0);
    EXPECT_EQ(rules[3].major(), 1);
    EXPECT_EQ(rules[3].minor(), 3);

    std::vector<std::string> env(spec.process().env().begin(), spec.process().env().end());
    EXPECT_EQ(env, (std::vector<std::string>{"PATH=/usr/bin:/bin", "XDB_GUEST=/dev/vdb"}));
}

TEST(ApplyDeviceUpdatesTest, TypeChangeFollowsIntoRules) {
    grpc::Spec spec = hostSpec();
    DeviceUpdates updates;
    updates["/dev/null"] = update("/dev/null", 'b', 252, 7);
    applyDeviceUpdates(updates, &spec);
    EXPECT_EQ(spec.linux().devices(2).type(), "b");
    EXPECT_EQ(spec.linux().resources().devices(3).type(), "b");
    EXPECT_EQ(spec.linux().resources().devices(3).major(), 252);
    EXPECT_EQ(spec.linux().resources().devices(3).minor(), 7);
}

TEST(ApplyDeviceUpdatesTest, UnknownContainerPathLeavesSpecUntouched) {
    grpc::Spec spec = hostSpec();
    std::string before = spec.SerializeAsString();
    DeviceUpdates updates;
    updates["/dev/xda"] = update("/dev/xda", 'b', 252, 0);
    updates["/dev/missing"] = update("/dev/missing", 'b', 252, 16, {"X=1"});
    try {
        applyDeviceUpdates(updates, &spec);
        ADD_FAILURE() << "an update for a device the spec lacks was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("/dev/missing"), std::string::npos) << e.what();
    }
    EXPECT_EQ(spec.SerializeAsString(), before);
}

class DevicesTest : public ::testing::Test {
  protected:
    void SetUp() override {
        env.sysRoot = tmp.path() + "/sys";
        env.devRoot = tmp.path() + "/dev";
        env.timeout = std::chrono::milliseconds(200);
        fs::create_directories(env.sysRoot + "/devices/pci0000:00");
        fs::create_directories(env.devRoot);
        // Fake nodes are plain files; their numbers come from this table.
        env.statDevice = [this](const std::string& path) {
            auto it = nodes.find(path);
            if (it == nodes.end()) throw Error(StatusCode::kNotFound, "stat device " + path);
            return it->second;
        };
    }
    // A virtio-blk disk named <name> at the PCI path "<slot>" or "<bridge>/<slot>".
    void addPciDisk(const std::string& bridgeSlot, const std::string& slot, const std::string& name,
                    DeviceNode node) {
        std::string dir = env.sysRoot + "/devices/pci0000:00";
        if (!bridgeSlot.empty()) {
            dir += "/0000:00:" + bridgeSlot + ".0";
            fs::create_directories(dir + "/pci_bus/0000:01");
            dir += "/0000:01:" + slot + ".0";
        } else {
            dir += "/0000:00:" + slot + ".0";
        }
        fs::create_directories(dir + "/virtio4/block/" + name);
        std::ofstream(env.devRoot + "/" + name).close();
        nodes[env.devRoot + "/" + name] = node;
    }
    test::TempDir tmp;
    DeviceEnvironment env;
    std::map<std::string, DeviceNode> nodes;
};

TEST_F(DevicesTest, PciPathResolution) {
    addPciDisk("", "03", "vda", {'b', 252, 0});
    addPciDisk("02", "01", "vdb", {'b', 252, 16});
    EXPECT_EQ(pciPathToSysfs("03", env), env.sysRoot + "/devices/pci0000:00/0000:00:03.0");
    EXPECT_EQ(pciPathToSysfs("02/01", env),
              env.sysRoot + "/devices/pci0000:00/0000:00:02.0/0000:01:01.0");
    EXPECT_EQ(waitForPciBlockDevice("02/01", env), env.devRoot + "/vdb");
    EXPECT_THROW(pciPathToSysfs("2/x", env), Error);
    EXPECT_THROW(pciPathToSysfs("03/01", env), Error);  // slot 03 is not a bridge
}

TEST_F(DevicesTest, ApplyDevicesWaitsThenRewritesSpec) {
    addPciDisk("02", "01", "vdb", {'b', 252, 16});
    std::ofstream(env.devRoot + "/vdz").close();
    nodes[env.devRoot + "/vdz"] = {'b', 254, 0};
    grpc::Spec spec = hostSpec();
    google::protobuf::RepeatedPtrField<grpc::Device> devices;
    auto* blk = devices.Add();
    blk->set_id("02/01");
    blk->set_type("blk");
    blk->set_container_path("/dev/xda");
    auto* mmio = devices.Add();
    mmio->set_id("mmio0");
    mmio->set_type("mmioblk");
    mmio->set_vm_path("/dev/vdz");
    mmio->set_container_path("/dev/xdb");

    applyDevices(devices, &spec, env);
    EXPECT_EQ(spec.linux().devices(0).major(), 252);
    EXPECT_EQ(spec.linux().devices(0).minor(), 16);
    EXPECT_EQ(spec.linux().devices(1).major(), 254);
    EXPECT_EQ(spec.linux().devices(1).minor(), 0);
    EXPECT_EQ(spec.linux().resources().devices(1).major(), 252);
    EXPECT_EQ(spec.linux().resources().devices(2).major(), 254);
}

TEST_F(DevicesTest, MissingDeviceTimesOutNamingItAndSpecIsUntouched) {
    addPciDisk("", "03", "vda", {'b', 252, 0});
    grpc::Spec spec = hostSpec();
    std::string before = spec.SerializeAsString();
    google::protobuf::RepeatedPtrField<grpc::Device> devices;
    auto* ok = devices.Add();
    ok->set_id("03");
    ok->set_type("blk");
    ok->set_container_path("/dev/xda");
    auto* missing = devices.Add();
    missing->set_id("05");
    missing->set_type("virtio-blk");
    missing->set_container_path("/dev/xdb");
    try {
        applyDevices(devices, &spec, env);
        ADD_FAILURE() << "a missing device was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kDeadlineExceeded);
        std::string msg = e.what();
        EXPECT_NE(msg.find("device \"05\""), std::string::npos) << msg;
        EXPECT_NE(msg.find("/dev/xdb"), std::string::npos) << msg;
        EXPECT_NE(msg.find("PCI path \"05\""), std::string::npos) << msg;
    }
    EXPECT_EQ(spec.SerializeAsString(), before);
}

TEST_F(DevicesTest, DeviceAppearingLateIsFound) {
    env.timeout = std::chrono::seconds(3);
    grpc::Device dev;
    dev.set_type("mmioblk");
    dev.set_vm_path("/dev/vdlate");
    dev.set_container_path("/dev/xda");
    nodes[env.devRoot + "/vdlate"] = {'b', 252, 48};  // what stat will say once it exists
    std::thread hotplug([this] {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        std::ofstream(env.devRoot + "/vdlate").close();
    });
    DeviceUpdate u;
    try {
        u = handleDevice(dev, env);
    } catch (...) {
        hotplug.join();
        throw;
    }
    hotplug.join();
    EXPECT_EQ(u.guestPath, env.devRoot + "/vdlate");
    EXPECT_EQ(u.node.minor, 48);
}

TEST_F(DevicesTest, UnknownAndUnsupportedTypesAreNamed) {
    grpc::Device dev;
    dev.set_id("x1");
    dev.set_type("floppy");
    try {
        handleDevice(dev, env);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("\"x1\" (type floppy"), std::string::npos) << e.what();
    }
    dev.set_type("vfio");
    dev.add_options("0000:3b:00.1");  // no guest PCI path
    try {
        handleDevice(dev, env);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("\"0000:3b:00.1\""), std::string::npos) << e.what();
    }
}

TEST_F(DevicesTest, VfioMapsGroupNodeAndPciAddresses) {
    // Two host functions passed through behind the bridge at slot 02; the guest put them in
    // IOMMU group 5.
    std::string bridge = env.sysRoot + "/devices/pci0000:00/0000:00:02.0";
    fs::create_directories(bridge + "/pci_bus/0000:01");
    fs::create_directories(env.sysRoot + "/kernel/iommu_groups/5");
    for (const char* fn : {"0000:01:01.0", "0000:01:02.0"}) {
        fs::create_directories(bridge + "/" + fn);
        fs::create_symlink("../../../../kernel/iommu_groups/5", bridge + "/" + fn + "/iommu_group");
    }
    fs::create_directories(env.devRoot + "/vfio");
    std::ofstream(env.devRoot + "/vfio/5").close();
    nodes[env.devRoot + "/vfio/5"] = {'c', 241, 0};

    grpc::Spec spec = hostSpec();
    addDevice(&spec, "/dev/vfio/12", "c", 241, 3);
    addRule(&spec, true, "c", 241, 3, "rw");
    spec.mutable_process()->add_env("PCIDEVICE_INTEL_COM_SRIOV=0000:3b:00.1,0000:3b:00.2");
    spec.mutable_process()->add_env("OTHER=0000:3b:00.1");

    google::protobuf::RepeatedPtrField<grpc::Device> devices;
    auto* vfio = devices.Add();
    vfio->set_id("vfio-12");
    vfio->set_type("vfio-pci");
    vfio->set_container_path("/dev/vfio/12");
    vfio->add_options("0000:3b:00.1=02/01");
    vfio->add_options("0000:3b:00.2=02/02");
    applyDevices(devices, &spec, env);

    const auto& d = spec.linux().devices(3);
    EXPECT_EQ(d.path(), "/dev/vfio/12");  // the container keeps its path
    EXPECT_EQ(d.major(), 241);
    EXPECT_EQ(d.minor(), 0);
    EXPECT_EQ(spec.linux().resources().devices(4).minor(), 0);
    std::vector<std::string> env(spec.process().env().begin(), spec.process().env().end());
    EXPECT_EQ(env, (std::vector<std::string>{"PATH=/bin",
                                             "PCIDEVICE_INTEL_COM_SRIOV=0000:01:01.0,0000:01:02.0",
                                             "OTHER=0000:3b:00.1"}));
}

TEST_F(DevicesTest, VfioGuestKernelModeOnlyRewritesAddresses) {
    addPciDisk("", "04", "vdq", {'b', 252, 64});  // any PCI function at slot 04
    grpc::Spec spec = hostSpec();
    spec.mutable_process()->add_env("PCIDEVICE_NIC=0000:af:00.3");
    std::string devicesBefore = spec.linux().SerializeAsString();
    google::protobuf::RepeatedPtrField<grpc::Device> devices;
    auto* gk = devices.Add();
    gk->set_id("nic");
    gk->set_type("vfio-pci-gk");
    gk->set_container_path("/dev/vfio/40");
    gk->add_options("0000:af:00.3=04");
    applyDevices(devices, &spec, env);
    EXPECT_EQ(spec.linux().SerializeAsString(), devicesBefore);
    EXPECT_EQ(spec.process().env(1), "PCIDEVICE_NIC=0000:00:04.0");
}

// The real stat(2) path: /dev/null is a character device 1:3 on every Linux.
TEST(RealDeviceTest, StatsARealNode) {
    DeviceEnvironment env;
    env.timeout = std::chrono::milliseconds(100);
    grpc::Device dev;
    dev.set_type("mmioblk");
    dev.set_vm_path("/dev/null");
    dev.set_container_path("/dev/xda");
    DeviceUpdate u = handleDevice(dev, env);
    EXPECT_EQ(u.node.type, 'c');
    EXPECT_EQ(u.node.major, 1);
    EXPECT_EQ(u.node.minor, 3);
}

}  // namespace
}  // namespace kata::agent
