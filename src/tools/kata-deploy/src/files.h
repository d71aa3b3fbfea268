// File system steps of an install, each recorded so that cleanup removes exactly what the
// install created, and atomic where a reader (containerd) may look at the file meanwhile.
#pragma once

#include <string>
#include <vector>

namespace kata::deploy {

// What an install created under a root, as paths relative to it (dirs in creation order).
struct CreatedPaths {
    std::vector<std::string> dirs;
    std::vector<std::string> files;  // regular files and symlinks
};

// "" when path is a directory, else why not ("no such file or directory", "not a directory").
std::string directoryProblem(const std::string& path);
bool exists(const std::string& path);  // lstat succeeds

// mkdir -p, recording each directory it makes into *created (absolute paths).
void makeDirs(const std::string& path, std::vector<std::string>* created);

// Copies the tree under src into dst (regular files with their modes, symlinks as symlinks),
// replacing files that are there, and records what it made.
void copyTree(const std::string& src, const std::string& dst, CreatedPaths* created);

// Writes content to path through a temp file in the same directory and rename(2); an
// existing file keeps its mode and owner, a new one gets mode; a symlink stays one (its target
// is written).
void writeFileAtomic(const std::string& path, const std::string& content, unsigned mode = 0644);

// The target of a symlink, "" when path is not one.
std::string readLink(const std::string& path);

// Removes a file or symlink; a missing one is fine.
void removeFile(const std::string& path);
// Removes dir when it is empty; true when it is gone.
bool removeDirIfEmpty(const std::string& path);
void removeTree(const std::string& path);

}  // namespace kata::deploy
