#include "kata/hypervisor/accelerator.h"

#include <sys/stat.h>

#include <gtest/gtest.h>
#include <filesystem>

#include "kata/common/error.h"
#include "kata/hypervisor/hypervisor.h"

namespace {

using kata::hypervisor::decideAccelerator;
using kata::hypervisor::KvmProbe;

KvmProbe workingKvm() {
    KvmProbe p;
    p.deviceOpens = true;
    p.apiVersion = 12;
    p.createVmWorks = true;
    p.kvmIntel = true;
    return p;
}

TEST(Accelerator, AutoPicksKvmOnAStandardKvmHostWithoutWarning) {
    std::string warning = "stale";
    EXPECT_EQ(decideAccelerator("auto", workingKvm(), &warning), "kvm");
    EXPECT_EQ(warning, "");
    KvmProbe amd = workingKvm();
    amd.kvmIntel = false;
    amd.kvmAmd = true;
    EXPECT_EQ(decideAccelerator("auto", amd, &warning), "kvm");
}

TEST(Accelerator, AutoFallsBackToTcgOnPvmSayingSo) {
    KvmProbe pvm = workingKvm();
    pvm.kvmIntel = false;
    pvm.kvmPvm = true;
    std::string warning;
    EXPECT_EQ(decideAccelerator("auto", pvm, &warning), "tcg");
    EXPECT_NE(warning.find("PVM"), std::string::npos) << warning;
    EXPECT_NE(warning.find("TCG"), std::string::npos) << warning;
}

TEST(Accelerator, AutoFallsBackToTcgWithoutKvmDeviceNamingTheError) {
    KvmProbe none;
    none.openError = "open /dev/kvm: No such file or directory (ENOENT)";
    std::string warning;
    EXPECT_EQ(decideAccelerator("auto", none, &warning), "tcg");
    EXPECT_NE(warning.find("ENOENT"), std::string::npos) << warning;
}

TEST(Accelerator, ExplicitKvmWithoutWorkingKvmIsAnErrorNamingWhy) {
    KvmProbe broken = workingKvm();
    broken.createVmWorks = false;
    broken.createVmError = "KVM_CREATE_VM on /dev/kvm: Device or resource busy (EBUSY)";
    try {
        decideAccelerator("kvm", broken, nullptr);
        FAIL() << "expected an error";
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kFailedPrecondition);
        EXPECT_NE(std::string(e.what()).find("EBUSY"), std::string::npos) << e.what();
    }
}

TEST(Accelerator, ExplicitKvmOnPvmIsHonouredWithAWarning) {
    KvmProbe pvm = workingKvm();
    pvm.kvmIntel = false;
    pvm.kvmPvm = true;
    std::string warning;
    EXPECT_EQ(decideAccelerator("kvm", pvm, &warning), "kvm");
    EXPECT_NE(warning.find("PVM"), std::string::npos);
}

TEST(Accelerator, TcgIsAlwaysHonouredAndUnknownRejected) {
    std::string warning;
    EXPECT_EQ(decideAccelerator("tcg", workingKvm(), &warning), "tcg");
    EXPECT_EQ(warning, "");
    EXPECT_THROW(decideAccelerator("hvf", workingKvm(), &warning), kata::Error);
}

TEST(Accelerator, ProbeReportsAMissingDevice) {
    auto p = kata::hypervisor::probeKvm("/nonexistent/kvm", "/nonexistent/module");
    EXPECT_FALSE(p.deviceOpens);
    EXPECT_NE(p.openError.find("ENOENT"), std::string::npos) << p.openError;
    EXPECT_FALSE(p.kvmIntel || p.kvmAmd || p.kvmPvm);
}

TEST(Accelerator, ProbeOfANonKvmDeviceFailsTheApiVersionCheckWithoutHanging) {
    auto p = kata::hypervisor::probeKvm("/dev/null", "/nonexistent/module");
    EXPECT_TRUE(p.deviceOpens);
    EXPECT_NE(p.apiVersion, 12);
    EXPECT_FALSE(p.createVmWorks);
    EXPECT_NE(kata::hypervisor::kvmUnusableReason(p).find("KVM_GET_API_VERSION"),
              std::string::npos);
}

TEST(Accelerator, ProbeReadsVendorModulesFromSysModule) {
    char tmpl[] = "/tmp/kata-hv-mod.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    std::filesystem::create_directory(dir + "/kvm_amd");
    auto p = kata::hypervisor::probeKvm("/nonexistent/kvm", dir);
    std::filesystem::remove_all(dir);
    EXPECT_TRUE(p.kvmAmd);
    EXPECT_FALSE(p.kvmIntel);
    EXPECT_FALSE(p.kvmPvm);
}

// On this project's machines /dev/kvm is PVM: "auto" must end up on TCG and say why. On a
// standard KVM host the same call must pick KVM.
TEST(Accelerator, ResolveOnThisHostMatchesWhatTheHostIs) {
    auto probe = kata::hypervisor::probeKvm();
    std::string warning;
    std::string accel = kata::hypervisor::resolveAccelerator("auto", &warning);
    if (probe.kvmPvm && !probe.kvmIntel && !probe.kvmAmd) {
        EXPECT_EQ(accel, "tcg");
        EXPECT_NE(warning.find("PVM"), std::string::npos) << warning;
    } else if (kata::hypervisor::kvmUnusableReason(probe).empty()) {
        EXPECT_EQ(accel, "kvm");
        EXPECT_EQ(warning, "");
    } else {
        EXPECT_EQ(accel, "tcg");
        EXPECT_FALSE(warning.empty());
    }
}

}  // namespace
