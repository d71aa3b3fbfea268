// Arbitrary command strings must either build a request or fail with kata::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "commands.h"
#include "kata/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    kata::agentctl::Context ctx;
    try {
        auto inv = kata::agentctl::parseCommand(text);
        if (inv.command == "sleep") return 0;  // would really sleep
        kata::agentctl::buildRequest(inv, ctx);
    } catch (const kata::Error&) {
    }
    return 0;
}
