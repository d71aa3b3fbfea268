#include "files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kata/common/file.h"

using namespace kata::deploy;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "kd-files-test.XXXXXX").string();
        path = ::mkdtemp(t.data());
    }
    ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST(Files, AtomicWriteKeepsModeAndSymlink) {
    TempDir d;
    auto real = d.path / "real.toml", link = d.path / "config.toml";
    { std::ofstream(real) << "version = 2\n"; }
    ::chmod(real.c_str(), 0640);
    fs::create_symlink("real.toml", link);
    writeFileAtomic(link.string(), "version = 2\nimports = []\n");
    EXPECT_TRUE(fs::is_symlink(link));
    EXPECT_EQ(kata::readFile(real.string()), "version = 2\nimports = []\n");
    struct stat st {};
    ASSERT_EQ(::stat(real.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_FALSE(fs::exists(d.path / "real.toml.kata-deploy-tmp"));
}

TEST(Files, CopyTreeRecordsWhatItMade) {
    TempDir d;
    fs::create_directories(d.path / "src/bin");
    { std::ofstream(d.path / "src/bin/shim") << "x"; }
    fs::create_symlink("shim", d.path / "src/bin/alias");
    fs::create_directories(d.path / "dst/bin");  // there already: not ours
    CreatedPaths made;
    copyTree((d.path / "src").string(), (d.path / "dst").string(), &made);
    EXPECT_TRUE(made.dirs.empty());
    EXPECT_EQ(made.files, (std::vector<std::string>{"bin/alias", "bin/shim"}));
    EXPECT_EQ(readLink((d.path / "dst/bin/alias").string()), "shim");
    std::vector<std::string> dirs;
    makeDirs((d.path / "a/b").string(), &dirs);
    EXPECT_EQ(dirs, (std::vector<std::string>{(d.path / "a").string(), (d.path / "a/b").string()}));
    EXPECT_EQ(directoryProblem((d.path / "dst/bin/shim").string()), "not a directory");
}
