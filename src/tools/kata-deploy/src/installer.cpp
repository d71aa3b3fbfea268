#include "installer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "containerd_config.h"
#include "files.h"
#include "kata/common/error.h"
#include "kata/common/file.h"
#include "payload.h"
#include "process.h"

namespace kata::deploy {

namespace fs = std::filesystem;
using nlohmann::json;

// What an install did, kept in <prefix>/.kata-deploy/ so that cleanup (maybe run by another
// pod, days later) can undo exactly that. The config's bytes before and after the install are
// kept beside state.json as files, byte for byte.
struct Installer::State {
    std::string containerdConfig;
    std::string dropIn;
    bool addedImportsLine = false;
    std::vector<std::string> createdDirs;                       // absolute: the prefix, conf.d, ...
    CreatedPaths payload;                                       // relative to the prefix
    std::vector<std::pair<std::string, std::string>> symlinks;  // path -> target
    std::vector<std::string> handlers;
    std::string labelledNode;
    std::string payloadImage;
    bool restarted = false;
};

namespace {

constexpr const char* kStateFile = "state.json";
constexpr const char* kOriginalConfig = "containerd-config.orig";
constexpr const char* kInstalledConfig = "containerd-config.installed";

std::string quoteCmd(const std::string& s) { return "`" + s + "`"; }

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out.empty() ? "none" : out;
}

// The payload's configuration files name /opt/kata; an install elsewhere rewrites them.
void rewritePrefix(const std::string& file, const std::string& prefix) {
    std::string text = readFile(file);
    const std::string from = kPayloadBuildPrefix;
    std::string out;
    size_t pos = 0;
    for (;;) {
        size_t hit = text.find(from, pos);
        if (hit == std::string::npos) break;
        size_t after = hit + from.size();
        char next = after < text.size() ? text[after] : '\0';
        out += text.substr(pos, hit - pos);
        out += (next == '/' || next == '"' || next == '\'' || next == '\n' || next == '\0') ? prefix
                                                                                            : from;
        pos = after;
    }
    out += text.substr(pos);
    if (out != text) writeFileAtomic(file, out);
}

}  // namespace

Installer::Installer(DeployOptions opts) : o_(std::move(opts)), log_("deploy") {
    while (o_.prefix.size() > 1 && o_.prefix.back() == '/') o_.prefix.pop_back();
    if (o_.prefix.empty() || o_.prefix.front() != '/')
        throw Error(StatusCode::kInvalidArgument,
                    "prefix \"" + o_.prefix + "\": must be an absolute path");
}

std::vector<RuntimeClassSpec> Installer::classes() const {
    return runtimeClasses(parseShimList(o_.shims), o_.defaultShim);
}

std::string Installer::dropInPath() const {
    if (!o_.dropIn.empty()) return o_.dropIn;
    fs::path dir = fs::path(o_.containerdConfig).parent_path();
    return (dir.empty() ? fs::path(".") : dir).string() + "/conf.d/kata-deploy.toml";
}

std::string Installer::stateDir() const { return o_.prefix + "/.kata-deploy"; }

Installer::State Installer::loadState(bool* found) const {
    State st;
    const std::string path = stateDir() + "/" + kStateFile;
    *found = exists(path);
    if (!*found) return st;
    json j;
    try {
        j = json::parse(readFile(path));
        st.containerdConfig = j.at("containerd_config");
        st.dropIn = j.at("drop_in");
        st.addedImportsLine = j.at("added_imports_line");
        st.createdDirs = j.at("created_dirs").get<std::vector<std::string>>();
        st.payload.dirs = j.at("payload_dirs").get<std::vector<std::string>>();
        st.payload.files = j.at("payload_files").get<std::vector<std::string>>();
        for (const auto& l : j.at("symlinks")) st.symlinks.emplace_back(l.at(0), l.at(1));
        st.handlers = j.at("handlers").get<std::vector<std::string>>();
        st.labelledNode = j.at("labelled_node");
        st.payloadImage = j.at("payload_image");
        st.restarted = j.value("restarted", false);
    } catch (const json::exception& e) {
        throw Error(StatusCode::kDataLoss, "kata-deploy state " + path + ": unreadable (" +
                                               e.what() + "); remove it by hand to start over");
    }
    return st;
}

