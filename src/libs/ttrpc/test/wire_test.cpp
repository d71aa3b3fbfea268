// The hand-written envelope codec checked against libprotobuf itself: descriptors for
// ttrpc.Request / ttrpc.Response / google.rpc.Status are built here from the published field
// numbers, and both sides must read what the other wrote.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <gtest/gtest.h>

#include "wire.h"

namespace kata::ttrpc::wire {
namespace {

namespace pb = google::protobuf;

class Envelopes : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        pb::FileDescriptorProto status;
        status.set_name("test_status.proto");
        status.set_package("google.rpc");
        status.set_syntax("proto3");
        auto* any = status.add_message_type();
        any->set_name("Any");
        addField(any, "type_url", 1, pb::FieldDescriptorProto::TYPE_STRING);
        addField(any, "value", 2, pb::FieldDescriptorProto::TYPE_BYTES);
        auto* st = status.add_message_type();
        st->set_name("Status");
        addField(st, "code", 1, pb::FieldDescriptorProto::TYPE_INT32);
        addField(st, "message", 2, pb::FieldDescriptorProto::TYPE_STRING);
        addField(st, "details", 3, pb::FieldDescriptorProto::TYPE_MESSAGE, ".google.rpc.Any", true);
        ASSERT_NE(pool_.BuildFile(status), nullptr);

        pb::FileDescriptorProto req;
        req.set_name("test_request.proto");
        req.set_package("ttrpc");
        req.set_syntax("proto3");
        req.add_dependency("test_status.proto");
        auto* r = req.add_message_type();
        r->set_name("Request");
        addField(r, "service", 1, pb::FieldDescriptorProto::TYPE_STRING);
        addField(r, "method", 2, pb::FieldDescriptorProto::TYPE_STRING);
        addField(r, "payload", 3, pb::FieldDescriptorProto::TYPE_BYTES);
        addField(r, "timeout_nano", 4, pb::FieldDescriptorProto::TYPE_INT64);
        addField(r, "metadata", 5, pb::FieldDescriptorProto::TYPE_MESSAGE, ".ttrpc.KeyValue", true);
        auto* kv = req.add_message_type();
        kv->set_name("KeyValue");
        addField(kv, "key", 1, pb::FieldDescriptorProto::TYPE_STRING);
        addField(kv, "value", 2, pb::FieldDescriptorProto::TYPE_STRING);
        auto* resp = req.add_message_type();
        resp->set_name("Response");
        addField(resp, "status", 1, pb::FieldDescriptorProto::TYPE_MESSAGE, ".google.rpc.Status");
        addField(resp, "payload", 2, pb::FieldDescriptorProto::TYPE_BYTES);
        ASSERT_NE(pool_.BuildFile(req), nullptr);
    }

    static void addField(pb::DescriptorProto* m, const std::string& name, int number,
                         pb::FieldDescriptorProto::Type type, const std::string& typeName = "",
                         bool repeated = false) {
        auto* f = m->add_field();
        f->set_name(name);
        f->set_number(number);
        f->set_type(type);
        f->set_label(repeated ? pb::FieldDescriptorProto::LABEL_REPEATED
                              : pb::FieldDescriptorProto::LABEL_OPTIONAL);
        if (!typeName.empty()) f->set_type_name(typeName);
    }

    std::unique_ptr<pb::Message> make(const std::string& name) {
        const pb::Descriptor* d = pool_.FindMessageTypeByName(name);
        EXPECT_NE(d, nullptr) << name;
        return std::unique_ptr<pb::Message>(factory_.GetPrototype(d)->New());
    }

    static pb::DescriptorPool pool_;
    pb::DynamicMessageFactory factory_{&pool_};
};

pb::DescriptorPool Envelopes::pool_;

TEST(FrameHeader, IsBigEndianLengthIdTypeFlags) {
    FrameHeader h{0x00012345, 0x0a0b0c0d, kTypeData, kFlagRemoteClosed | kFlagNoData};
    uint8_t b[kHeaderSize];
    encodeHeader(h, b);
    const uint8_t expected[kHeaderSize] = {0x00, 0x01, 0x23, 0x45, 0x0a, 0x0b, 0x0c, 0x0d, 3, 5};
    EXPECT_EQ(0, memcmp(b, expected, kHeaderSize));
    FrameHeader back = decodeHeader(b);
    EXPECT_EQ(back.length, h.length);
    EXPECT_EQ(back.streamId, h.streamId);
    EXPECT_EQ(back.type, h.type);
    EXPECT_EQ(back.flags, h.flags);
}

