// Descriptor-driven conversion between OCI runtime-spec JSON and agent/oci.proto messages.
#include "kata/oci/spec.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/file.h"

namespace kata::oci {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Fields whose zero value is meaningful in OCI JSON (required keys, or 0 being a real id/number),
// so they are written even when they hold the proto3 default.
const std::set<std::string, std::less<>>& alwaysWritten() {
    static const std::set<std::string, std::less<>> fields = {
        "grpc.Spec.Version",
        "grpc.Process.User",
        "grpc.User.UID",
        "grpc.User.GID",
        "grpc.Root.Path",
        "grpc.POSIXRlimit.Hard",
        "grpc.POSIXRlimit.Soft",
        "grpc.LinuxIDMapping.HostID",
        "grpc.LinuxIDMapping.ContainerID",
        "grpc.LinuxIDMapping.Size",
        "grpc.LinuxDevice.Major",
        "grpc.LinuxDevice.Minor",
        "grpc.LinuxDeviceCgroup.Allow",
        "grpc.LinuxDeviceCgroup.Major",
        "grpc.LinuxDeviceCgroup.Minor",
        "grpc.LinuxWeightDevice.Major",
        "grpc.LinuxWeightDevice.Minor",
        "grpc.LinuxThrottleDevice.Major",
        "grpc.LinuxThrottleDevice.Minor",
        "grpc.LinuxThrottleDevice.Rate",
        "grpc.LinuxHugepageLimit.Limit",
        "grpc.LinuxPids.Limit",
        "grpc.LinuxSeccompArg.Index",
        "grpc.LinuxSeccompArg.Value",
        "grpc.LinuxInterfacePriority.Priority",
    };
    return fields;
}

bool isDeviceCgroupNumber(const FieldDescriptor* f) {
    return f->containing_type()->full_name() == "grpc.LinuxDeviceCgroup" &&
           (f->name() == "Major" || f->name() == "Minor");
}

const FieldDescriptor* findField(const Descriptor* d, std::string_view key) {
    for (int i = 0; i < d->field_count(); ++i) {
        if (d->field(i)->json_name() == key) return d->field(i);
    }
    for (int i = 0; i < d->field_count(); ++i) {
        if (d->field(i)->name() == key) return d->field(i);
    }
    return nullptr;
}

class JsonReader {
  public:
    explicit JsonReader(std::string what) : what_(std::move(what)) {}

    void message(const json& j, Message* m, const std::string& path) {
        if (!j.is_object()) fail(path, std::string("expected an object, got ") + j.type_name());
        const Descriptor* d = m->GetDescriptor();
        for (const auto& [key, value] : j.items()) {
            const FieldDescriptor* f = findField(d, key);
            if (f == nullptr || value.is_null()) continue;  // not carried by the protocol
            field(value, m, f, join(path, key));
        }
        if (d->full_name() == "grpc.LinuxDeviceCgroup") {
            // Absent major/minor mean "any"; keep that distinct from device number 0.
            const Reflection* r = m->GetReflection();
            for (const char* name : {"Major", "Minor"}) {
                const FieldDescriptor* f = d->FindFieldByName(name);
                auto it = j.find(f->json_name());
                if (it == j.end() || it->is_null()) r->SetInt64(m, f, kWildcardDevice);
            }
        }
    }

  private:
    static std::string join(const std::string& path, std::string_view key) {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    [[noreturn]] void fail(const std::string& path, const std::string& why) const {
        throw Error(StatusCode::kInvalidArgument,
                    "invalid " + what_ + ": " + (path.empty() ? "" : path + ": ") + why);
    }

    void field(const json& v, Message* m, const FieldDescriptor* f, const std::string& path) {
        const Reflection* r = m->GetReflection();
        if (f->is_map()) {
            if (!v.is_object()) fail(path, std::string("expected an object, got ") + v.type_name());
            const Descriptor* entry = f->message_type();
            const FieldDescriptor* keyField = entry->map_key();
            const FieldDescriptor* valueField = entry->map_value();
            if (keyField->cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
                fail(path, "maps with non-string keys are not supported");
            }
            for (const auto& [key, value] : v.items()) {
                Message* e = r->AddMessage(m, f);
                e->GetReflection()->SetString(e, keyField, key);
                std::string itemPath = path + "[\"" + key + "\"]";
                if (value.is_null()) continue;
                single(value, e, valueField, itemPath);
            }
            return;
        }
        if (f->is_repeated()) {
            if (!v.is_array()) fail(path, std::string("expected an array, got ") + v.type_name());
            for (size_t i = 0; i < v.size(); ++i) {
                std::string itemPath = path + "[" + std::to_string(i) + "]";
                if (v[i].is_null()) fail(itemPath, "null is not allowed in an array");
                repeatedItem(v[i], m, f, itemPath);
            }
            return;
        }
        single(v, m, f, path);
    }

    template <class T>
    T integer(const json& v, const std::string& path, const char* typeName) {
        if (!v.is_number_integer()) {
            if (v.is_number_float())
                fail(path, std::string("expected ") + typeName + ", got a fraction");
            fail(path, std::string("expected ") + typeName + ", got " + v.type_name());
        }
        if (v.is_number_unsigned()) {
            auto u = v.get<uint64_t>();
            if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
                fail(path, std::to_string(u) + " is out of range for " + typeName);
            }
            return static_cast<T>(u);
        }
        auto s = v.get<int64_t>();
        if (s < 0 && !std::numeric_limits<T>::is_signed) {
            fail(path, std::to_string(s) + " is out of range for " + typeName);
        }
        if constexpr (std::numeric_limits<T>::is_signed) {
            if (s < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                s > static_cast<int64_t>(std::numeric_limits<T>::max())) {
                fail(path, std::to_string(s) + " is out of range for " + typeName);
            }
        } else if (static_cast<uint64_t>(s) >
                   static_cast<uint64_t>(std::numeric_limits<T>::max())) {
            fail(path, std::to_string(s) + " is out of range for " + typeName);
        }
        return static_cast<T>(s);
    }

