#include "kata/common/error.h"

#include <cstring>

namespace kata {

const char* statusCodeName(StatusCode code) {
    switch (code) {
        case StatusCode::kOk:
            return "OK";
        case StatusCode::kCancelled:
            return "CANCELLED";
        case StatusCode::kUnknown:
            return "UNKNOWN";
        case StatusCode::kInvalidArgument:
            return "INVALID_ARGUMENT";
        case StatusCode::kDeadlineExceeded:
            return "DEADLINE_EXCEEDED";
        case StatusCode::kNotFound:
            return "NOT_FOUND";
        case StatusCode::kAlreadyExists:
            return "ALREADY_EXISTS";
        case StatusCode::kPermissionDenied:
            return "PERMISSION_DENIED";
        case StatusCode::kResourceExhausted:
            return "RESOURCE_EXHAUSTED";
        case StatusCode::kFailedPrecondition:
            return "FAILED_PRECONDITION";
        case StatusCode::kAborted:
            return "ABORTED";
        case StatusCode::kOutOfRange:
            return "OUT_OF_RANGE";
        case StatusCode::kUnimplemented:
            return "UNIMPLEMENTED";
        case StatusCode::kInternal:
            return "INTERNAL";
        case StatusCode::kUnavailable:
            return "UNAVAILABLE";
        case StatusCode::kDataLoss:
            return "DATA_LOSS";
        case StatusCode::kUnauthenticated:
            return "UNAUTHENTICATED";
    }
    return "UNKNOWN";
}

std::string errnoName(int err) {
    const char* name = strerrorname_np(err);
    return name ? name : std::to_string(err);
}

static StatusCode codeForErrno(int err) {
    switch (err) {
        case ENOENT:
            return StatusCode::kNotFound;
        case EEXIST:
            return StatusCode::kAlreadyExists;
        case EACCES:
        case EPERM:
            return StatusCode::kPermissionDenied;
        case EINVAL:
            return StatusCode::kInvalidArgument;
        case ETIMEDOUT:
            return StatusCode::kDeadlineExceeded;
        default:
            return StatusCode::kInternal;
    }
}

static std::string formatSystemError(const std::string& op, const std::string& what, int err) {
    std::string msg = op;
    if (!what.empty()) msg += " " + what;
    msg += ": ";
    msg += std::strerror(err);
    msg += " (" + errnoName(err) + ")";
    return msg;
}

SystemError::SystemError(const std::string& op, const std::string& what, int err)
    : Error(codeForErrno(err), formatSystemError(op, what, err)), err_(err) {}

void throwErrno(const std::string& op, const std::string& what) {
    throw SystemError(op, what, errno);
}

}  // namespace kata
