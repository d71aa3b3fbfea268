// Placeholder while the implementation lands.
#include "kata/jail/container.h"

#include "kata/common/error.h"

namespace kata::jail {
struct Container::Impl {};
Container::Container(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Container::~Container() = default;
std::unique_ptr<Container> Container::create(const std::string& id, const grpc::Spec&,
                                             const CreateOptions&) {
    throw Error(StatusCode::kUnimplemented, "create container " + id + ": not implemented yet");
}
}  // namespace kata::jail
