// Shared by the image tests: temp dirs removed even when a test fails, error expectations.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "kata/common/error.h"

namespace kata::agent::image::test {

class TempDir {
  public:
    explicit TempDir(const char* tag = "kata-image") {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / (std::string(tag) + "-XXXXXX"));
        char* p = ::mkdtemp(tmpl.data());
        if (!p) throw std::runtime_error("mkdtemp failed");
        path_ = std::filesystem::canonical(p).string();
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void spit(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
}

// Runs fn, expects a kata::Error with `code` whose message holds every fragment; returns it.
inline std::string expectError(StatusCode code, const std::function<void()>& fn,
                               const std::vector<std::string>& fragments) {
    try {
        fn();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << statusCodeName(e.code()) << ": " << e.what();
        for (const auto& f : fragments) {
            EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
                << "\"" << e.what() << "\" lacks \"" << f << "\"";
        }
        return e.what();
    }
    ADD_FAILURE() << "expected an error with code " << statusCodeName(code);
    return {};
}

}  // namespace kata::agent::image::test
