#include "containerd_config.h"

#include <algorithm>
#include <sstream>

#include "kata/common/error.h"
#include "kata/common/file.h"

#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

namespace kata::deploy {

namespace {

[[noreturn]] void invalid(const std::string& what) {
    throw Error(StatusCode::kInvalidArgument, what);
}

toml::table parseToml(const std::string& what, const std::string& text) {
    try {
        return toml::parse(std::string_view(text), std::string_view(what));
    } catch (const toml::parse_error& e) {
        const auto& b = e.source().begin;
        invalid(what + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": " +
                std::string(e.description()));
    }
}

std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out + "\"";
}

std::string renderArray(const std::vector<std::string>& items) {
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + quote(items[i]);
    return out + "]";
}

// Byte offsets of the start of every line (1-based lines: starts[line - 1]).
std::vector<size_t> lineStarts(const std::string& text) {
    std::vector<size_t> starts{0};
    for (size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n') starts.push_back(i + 1);
    return starts;
}

// toml++ columns count code points from 1; walk UTF-8 to find the byte.
size_t byteOffset(const std::string& text, const std::vector<size_t>& starts,
                  toml::source_position pos) {
    size_t off = starts.at(pos.line - 1);
    for (uint32_t col = 1; col < pos.column && off < text.size(); ++col) {
        ++off;
        while (off < text.size() && (static_cast<unsigned char>(text[off]) & 0xC0) == 0x80) ++off;
    }
    return off;
}

struct Region {
    size_t begin = 0, end = 0;  // [begin, end) in bytes
};

Region regionOf(const std::string& text, const toml::node& node) {
    auto starts = lineStarts(text);
    const auto& src = node.source();
    return Region{byteOffset(text, starts, src.begin), byteOffset(text, starts, src.end)};
}

// Everything but `imports` must survive an edit unchanged.
void checkOnlyImportsChanged(const ContainerdConfig& before, const std::string& after,
                             const std::vector<std::string>& wantImports) {
    const std::string what = before.path + " (as kata-deploy would write it)";
    toml::table a = parseToml(before.path, before.text);
    toml::table b = parseToml(what, after);
    std::vector<std::string> got;
    if (auto* arr = b["imports"].as_array())
        for (const auto& n : *arr)
            if (auto s = n.value<std::string>()) got.push_back(*s);
    a.erase("imports");
    b.erase("imports");
    if (got != wantImports || a != b)
        throw Error(StatusCode::kInternal,
                    "editing the imports of " + before.path +
                        " would change more than the imports line; leaving the file alone");
}

}  // namespace

ContainerdConfig parseContainerdConfig(const std::string& path, const std::string& text) {
    const std::string what = "containerd config " + path;
    toml::table root = parseToml(what, text);
    ContainerdConfig cfg;
    cfg.path = path;
    cfg.text = text;
    if (auto* v = root.get("version")) {
        auto n = v->value<int64_t>();
        if (!v->is_integer() || !n)
            invalid(what + ": version is not an integer (containerd configs have version = 2)");
        cfg.version = *n;
    }
    if (cfg.version != 2)
        invalid(what + ": config version " + std::to_string(cfg.version) +
                (root.contains("version") ? "" : " (no version key)") +
                " is not supported: kata-deploy adds its runtimes through `imports`, which "
                "needs a version 2 config (put `version = 2` at the top, migrating the file with "
                "`containerd config migrate` if it uses version 1 keys)");
    if (auto* imp = root.get("imports")) {
        auto* arr = imp->as_array();
        if (!arr) invalid(what + ": imports is not an array of paths");
        for (const auto& n : *arr) {
            auto s = n.value<std::string>();
            if (!n.is_string() || !s) invalid(what + ": imports has an entry that is not a string");
            cfg.imports.push_back(*s);
        }
        cfg.hasImports = true;
    }
    return cfg;
}

ContainerdConfig loadContainerdConfig(const std::string& path) {
    std::string text;
    try {
        text = readFile(path);
    } catch (const Error& e) {
        throw Error(StatusCode::kInvalidArgument,
                    std::string("containerd config: cannot read it: ") + e.what());
    }
    return parseContainerdConfig(path, text);
}

std::string renderDropIn(const ContainerdConfig& user, const std::vector<RuntimeClassSpec>& classes,
                         const std::string& prefix) {
    toml::table root = parseToml(user.path, user.text);
    toml::table cri;
    if (auto* t = root["plugins"][kCriPlugin].as_table()) cri = *t;
    if (!cri["containerd"].is_table()) cri.insert_or_assign("containerd", toml::table{});
    auto& containerd = *cri["containerd"].as_table();
    if (!containerd["runtimes"].is_table()) containerd.insert_or_assign("runtimes", toml::table{});
    auto& runtimes = *containerd["runtimes"].as_table();
    for (const auto& c : classes) {
        toml::table rt;
        rt.insert("runtime_type", c.runtimeType);
        rt.insert("privileged_without_host_devices", true);
        rt.insert("pod_annotations", toml::array{"io.katacontainers.*"});
        rt.insert("options", toml::table{{"ConfigPath", defaultsDir(prefix) + "/" + c.configFile}});
        runtimes.insert_or_assign(c.handler, std::move(rt));
    }
    toml::table out;
    out.insert("version", 2);
    out.insert("plugins", toml::table{{kCriPlugin, std::move(cri)}});
    std::ostringstream text;
    text
        << "# Written by kata-deploy: the Kata Containers runtime classes, added to a copy of the\n"
           "# cri plugin table of "
        << user.path
        << "\n# (containerd 1.x replaces a plugin's whole table with an imported one).\n"
           "# `kata-deploy cleanup` removes this file and its entry in the imports of that file.\n"
        << toml::toml_formatter(out) << "\n";
    return text.str();
}

std::string withImport(const ContainerdConfig& cfg, const std::string& entry) {
    if (std::find(cfg.imports.begin(), cfg.imports.end(), entry) != cfg.imports.end())
        return cfg.text;
    std::vector<std::string> want = cfg.imports;
    want.push_back(entry);
    toml::table root = parseToml(cfg.path, cfg.text);
    std::string out;
    if (auto* imp = root.get("imports")) {
        Region r = regionOf(cfg.text, *imp);
        out = cfg.text.substr(0, r.begin) + renderArray(want) + cfg.text.substr(r.end);
    } else {
        // Top-level keys must precede every table header; right after `version` they do.
        Region r = regionOf(cfg.text, *root.get("version"));
        size_t eol = cfg.text.find('\n', r.end);
        std::string line = "imports = " + renderArray(want) + "\n";
        if (eol == std::string::npos)
            out = cfg.text + "\n" + line;
        else
            out = cfg.text.substr(0, eol + 1) + line + cfg.text.substr(eol + 1);
    }
    checkOnlyImportsChanged(cfg, out, want);
    return out;
}

std::string withoutImport(const ContainerdConfig& cfg, const std::string& entry,
                          bool dropEmptyLine) {
    if (std::find(cfg.imports.begin(), cfg.imports.end(), entry) == cfg.imports.end())
        return cfg.text;
    std::vector<std::string> want;
    for (const auto& i : cfg.imports)
        if (i != entry) want.push_back(i);
    toml::table root = parseToml(cfg.path, cfg.text);
    Region r = regionOf(cfg.text, *root.get("imports"));
    size_t lineBegin = cfg.text.rfind('\n', r.begin == 0 ? 0 : r.begin - 1);
    lineBegin = (lineBegin == std::string::npos || r.begin == 0) ? 0 : lineBegin + 1;
    size_t lineEnd = cfg.text.find('\n', r.end);
    lineEnd = lineEnd == std::string::npos ? cfg.text.size() : lineEnd + 1;
    std::string before = cfg.text.substr(lineBegin, r.begin - lineBegin);
    std::string after = cfg.text.substr(r.end, lineEnd - r.end);
    auto blank = [](const std::string& s, size_t from) {
        return s.find_first_not_of(" \t\r\n", from) == std::string::npos;
    };
    std::string out;
    size_t keyAt = before.find_first_not_of(" \t");
    bool ownLine = keyAt != std::string::npos && before.compare(keyAt, 7, "imports") == 0 &&
                   before.find('=') != std::string::npos && blank(after, 0);
    if (want.empty() && dropEmptyLine && ownLine)
        out = cfg.text.substr(0, lineBegin) + cfg.text.substr(lineEnd);
    else
        out = cfg.text.substr(0, r.begin) + renderArray(want) + cfg.text.substr(r.end);
    if (want.empty() && dropEmptyLine && ownLine) {
        toml::table a = parseToml(cfg.path, cfg.text);
        toml::table b = parseToml(cfg.path + " (as kata-deploy would write it)", out);
        a.erase("imports");
        if (a != b)
            throw Error(StatusCode::kInternal, "removing the imports line of " + cfg.path +
                                                   " would change more than that line");
    } else {
        checkOnlyImportsChanged(cfg, out, want);
    }
    return out;
}

std::map<std::string, std::string> criRuntimes(const std::string& what, const std::string& text) {
    toml::table root = parseToml(what, text);
    std::map<std::string, std::string> out;
    auto* runtimes = root["plugins"][kCriPlugin]["containerd"]["runtimes"].as_table();
    if (!runtimes) return out;
    for (const auto& [name, node] : *runtimes) {
        std::string type;
        if (auto* t = node.as_table())
            if (auto s = (*t)["runtime_type"].value<std::string>()) type = *s;
        out[std::string(name.str())] = type;
    }
    return out;
}

}  // namespace kata::deploy
