// Devices of CreateContainer: wait for each grpc::Device to appear in the guest, then map it into
// the container spec. Design rule (SYSTEM.md): handlers never edit the spec; each returns a
// DeviceUpdate, the updates are collected in a map keyed by container path, and one pass applies
// them to linux.devices, linux.resources.devices and process.env once every device is ready.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "agent/oci.pb.h"

namespace kata::agent {

// Device types the shim sends (Device.type).
inline constexpr const char* kDeviceBlk = "blk";
inline constexpr const char* kDeviceVirtioBlk = "virtio-blk";
inline constexpr const char* kDeviceMmioBlk = "mmioblk";
inline constexpr const char* kDeviceScsi = "scsi";
// VFIO PCI devices; options are "<host BDF>=<guest PCI path>". "vfio"/"vfio-pci": the device is
// bound to vfio in the guest and the container gets /dev/vfio/<guest group>; "vfio-gk"/
// "vfio-pci-gk": the guest kernel drives it and only the PCI addresses in the env change.
inline constexpr const char* kDeviceVfio = "vfio";
inline constexpr const char* kDeviceVfioPci = "vfio-pci";
inline constexpr const char* kDeviceVfioGk = "vfio-gk";
inline constexpr const char* kDeviceVfioPciGk = "vfio-pci-gk";

// A guest device node as stat(2) sees it.
struct DeviceNode {
    char type = 0;  // 'b' or 'c'
    int64_t major = 0;
    int64_t minor = 0;
};

// Where devices are looked up; tests point the roots at fake trees and inject stat.
struct DeviceEnvironment {
    std::string sysRoot = "/sys";
    std::string devRoot = "/dev";
    std::chrono::milliseconds timeout = std::chrono::seconds(10);
    std::chrono::milliseconds pollInterval = std::chrono::milliseconds(20);
    // Stats a device node; the default uses stat(2) and throws SystemError naming the path.
    std::function<DeviceNode(const std::string& path)> statDevice;
};

// The change one device needs in the spec.
struct DeviceUpdate {
    std::string containerPath;     // linux.devices[].path to rewrite; empty: no device rewrite
    std::string guestPath;         // the device node found in the guest (e.g. /dev/vdb)
    DeviceNode node;               // its type and numbers
    std::vector<std::string> env;  // "KEY=value" entries added to process.env
    // Host PCI address -> guest PCI address ("0000:3b:00.1" -> "0000:01:02.0"): rewritten in
    // the values of PCIDEVICE_* env entries (set by SR-IOV device plugins on the host).
    std::map<std::string, std::string> pciAddresses;
};

// Collected updates, keyed by container path (entries without a container path use a key
// of their own, e.g. "env:<device id>", and only contribute env entries).
using DeviceUpdates = std::map<std::string, DeviceUpdate>;

// Resolves a Kata PCI path ("02/00": slot on the root bus, then slots behind bridges) to the
// device's sysfs directory, e.g. <sysRoot>/devices/pci0000:00/0000:00:02.0/0000:01:00.0.
// Throws kInvalidArgument for a malformed path, kNotFound when a bridge is missing.
std::string pciPathToSysfs(const std::string& pciPath, const DeviceEnvironment& env);

// Waits (up to env.timeout) for the block device behind a PCI path and returns its node path
// ("<devRoot>/vdb"). Throws kDeadlineExceeded naming the PCI path on timeout.
std::string waitForPciBlockDevice(const std::string& pciPath, const DeviceEnvironment& env);
// Waits for the block device of a SCSI address "<target>:<lun>" (host and channel 0).
std::string waitForScsiBlockDevice(const std::string& scsiAddr, const DeviceEnvironment& env);
// Waits for a device node path to exist.
std::string waitForDeviceNode(const std::string& path, const DeviceEnvironment& env);

// Handles one device (waits for it, stats it); never touches a spec. Throws naming the device.
DeviceUpdate handleDevice(const grpc::Device& device, const DeviceEnvironment& env);

// The one pass: rewrites linux.devices entries whose path is a key (type/major/minor from the
// guest node), moves linux.resources.devices rules from each old (type, major, minor) to the
// new one (all computed before any rule is rewritten, so swapped numbers stay correct), and
// appends env entries, and maps host PCI addresses to guest ones in PCIDEVICE_* env values.
// Throws kInvalidArgument, before editing anything, when an update names
// a container path that the spec does not list.
void applyDeviceUpdates(const DeviceUpdates& updates, grpc::Spec* spec);

// Handles every device, then applies all updates in one pass.
void applyDevices(const google::protobuf::RepeatedPtrField<grpc::Device>& devices,
                  grpc::Spec* spec);
void applyDevices(const google::protobuf::RepeatedPtrField<grpc::Device>& devices, grpc::Spec* spec,
                  const DeviceEnvironment& env);

}  // namespace kata::agent
