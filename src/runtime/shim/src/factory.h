// VM templating (Kata's factory, [factory] enable_template / template_path): one VM is booted
// with no sandbox state in it (agent up, share not mounted), saved with
// Hypervisor::saveTemplate, and later sandboxes restore from its state instead of booting.
#pragma once

#include <string>

#include "kata/common/log.h"
#include "kata/config/config.h"
#include "sandbox.h"

namespace kata::shim {

// Everything under template_path: the saved state, the lock taken while it is made, the
// template VM's run dir and the (empty) dir its 9p device exports.
struct TemplateFiles {
    std::string dir, state, lock, vmRunDir, sharedDir;
    std::string fingerprint;  // what the state was made from (see templateFingerprint)
};
TemplateFiles templateFiles(const std::string& templatePath);

// Whether this configuration can use a template (the share must be virtio-9p or none: a
// vhost-user virtio-fs device cannot be restored here); *why says why not.
bool templateUsable(const config::RuntimeConfig& cfg, std::string* why);

// One line per thing a restore must match: QEMU binary, kernel and initrd/image (path, size,
// mtime), machine, accelerator, firmware, CPUs, memory, devices, kernel parameters (the
// configured ones and the agent's). A state made from another fingerprint is remade.
std::string templateFingerprint(const config::RuntimeConfig& cfg);

// Returns the template's state file, making it first if it does not exist (or was made from
// another fingerprint): under an exclusive
// flock on <dir>/lock (a second shim waits, then finds the state) it boots a VM with the
// configured kernel, initrd and agent parameters, waits for the agent's Check, closes the
// connection, saves the VM and stops it. Nothing but the state (and the empty dirs) remains.
std::string ensureTemplate(const config::RuntimeConfig& cfg, const SandboxDeps& deps,
                           const log::Logger& log);

// Removes the template (state, run dir, shared dir, lock) under the lock. Idempotent.
void destroyTemplate(const std::string& templatePath);

}  // namespace kata::shim