TEST(FrameDecoder, ReassemblesFramesFedByteByByte) {
    std::string stream;
    for (uint32_t id : {1u, 3u, 5u}) {
        FrameHeader h{uint32_t(id * 100), id, kTypeRequest, 0};
        uint8_t b[kHeaderSize];
        encodeHeader(h, b);
        stream.append(reinterpret_cast<char*>(b), kHeaderSize);
        stream.append(std::string(id * 100, char('a' + id)));
    }
    FrameDecoder dec;
    std::vector<Frame> frames;
    for (char c : stream) {
        dec.feed(&c, 1);
        Frame f;
        while (dec.next(&f) == FrameDecoder::Result::kFrame) frames.push_back(f);
    }
    ASSERT_EQ(frames.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        uint32_t id = uint32_t(2 * i + 1);
        EXPECT_EQ(frames[i].header.streamId, id);
        EXPECT_EQ(frames[i].payload, std::string(id * 100, char('a' + id)));
    }
    EXPECT_EQ(dec.buffered(), 0u);
}

TEST(FrameDecoder, RejectsFramesOverTheLimitButAcceptsTheLimit) {
    for (uint32_t len : {uint32_t(kMaxMessageSize), uint32_t(kMaxMessageSize + 1)}) {
        FrameDecoder dec;
        uint8_t b[kHeaderSize];
        encodeHeader(FrameHeader{len, 1, kTypeRequest, 0}, b);
        dec.feed(reinterpret_cast<char*>(b), kHeaderSize);
        Frame f;
        auto r = dec.next(&f);
        if (len == kMaxMessageSize) {
            EXPECT_EQ(r, FrameDecoder::Result::kNeedMore);
        } else {
            EXPECT_EQ(r, FrameDecoder::Result::kOversized);
            EXPECT_EQ(dec.oversizedLength(), len);
        }
    }
}

TEST_F(Envelopes, RequestIsReadableByLibprotobuf) {
    Request req;
    req.service = "grpc.AgentService";
    req.method = "CreateContainer";
    req.payload = std::string("\0\x01\xff payload", 11);
    req.timeoutNano = 5'000'000'000;
    req.metadata = {{"k1", "v1"}, {"k1", "v2"}, {"empty", ""}};
    auto msg = make("ttrpc.Request");
    ASSERT_TRUE(msg->ParseFromString(encodeRequest(req)));
    auto* d = msg->GetDescriptor();
    auto* refl = msg->GetReflection();
    EXPECT_EQ(refl->GetString(*msg, d->FindFieldByNumber(1)), req.service);
    EXPECT_EQ(refl->GetString(*msg, d->FindFieldByNumber(2)), req.method);
    EXPECT_EQ(refl->GetString(*msg, d->FindFieldByNumber(3)), req.payload);
    EXPECT_EQ(refl->GetInt64(*msg, d->FindFieldByNumber(4)), req.timeoutNano);
    auto* md = d->FindFieldByNumber(5);
    ASSERT_EQ(refl->FieldSize(*msg, md), 3);
    for (int i = 0; i < 3; ++i) {
        const auto& kv = refl->GetRepeatedMessage(*msg, md, i);
        auto* kvd = kv.GetDescriptor();
        EXPECT_EQ(kv.GetReflection()->GetString(kv, kvd->FindFieldByNumber(1)),
                  req.metadata[i].first);
        EXPECT_EQ(kv.GetReflection()->GetString(kv, kvd->FindFieldByNumber(2)),
                  req.metadata[i].second);
    }
}

TEST_F(Envelopes, RequestWrittenByLibprotobufDecodes) {
    auto msg = make("ttrpc.Request");
    auto* d = msg->GetDescriptor();
    auto* refl = msg->GetReflection();
    refl->SetString(msg.get(), d->FindFieldByNumber(1), "containerd.task.v2.Task");
    refl->SetString(msg.get(), d->FindFieldByNumber(2), "Wait");
    refl->SetString(msg.get(), d->FindFieldByNumber(3), "xyz");
    refl->SetInt64(msg.get(), d->FindFieldByNumber(4), -1);
    auto* kv = refl->AddMessage(msg.get(), d->FindFieldByNumber(5));
    kv->GetReflection()->SetString(kv, kv->GetDescriptor()->FindFieldByNumber(1),
                                   "containerd-namespace");
    kv->GetReflection()->SetString(kv, kv->GetDescriptor()->FindFieldByNumber(2), "k8s.io");
    Request req;
    ASSERT_TRUE(decodeRequest(msg->SerializeAsString(), &req));
    EXPECT_EQ(req.service, "containerd.task.v2.Task");
    EXPECT_EQ(req.method, "Wait");
    EXPECT_EQ(req.payload, "xyz");
    EXPECT_EQ(req.timeoutNano, -1);
    ASSERT_EQ(req.metadata.size(), 1u);
    EXPECT_EQ(req.metadata[0].first, "containerd-namespace");
    EXPECT_EQ(req.metadata[0].second, "k8s.io");
}

