// Seccomp filters from the spec, built with libseccomp by the agent and loaded by the child.
#pragma once

#include <memory>

#include "agent/oci.pb.h"

namespace kata::jail {

class SeccompFilter {
  public:
    explicit SeccompFilter(void* ctx) : ctx_(ctx) {}
    ~SeccompFilter();
    SeccompFilter(const SeccompFilter&) = delete;
    SeccompFilter& operator=(const SeccompFilter&) = delete;
    void* ctx() const { return ctx_; }

  private:
    void* ctx_;
};

// Throws kInvalidArgument naming the bad action, architecture or operator.
std::unique_ptr<SeccompFilter> buildSeccompFilter(const grpc::LinuxSeccomp& seccomp);

// Child side: installs the filter (nullptr: nothing to do).
void childLoadSeccomp(int syncFd, const SeccompFilter* filter);

}  // namespace kata::jail
