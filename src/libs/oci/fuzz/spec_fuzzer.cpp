// Feeds arbitrary bytes to the config.json parser: it must either parse or throw kata::Error,
// and what specToJson writes must parse again to the same JSON (writing is idempotent; the
// first write may add required keys such as process.user).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kata/common/error.h"
#include "kata/oci/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    grpc::Spec spec;
    try {
        spec = kata::oci::specFromJson(text);
    } catch (const kata::Error&) {
        return 0;
    }
    std::string once = kata::oci::specToJson(spec);
    std::string twice = kata::oci::specToJson(kata::oci::specFromJson(once));
    if (once != twice) std::abort();
    return 0;
}