TEST_F(Envelopes, ResponseStatusRoundTripsThroughLibprotobuf) {
    Response resp;
    resp.hasStatus = true;
    resp.status.code = 5;
    resp.status.message = "container abc not found";
    resp.payload = "p";
    auto msg = make("ttrpc.Response");
    ASSERT_TRUE(msg->ParseFromString(encodeResponse(resp)));
    auto* d = msg->GetDescriptor();
    const auto& st = msg->GetReflection()->GetMessage(*msg, d->FindFieldByNumber(1));
    auto* sd = st.GetDescriptor();
    EXPECT_EQ(st.GetReflection()->GetInt32(st, sd->FindFieldByNumber(1)), 5);
    EXPECT_EQ(st.GetReflection()->GetString(st, sd->FindFieldByNumber(2)), resp.status.message);
    EXPECT_EQ(msg->GetReflection()->GetString(*msg, d->FindFieldByNumber(2)), "p");

    // And back, with a detail and a negative code (sign-extended varint).
    auto* stm = msg->GetReflection()->MutableMessage(msg.get(), d->FindFieldByNumber(1));
    stm->GetReflection()->SetInt32(stm, sd->FindFieldByNumber(1), -7);
    auto* any = stm->GetReflection()->AddMessage(stm, sd->FindFieldByNumber(3));
    any->GetReflection()->SetString(any, any->GetDescriptor()->FindFieldByNumber(1), "type.x/y");
    Response back;
    ASSERT_TRUE(decodeResponse(msg->SerializeAsString(), &back));
    EXPECT_TRUE(back.hasStatus);
    EXPECT_EQ(back.status.code, -7);
    EXPECT_EQ(back.status.message, resp.status.message);
    ASSERT_EQ(back.status.details.size(), 1u);
    EXPECT_EQ(back.payload, "p");
}

TEST(Envelope, OkResponseWithoutStatusHasNoStatusField) {
    Response resp;
    resp.payload = "abc";
    Response back;
    ASSERT_TRUE(decodeResponse(encodeResponse(resp), &back));
    EXPECT_FALSE(back.hasStatus);
    EXPECT_EQ(back.payload, "abc");
}

TEST(Envelope, UnknownFieldsAreSkipped) {
    Request req;
    req.service = "s";
    req.method = "m";
    std::string enc = encodeRequest(req);
    // field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32
    enc += std::string("\x48\x96\x01", 3);
    enc += std::string("\x51", 1) + std::string(8, '\x01');
    enc += std::string("\x5a\x02hi", 4);
    enc += std::string("\x65", 1) + std::string(4, '\x02');
    Request back;
    ASSERT_TRUE(decodeRequest(enc, &back));
    EXPECT_EQ(back.service, "s");
    EXPECT_EQ(back.method, "m");
}

TEST(Envelope, MalformedInputIsRejected) {
    Request req;
    req.service = "grpc.AgentService";
    req.method = "Check";
    std::string good = encodeRequest(req);
    Request out;
    // Every strict prefix that cuts a field short is invalid.
    for (size_t n = 1; n < good.size(); ++n) {
        if (n == 2 + req.service.size()) continue;  // a field boundary: a shorter valid message
        EXPECT_FALSE(decodeRequest(std::string_view(good).substr(0, n), &out)) << n;
    }
    EXPECT_FALSE(decodeRequest(std::string("\x08\x01", 2), &out));  // service with wire type 0
    EXPECT_FALSE(decodeRequest(std::string("\x00\x01", 2), &out));  // field number 0
    EXPECT_FALSE(decodeRequest(std::string("\x0b", 1), &out));      // group start
    EXPECT_FALSE(decodeRequest(std::string(11, '\xff'), &out));     // varint over 10 bytes
    EXPECT_FALSE(decodeRequest(std::string("\x2a\x02\x0a\x05", 4), &out));  // bad metadata entry
}

}  // namespace
}  // namespace kata::ttrpc::wire
