#include "kata/ttrpc/ttrpc.h"

namespace kata::ttrpc {

const std::string* CallContext::metadataValue(const std::string& key) const {
    for (const auto& [k, v] : metadata) {
        if (k == key) return &v;
    }
    return nullptr;
}

}  // namespace kata::ttrpc