void Installer::saveState(const State& st) const {
    json j;
    j["containerd_config"] = st.containerdConfig;
    j["drop_in"] = st.dropIn;
    j["added_imports_line"] = st.addedImportsLine;
    j["created_dirs"] = st.createdDirs;
    j["payload_dirs"] = st.payload.dirs;
    j["payload_files"] = st.payload.files;
    j["symlinks"] = json::array();
    for (const auto& [p, t] : st.symlinks) j["symlinks"].push_back({p, t});
    j["handlers"] = st.handlers;
    j["labelled_node"] = st.labelledNode;
    j["payload_image"] = st.payloadImage;
    j["restarted"] = st.restarted;
    writeFileAtomic(stateDir() + "/" + kStateFile, j.dump(2) + "\n");
}

void Installer::restartContainerd() const {
    log_.info("restarting containerd", {{"command", o_.restartCommand}});
    auto r = run({"sh", "-c", o_.restartCommand}, 300);
    if (!r.ok())
        throw Error(StatusCode::kUnavailable, "restarting containerd with " +
                                                  quoteCmd(o_.restartCommand) + ": " + r.summary());
}

void Installer::verifyHandlers(const std::vector<std::string>& present,
                               const std::vector<std::string>& absent) const {
    const std::string ctr = findExecutable("ctr");
    if (ctr.empty()) {
        log_.warn("ctr not found on PATH: not waiting for containerd to answer");
    } else {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o_.timeoutSeconds);
        RunResult r;
        for (;;) {
            r = run({ctr, "--connect-timeout", "2s", "--address", o_.containerdSocket, "version"},
                    10);
            if (r.ok() || std::chrono::steady_clock::now() > deadline) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        if (!r.ok())
            throw Error(StatusCode::kUnavailable, "containerd at " + o_.containerdSocket +
                                                      " does not answer " +
                                                      std::to_string(o_.timeoutSeconds) +
                                                      " s after the restart: " + r.summary());
    }

    std::map<std::string, std::string> served;
    std::string source;
    if (auto crictl = findExecutable("crictl"); !crictl.empty()) {
        source = "crictl info";
        auto r = run({crictl, "--runtime-endpoint", "unix://" + o_.containerdSocket, "info"}, 30);
        if (!r.ok())
            throw Error(StatusCode::kUnavailable,
                        "crictl info on " + o_.containerdSocket + ": " + r.summary());
        try {
            auto j = json::parse(r.out);
            for (const auto& [name, rt] : j.at("config").at("containerd").at("runtimes").items())
                served[name] = rt.value("runtimeType", rt.value("runtime_type", ""));
        } catch (const json::exception& e) {
            throw Error(StatusCode::kInternal,
                        std::string("crictl info: no config.containerd.runtimes: ") + e.what());
        }
    } else if (auto containerd = findExecutable("containerd"); !containerd.empty()) {
        source = "containerd config dump";
        auto r = run({containerd, "--config", o_.containerdConfig, "config", "dump"}, 30);
        if (!r.ok())
            throw Error(StatusCode::kInvalidArgument, "containerd --config " + o_.containerdConfig +
                                                          " config dump: " + r.summary());
        served = criRuntimes("containerd config dump of " + o_.containerdConfig, r.out);
        if (!ctr.empty()) {
            auto p = run({ctr, "--address", o_.containerdSocket, "plugins", "ls"}, 30);
            std::string status = "missing";
            std::istringstream lines(p.out);
            for (std::string line; std::getline(lines, line);) {
                std::istringstream words(line);
                std::vector<std::string> w{std::istream_iterator<std::string>(words), {}};
                if (w.size() >= 3 && w[0] == "io.containerd.grpc.v1" && w[1] == "cri")
                    status = w.back();
            }
            if (!present.empty() && status != "ok")
                throw Error(StatusCode::kUnavailable,
                            "containerd at " + o_.containerdSocket + ": its cri plugin is " +
                                status + " (ctr plugins ls), so no runtime class is served" +
                                (status == "missing"
                                     ? " (is io.containerd.grpc.v1.cri in disabled_plugins?)"
                                     : ""));
        }
    } else {
        log_.warn(
            "neither crictl nor containerd found on PATH: cannot check the runtimes "
            "containerd serves");
        return;
    }
    std::vector<std::string> names;
    names.reserve(served.size());
    for (const auto& [n, t] : served) names.push_back(n);
    for (const auto& h : present)
        if (!served.count(h))
            throw Error(StatusCode::kFailedPrecondition, "containerd does not serve runtime " + h +
                                                             " after the restart (" + source +
                                                             " lists: " + join(names) + ")");
    for (const auto& h : absent)
        if (served.count(h))
            throw Error(StatusCode::kFailedPrecondition, "containerd still serves runtime " + h +
                                                             " after the restart (" + source +
                                                             "): another config file defines it");
    log_.info("containerd serves the runtimes",
              {{"checked_with", source}, {"runtimes", join(names)}});
}

