// Errors carried through the code base as exceptions that say what was attempted, on what,
// and why; RPC layers turn them into gRPC status codes at their boundary.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace kata {

// gRPC status codes (google.rpc.Code); the numbers are part of the wire protocol.
enum class StatusCode : int {
    kOk = 0,
    kCancelled = 1,
    kUnknown = 2,
    kInvalidArgument = 3,
    kDeadlineExceeded = 4,
    kNotFound = 5,
    kAlreadyExists = 6,
    kPermissionDenied = 7,
    kResourceExhausted = 8,
    kFailedPrecondition = 9,
    kAborted = 10,
    kOutOfRange = 11,
    kUnimplemented = 12,
    kInternal = 13,
    kUnavailable = 14,
    kDataLoss = 15,
    kUnauthenticated = 16,
};

const char* statusCodeName(StatusCode code);

class Error : public std::runtime_error {
  public:
    Error(StatusCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    explicit Error(const std::string& message) : Error(StatusCode::kInternal, message) {}
    StatusCode code() const { return code_; }

  private:
    StatusCode code_;
};

// A failed system call: "<op> <what>: <strerror> (ENAME)".
class SystemError : public Error {
  public:
    SystemError(const std::string& op, const std::string& what, int err);
    int err() const { return err_; }

  private:
    int err_;
};

// Throws SystemError with the current errno.
[[noreturn]] void throwErrno(const std::string& op, const std::string& what = "");

// Returns the symbolic name of an errno value ("ENOENT"), or its number as text.
std::string errnoName(int err);

}  // namespace kata
