// Small helpers shared by the jail's files: file I/O that throws errors naming the path, string
// splitting, and the fd hygiene a freshly forked child needs.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "kata/common/file.h"  // readFile

namespace kata::jail {

void writeFile(const std::string& path, const std::string& data);
// Like writeFile but returns errno (0 on success) instead of throwing.
int tryWriteFile(const std::string& path, const std::string& data);
bool pathExists(const std::string& path);
bool isDirectory(const std::string& path);
std::vector<std::string> split(const std::string& s, char sep);
std::string trim(const std::string& s);
std::string joinPath(const std::string& a, const std::string& b);
// mkdir -p; throws naming the directory that could not be made.
void mkdirAll(const std::string& path, mode_t mode = 0755);

// Closes every fd >= 3 except those in keep (child side, after fork; no allocation-free promise).
void closeAllExcept(std::vector<int> keep);

}  // namespace kata::jail