void Installer::labelNode(bool set, bool mustSucceed) const {
    const std::string what = set ? "labelling" : "unlabelling";
    if (o_.nodeName.empty()) {
        log_.info("not " + what + " a node: NODE_NAME (--node-name) is not set");
        return;
    }
    const std::string kubectl = findExecutable(o_.kubectl);
    if (kubectl.empty()) {
        log_.warn("not " + what + " node " + o_.nodeName + ": " + o_.kubectl +
                  " not found on PATH");
        return;
    }
    std::string arg = set ? std::string(kNodeLabel) + "=true" : std::string(kNodeLabel) + "-";
    std::vector<std::string> cmd{kubectl, "label", "node", o_.nodeName, arg};
    if (set) cmd.push_back("--overwrite");
    auto r = run(cmd, 60);
    if (!r.ok()) {
        std::string msg = what + " node " + o_.nodeName + " (kubectl label): " + r.summary();
        if (mustSucceed) throw Error(StatusCode::kUnavailable, msg);
        log_.warn(msg);
        return;
    }
    log_.info(set ? "labelled node" : "removed node label",
              {{"node", o_.nodeName}, {"label", kNodeLabel}});
}

void Installer::install() {
    const auto cls = classes();
    std::vector<std::string> handlers;
    handlers.reserve(cls.size());
    for (const auto& c : cls) handlers.push_back(c.handler);

    // ---- checks: nothing is changed until all of them pass
    if (exists(o_.prefix))
        if (auto why = directoryProblem(o_.prefix); !why.empty())
            throw Error(StatusCode::kInvalidArgument, "prefix " + o_.prefix + ": " + why);
    ContainerdConfig cfg = loadContainerdConfig(o_.containerdConfig);
    const std::string dropIn = dropInPath();
    bool hadState = false;
    State st = loadState(&hadState);
    std::string original = cfg.text;
    bool addedLine = !cfg.hasImports;
    if (hadState) {
        if (st.containerdConfig != o_.containerdConfig || st.dropIn != dropIn)
            throw Error(StatusCode::kFailedPrecondition,
                        "prefix " + o_.prefix + " holds an install for containerd config " +
                            st.containerdConfig + " (drop-in " + st.dropIn +
                            "); run kata-deploy cleanup first");
        std::string installed;
        try {
            installed = readFile(stateDir() + "/" + kInstalledConfig);
        } catch (const Error&) {
        }
        if (cfg.text == installed) {
            original = readFile(stateDir() + "/" + kOriginalConfig);
            addedLine = st.addedImportsLine;
        } else if (contains(cfg.imports, dropIn)) {
            // Edited since the last install: the original is today's file minus our entry.
            addedLine = st.addedImportsLine;
            original = withoutImport(cfg, dropIn, addedLine);
        }
    }
    const std::string newConfig = withImport(cfg, dropIn);
    const std::string dropInText = renderDropIn(cfg, cls, o_.prefix);
    parseContainerdConfig(dropIn, dropInText);  // our own output must be valid too

    if (auto why = directoryProblem(o_.shimDir); !why.empty())
        throw Error(StatusCode::kInvalidArgument, "shim dir " + o_.shimDir + ": " + why);
    std::vector<std::pair<std::string, std::string>> links;
    for (const auto& c : cls) {
        std::string link = o_.shimDir + "/" + c.shimBinary;
        std::string target = o_.prefix + "/bin/" + c.shimBinary;
        if (exists(link) && readLink(link) != target)
            throw Error(StatusCode::kFailedPrecondition,
                        "shim dir: " + link + " exists and is not kata-deploy's symlink to " +
                            target + "; remove it or choose another --shim-dir");
        links.emplace_back(link, target);
    }
    if (exists(dropIn) && !(hadState && st.dropIn == dropIn))
        throw Error(StatusCode::kFailedPrecondition,
                    "drop-in " + dropIn +
                        " exists and was not written by this prefix's install; "
                        "remove it or choose another --containerd-dropin");

    std::optional<PulledPayload> pulled;
    std::string payloadDir = o_.payloadDir;
    if (!o_.payloadImage.empty()) {
        log_.warn(
            "the payload is overridden by PAYLOAD_IMAGE: this installation is tainted by "
            "a custom payload and is not a supported configuration",
            {{"payload_image", o_.payloadImage}, {"tainted", "true"}});
        PullOptions p{o_.payloadImage,     o_.payloadUsername, o_.payloadPassword,
                      o_.payloadTlsVerify, o_.payloadCertDir,  o_.payloadPathInImage};
        pulled.emplace(p);
        payloadDir = pulled->dir();
        log_.info("pulled payload image", {{"payload_image", o_.payloadImage}});
    }
    checkPayload(payloadDir, cls);

    // ---- changes, each recorded before the next so that cleanup can undo a partial install
    std::vector<std::string> createdNow;
    makeDirs(o_.prefix, &createdNow);
    makeDirs(stateDir(), nullptr);
    if (!hadState) {
        st = State{};
        st.containerdConfig = o_.containerdConfig;
        st.dropIn = dropIn;
        st.createdDirs = createdNow;
    }
    st.addedImportsLine = addedLine;
    st.handlers = handlers;
    st.payloadImage = o_.payloadImage;
    writeFileAtomic(stateDir() + "/" + kOriginalConfig, original, 0600);
    saveState(st);
    try {
        CreatedPaths copied;
        copyTree(payloadDir, o_.prefix, &copied);
        for (const auto& d : copied.dirs)
            if (!contains(st.payload.dirs, d)) st.payload.dirs.push_back(d);
        for (const auto& f : copied.files)
            if (!contains(st.payload.files, f)) st.payload.files.push_back(f);
        saveState(st);
        // Once per file: kata and kata-<default shim> share one (and a prefix may itself
        // contain "/opt/kata").
        std::set<std::string> configFiles;
        for (const auto& c : cls) configFiles.insert(c.configFile);
        if (o_.prefix != kPayloadBuildPrefix)
            for (const auto& f : configFiles)
                rewritePrefix(defaultsDir(o_.prefix) + "/" + f, o_.prefix);
        for (const auto& c : cls) {
            // A per-class name is the main shim under another argv[0], as `make install` does.
            std::string alias = o_.prefix + "/bin/" + c.shimBinary;
            if (exists(alias)) continue;
            if (::symlink(kMainShimBinary, alias.c_str()) != 0) throwErrno("symlink", alias);
            st.payload.files.push_back("bin/" + c.shimBinary);
        }
        saveState(st);
        log_.info("payload installed", {{"prefix", o_.prefix},
                                        {"payload", payloadDir},
                                        {"files", std::to_string(st.payload.files.size())}});

        for (const auto& [link, target] : links) {
            if (!exists(link) && ::symlink(target.c_str(), link.c_str()) != 0)
                throwErrno("symlink", link);
            if (std::find(st.symlinks.begin(), st.symlinks.end(), std::pair{link, target}) ==
                st.symlinks.end())
                st.symlinks.emplace_back(link, target);
        }
        saveState(st);

        std::vector<std::string> dropInDirs;
        makeDirs(fs::path(dropIn).parent_path().string(), &dropInDirs);
        for (const auto& d : dropInDirs) st.createdDirs.push_back(d);
        writeFileAtomic(dropIn, dropInText);
        writeFileAtomic(stateDir() + "/" + kInstalledConfig, newConfig, 0600);
        saveState(st);
        if (newConfig != cfg.text) writeFileAtomic(o_.containerdConfig, newConfig);
        log_.info(
            "containerd configured",
            {{"config", o_.containerdConfig}, {"drop_in", dropIn}, {"runtimes", join(handlers)}});

        st.restarted = true;
        saveState(st);
        restartContainerd();
        verifyHandlers(handlers, {});

        labelNode(true, true);
        if (!o_.nodeName.empty() && !findExecutable(o_.kubectl).empty())
            st.labelledNode = o_.nodeName;
        saveState(st);
    } catch (const std::exception& e) {
        log_.error("install failed; undoing what it did", {{"error", e.what()}});
        try {
            undo(st, st.restarted, false);
        } catch (const std::exception& e2) {
            log_.error("undoing the failed install failed too; run kata-deploy cleanup",
                       {{"error", e2.what()}});
        }
        throw;
    }
    log_.info("kata-deploy install done", {{"runtimes", join(handlers)}});
}