    void expect(bool ok, const json& v, const std::string& path, const char* expected) {
        if (!ok) fail(path, std::string("expected ") + expected + ", got " + v.type_name());
    }

    // One value of a singular field.
    void single(const json& v, Message* m, const FieldDescriptor* f, const std::string& path) {
        const Reflection* r = m->GetReflection();
        switch (f->cpp_type()) {
            case FieldDescriptor::CPPTYPE_MESSAGE:
                message(v, r->MutableMessage(m, f), path);
                break;
            case FieldDescriptor::CPPTYPE_STRING:
                expect(v.is_string(), v, path, "a string");
                r->SetString(m, f, v.get<std::string>());
                break;
            case FieldDescriptor::CPPTYPE_BOOL:
                expect(v.is_boolean(), v, path, "a boolean");
                r->SetBool(m, f, v.get<bool>());
                break;
            case FieldDescriptor::CPPTYPE_INT32:
                r->SetInt32(m, f, integer<int32_t>(v, path, "a 32-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_INT64:
                r->SetInt64(m, f, integer<int64_t>(v, path, "a 64-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_UINT32:
                r->SetUInt32(m, f, integer<uint32_t>(v, path, "an unsigned 32-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_UINT64:
                r->SetUInt64(m, f, integer<uint64_t>(v, path, "an unsigned 64-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_DOUBLE:
                expect(v.is_number(), v, path, "a number");
                r->SetDouble(m, f, v.get<double>());
                break;
            case FieldDescriptor::CPPTYPE_FLOAT:
                expect(v.is_number(), v, path, "a number");
                r->SetFloat(m, f, v.get<float>());
                break;
            case FieldDescriptor::CPPTYPE_ENUM: {
                expect(v.is_string(), v, path, "a string");
                const auto* ev = f->enum_type()->FindValueByName(v.get<std::string>());
                if (ev == nullptr) fail(path, "unknown value \"" + v.get<std::string>() + "\"");
                r->SetEnum(m, f, ev);
                break;
            }
        }
    }

    void repeatedItem(const json& v, Message* m, const FieldDescriptor* f,
                      const std::string& path) {
        const Reflection* r = m->GetReflection();
        switch (f->cpp_type()) {
            case FieldDescriptor::CPPTYPE_MESSAGE:
                message(v, r->AddMessage(m, f), path);
                break;
            case FieldDescriptor::CPPTYPE_STRING:
                expect(v.is_string(), v, path, "a string");
                r->AddString(m, f, v.get<std::string>());
                break;
            case FieldDescriptor::CPPTYPE_BOOL:
                expect(v.is_boolean(), v, path, "a boolean");
                r->AddBool(m, f, v.get<bool>());
                break;
            case FieldDescriptor::CPPTYPE_INT32:
                r->AddInt32(m, f, integer<int32_t>(v, path, "a 32-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_INT64:
                r->AddInt64(m, f, integer<int64_t>(v, path, "a 64-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_UINT32:
                r->AddUInt32(m, f, integer<uint32_t>(v, path, "an unsigned 32-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_UINT64:
                r->AddUInt64(m, f, integer<uint64_t>(v, path, "an unsigned 64-bit integer"));
                break;
            case FieldDescriptor::CPPTYPE_DOUBLE:
                expect(v.is_number(), v, path, "a number");
                r->AddDouble(m, f, v.get<double>());
                break;
            case FieldDescriptor::CPPTYPE_FLOAT:
                expect(v.is_number(), v, path, "a number");
                r->AddFloat(m, f, v.get<float>());
                break;
            case FieldDescriptor::CPPTYPE_ENUM: {
                expect(v.is_string(), v, path, "a string");
                const auto* ev = f->enum_type()->FindValueByName(v.get<std::string>());
                if (ev == nullptr) fail(path, "unknown value \"" + v.get<std::string>() + "\"");
                r->AddEnum(m, f, ev);
                break;
            }
        }
    }

    std::string what_;
};

ordered_json messageToJsonValue(const Message& m);

ordered_json scalarToJson(const Message& m, const FieldDescriptor* f, int index) {
    const Reflection* r = m.GetReflection();
    const bool rep = index >= 0;
    switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_MESSAGE:
            return messageToJsonValue(rep ? r->GetRepeatedMessage(m, f, index)
                                          : r->GetMessage(m, f));
        case FieldDescriptor::CPPTYPE_STRING:
            return rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
        case FieldDescriptor::CPPTYPE_BOOL:
            return rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
        case FieldDescriptor::CPPTYPE_INT32:
            return rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
        case FieldDescriptor::CPPTYPE_INT64:
            return rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
        case FieldDescriptor::CPPTYPE_UINT32:
            return rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
        case FieldDescriptor::CPPTYPE_UINT64:
            return rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
        case FieldDescriptor::CPPTYPE_DOUBLE:
            return rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
        case FieldDescriptor::CPPTYPE_FLOAT:
            return rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
        case FieldDescriptor::CPPTYPE_ENUM:
            return (rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f))->name();
    }
    return nullptr;
}

ordered_json messageToJsonValue(const Message& m) {
    const Descriptor* d = m.GetDescriptor();
    const Reflection* r = m.GetReflection();
    ordered_json out = ordered_json::object();
    for (int i = 0; i < d->field_count(); ++i) {
        const FieldDescriptor* f = d->field(i);
        if (f->is_map()) {
            if (r->FieldSize(m, f) == 0) continue;
            const FieldDescriptor* keyField = f->message_type()->map_key();
            const FieldDescriptor* valueField = f->message_type()->map_value();
            // Sorted keys keep the output stable (map iteration order is not).
            std::map<std::string, ordered_json> items;
            for (int k = 0; k < r->FieldSize(m, f); ++k) {
                const Message& e = r->GetRepeatedMessage(m, f, k);
                items[e.GetReflection()->GetString(e, keyField)] = scalarToJson(e, valueField, -1);
            }
            ordered_json obj = ordered_json::object();
            for (auto& [k, v] : items) obj[k] = std::move(v);
            out[f->json_name()] = std::move(obj);
            continue;
        }
        if (f->is_repeated()) {
            if (r->FieldSize(m, f) == 0) continue;
            ordered_json arr = ordered_json::array();
            for (int k = 0; k < r->FieldSize(m, f); ++k) arr.push_back(scalarToJson(m, f, k));
            out[f->json_name()] = std::move(arr);
            continue;
        }
        const bool always = alwaysWritten().count(f->full_name()) > 0;
        const bool present = r->HasField(m, f);
        if (isDeviceCgroupNumber(f) && r->GetInt64(m, f) == kWildcardDevice) continue;
        if (!present && !always) continue;
        out[f->json_name()] = scalarToJson(m, f, -1);
    }
    return out;
}

json parseDocument(const std::string& text, const std::string& what) {
    try {
        return json::parse(text);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for huge numbers
        std::string msg = e.what();
        // Drop nlohmann's "[json.exception.parse_error.101] " tag, keep "parse error at line..".
        if (auto pos = msg.find("] ");
            msg.rfind("[json.exception", 0) == 0 && pos != std::string::npos) {
            msg = msg.substr(pos + 2);
        }
        throw Error(StatusCode::kInvalidArgument, "invalid " + what + ": " + msg);
    }
}

}  // namespace

void messageFromJson(const std::string& text, google::protobuf::Message* msg,
                     const std::string& what) {
    json doc = parseDocument(text, what);
    if (!doc.is_object()) {
        throw Error(StatusCode::kInvalidArgument,
                    "invalid " + what + ": expected a JSON object at the top level, got " +
                        doc.type_name());
    }
    msg->Clear();
    JsonReader(what).message(doc, msg, "");
}

std::string messageToJson(const google::protobuf::Message& msg, bool pretty) {
    return messageToJsonValue(msg).dump(pretty ? 4 : -1);
}

grpc::Spec specFromJson(const std::string& json) {
    grpc::Spec spec;
    messageFromJson(json, &spec, "config.json");
    return spec;
}

std::string specToJson(const grpc::Spec& spec, bool pretty) { return messageToJson(spec, pretty); }

grpc::Spec loadSpecFile(const std::string& path) {
    std::string text = readFile(path);
    try {
        return specFromJson(text);
    } catch (const Error& e) {
        throw Error(e.code(), "load " + path + ": " + e.what());
    }
}

void saveSpecFile(const grpc::Spec& spec, const std::string& path) {
    std::string text = specToJson(spec, true);
    std::string tmp = path + ".tmp.XXXXXX";
    UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
    if (!fd) throwErrno("create temporary file for", path);
    auto removeTmp = [&] { ::unlink(tmp.c_str()); };
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            removeTmp();
            throw SystemError("write", tmp, err);
        }
        off += static_cast<size_t>(n);
    }
    if (::fchmod(fd.get(), 0644) != 0 || ::fsync(fd.get()) != 0) {
        int err = errno;
        removeTmp();
        throw SystemError("sync", tmp, err);
    }
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        removeTmp();
        throw SystemError("rename " + tmp + " to", path, err);
    }
}

}  // namespace kata::oci
