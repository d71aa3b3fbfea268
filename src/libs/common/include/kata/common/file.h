// Whole-file reads with errors that name the path.
#pragma once

#include <string>

namespace kata {

// The file's bytes; throws SystemError "open <path>: ..." / "read <path>: ...".
std::string readFile(const std::string& path);

}  // namespace kata