void Installer::undo(const State& st, bool restart, bool restartMustWork) {
    // containerd's config first: back to its recorded bytes, or, when it was edited since,
    // minus our imports entry alone.
    if (exists(st.containerdConfig)) {
        std::string current = readFile(st.containerdConfig);
        std::string original = readFile(stateDir() + "/" + kOriginalConfig);
        std::string installed;
        if (exists(stateDir() + "/" + kInstalledConfig))
            installed = readFile(stateDir() + "/" + kInstalledConfig);
        if (current == original) {
        } else if (current == installed) {
            writeFileAtomic(st.containerdConfig, original);
            log_.info("containerd config restored", {{"config", st.containerdConfig}});
        } else {
            auto cfg = parseContainerdConfig(st.containerdConfig, current);
            writeFileAtomic(st.containerdConfig,
                            withoutImport(cfg, st.dropIn, st.addedImportsLine));
            log_.warn(
                "containerd config was changed after the install: removed only kata-deploy's "
                "imports entry, kept the other changes",
                {{"config", st.containerdConfig}});
        }
    } else {
        log_.warn("containerd config is gone; nothing to restore",
                  {{"config", st.containerdConfig}});
    }
    removeFile(st.dropIn);
    for (const auto& [link, target] : st.symlinks)
        if (readLink(link) == target) removeFile(link);

    // A containerd that does not come back must not keep the payload on the node: the files
    // still go, and the restart's error is reported at the end.
    std::string restartError;
    if (restart) {
        try {
            restartContainerd();
            verifyHandlers({}, st.handlers);
        } catch (const std::exception& e) {
            restartError = e.what();
        }
    }

    for (auto it = st.payload.files.rbegin(); it != st.payload.files.rend(); ++it)
        removeFile(o_.prefix + "/" + *it);
    for (auto it = st.payload.dirs.rbegin(); it != st.payload.dirs.rend(); ++it)
        if (!removeDirIfEmpty(o_.prefix + "/" + *it))
            log_.warn("left a payload directory that is not empty",
                      {{"dir", o_.prefix + "/" + *it}});
    // replace-shim.sh keeps the originals it swapped out there; they go with the install.
    if (exists(o_.prefix + "/.replace-shim")) {
        removeTree(o_.prefix + "/.replace-shim");
        log_.info("removed replace-shim's saved originals",
                  {{"dir", o_.prefix + "/.replace-shim"}});
    }
    removeTree(stateDir());
    for (auto it = st.createdDirs.rbegin(); it != st.createdDirs.rend(); ++it)
        removeDirIfEmpty(*it);
    if (!restartError.empty()) {
        if (restartMustWork) throw Error(StatusCode::kUnavailable, restartError);
        log_.warn("containerd did not come back after the rollback: restart it by hand",
                  {{"error", restartError}});
    }
}

void Installer::cleanup() {
    bool found = false;
    State st = loadState(&found);
    if (!found) {
        log_.info("nothing to clean up: no kata-deploy install under " + o_.prefix + " (no " +
                  stateDir() + "/" + kStateFile + ")");
        labelNode(false, false);
        return;
    }
    if (exists(st.containerdConfig)) {
        // Refuse early, before anything is removed, when the config cannot be restored.
        std::string current = readFile(st.containerdConfig);
        if (current != readFile(stateDir() + "/" + kOriginalConfig))
            parseContainerdConfig(st.containerdConfig, current);
    }
    undo(st, true, true);
    if (!st.labelledNode.empty() && o_.nodeName.empty()) o_.nodeName = st.labelledNode;
    labelNode(false, false);
    log_.info("kata-deploy cleanup done", {{"prefix", o_.prefix}});
}

void Installer::reset() {
    restartContainerd();
    verifyHandlers({}, {});
    labelNode(false, false);
    log_.info("kata-deploy reset done");
}

}  // namespace kata::deploy
