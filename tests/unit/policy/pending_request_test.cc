// Tests for the canonical pending-request encoding (pending_request.h):
// exact bytes, escaping, round trips, the strict parser, limits, the request
// digest and request ids.
#include "custos/policy/pending_request.h"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace custos::policy {
namespace {

PendingRequestText Example() {
  PendingRequestText r;
  r.id = "rq-0123456789abcdef0123456789abcdef";
  r.fields = {
      {"operation", "sign"},
      {"requester", "spiffe://dev.custos.test/builder"},
      {"created", "2026-03-14T10:00:00Z"},
      {"expires", "2026-03-15T10:00:00Z"},
      {"policy-version", "1"},
      {"quorum", "release-signing: 2 of group officers"},
      {"key", "release-2026@1"},
      {"algorithm", "ecdsa-p256-sha256"},
      {"digest", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
      {"file", "app-1.2.tar.gz"},
      {"note", "release 1.2: 100% tested\nsecond line \xc3\xa9t\xc3\xa9 \x7f end"},
  };
  return r;
}

constexpr char kExampleBytes[] =
    "custos-request-v1\n"
    "id: rq-0123456789abcdef0123456789abcdef\n"
    "operation: sign\n"
    "requester: spiffe://dev.custos.test/builder\n"
    "created: 2026-03-14T10:00:00Z\n"
    "expires: 2026-03-15T10:00:00Z\n"
    "policy-version: 1\n"
    "quorum: release-signing: 2 of group officers\n"
    "key: release-2026@1\n"
    "algorithm: ecdsa-p256-sha256\n"
    "digest: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
    "file: app-1.2.tar.gz\n"
    "note: release 1.2: 100%25 tested%0Asecond line \xc3\xa9t\xc3\xa9 %7F end\n";

std::string MustEncode(const PendingRequestText& r) {
  auto bytes = EncodePendingRequest(r);
  if (!bytes) throw std::logic_error("not encodable");
  return *bytes;
}

TEST(PendingRequest, EncodesExactlyTheDocumentedBytes) {
  EXPECT_EQ(MustEncode(Example()), kExampleBytes);
}

TEST(PendingRequest, RoundTrips) {
  const PendingRequestText r = Example();
  auto parsed = ParsePendingRequest(MustEncode(r));
  ASSERT_TRUE(std::holds_alternative<PendingRequestText>(parsed)) << std::get<std::string>(parsed);
  EXPECT_EQ(std::get<PendingRequestText>(parsed), r);
}

TEST(PendingRequest, EveryByteValueRoundTrips) {
  PendingRequestText r;
  r.id = "rq-1";
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  r.fields = {{"value", all}, {"empty", ""}, {"value", "%%%"}, {"x", " leading and trailing "}};
  const std::string bytes = MustEncode(r);
  // Only the escaped bytes are escaped.
  for (char c : bytes.substr(kPendingRequestPrefix.size())) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u == '\n' || (u >= 0x20 && u != 0x7f)) << static_cast<int>(u);
  }
  EXPECT_NE(bytes.find("value: %00%01"), std::string::npos);
  EXPECT_NE(bytes.find("%1F !\"#$%25&"), std::string::npos);
  EXPECT_NE(bytes.find("~%7F\x80\x81"), std::string::npos);
  EXPECT_NE(bytes.find("\nempty: \n"), std::string::npos);
  EXPECT_NE(bytes.find("\nvalue: %25%25%25\n"), std::string::npos);
  auto parsed = ParsePendingRequest(bytes);
  ASSERT_TRUE(std::holds_alternative<PendingRequestText>(parsed)) << std::get<std::string>(parsed);
  EXPECT_EQ(std::get<PendingRequestText>(parsed), r);
}

TEST(PendingRequest, GetAndGetAll) {
  PendingRequestText r = Example();
  r.fields.push_back({"item", "a 00"});
  r.fields.push_back({"item", "b 11"});
  EXPECT_EQ(r.Get("key"), "release-2026@1");
  EXPECT_EQ(r.Get("item"), "a 00");
  EXPECT_EQ(r.Get("missing"), std::nullopt);
  EXPECT_EQ(r.GetAll("item"), (std::vector<std::string>{"a 00", "b 11"}));
  EXPECT_TRUE(r.GetAll("missing").empty());
}

TEST(PendingRequest, EncodeRefusesInvalidIdsAndNames) {
  for (const char* id : {"", "RQ-1", "rq 1", "rq-1\n", "-rq"}) {
    PendingRequestText r = Example();
    r.id = id;
    EXPECT_FALSE(EncodePendingRequest(r).has_value()) << id;
  }
  for (const char* name : {"", "Key", "key name", "key:", "key_name", "k\n", "id"}) {
    PendingRequestText r = Example();
    r.fields.push_back({name, "v"});
    EXPECT_FALSE(EncodePendingRequest(r).has_value()) << name;
  }
  PendingRequestText r = Example();
  r.fields.push_back({std::string(64, 'a'), "v"});
  EXPECT_TRUE(EncodePendingRequest(r).has_value());
  r.fields.push_back({std::string(65, 'a'), "v"});
  EXPECT_FALSE(EncodePendingRequest(r).has_value());
  PendingRequestText no_fields;
  no_fields.id = "rq-1";
  EXPECT_EQ(EncodePendingRequest(no_fields), "custos-request-v1\nid: rq-1\n");
}

TEST(PendingRequest, Limits) {
  PendingRequestText r;
  r.id = "rq-1";
  r.fields.assign(kMaxPendingRequestFields, {"f", "v"});
  const auto at_limit = EncodePendingRequest(r);
  ASSERT_TRUE(at_limit.has_value());
  EXPECT_TRUE(std::holds_alternative<PendingRequestText>(ParsePendingRequest(*at_limit)));
  r.fields.push_back({"f", "v"});
  EXPECT_FALSE(EncodePendingRequest(r).has_value());
  auto too_many = ParsePendingRequest(*at_limit + "f: v\n");
  ASSERT_TRUE(std::holds_alternative<std::string>(too_many));
  EXPECT_NE(std::get<std::string>(too_many).find("more than 4096 fields"), std::string::npos)
      << std::get<std::string>(too_many);

  // Size: a value that makes the encoding exactly the limit, then one byte more.
  PendingRequestText big;
  big.id = "rq-1";
  const std::size_t overhead = std::string("custos-request-v1\nid: rq-1\nv: \n").size();
  big.fields = {{"v", std::string(kMaxPendingRequestBytes - overhead, 'x')}};
  const auto exact = EncodePendingRequest(big);
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(exact->size(), kMaxPendingRequestBytes);
  EXPECT_TRUE(std::holds_alternative<PendingRequestText>(ParsePendingRequest(*exact)));
  big.fields[0].second.push_back('x');
  EXPECT_FALSE(EncodePendingRequest(big).has_value());
  // Escaping counts: one %25 is three bytes.
  big.fields[0].second.resize(kMaxPendingRequestBytes - overhead - 2);
  big.fields[0].second.back() = '%';
  EXPECT_TRUE(EncodePendingRequest(big).has_value());
  big.fields[0].second.push_back('%');
  EXPECT_FALSE(EncodePendingRequest(big).has_value());
  auto too_long = ParsePendingRequest(*exact + "v: x\n");
  ASSERT_TRUE(std::holds_alternative<std::string>(too_long));
  EXPECT_NE(std::get<std::string>(too_long).find("the limit is"), std::string::npos);
}

struct StrictCase {
  const char* name;
  std::string bytes;
  const char* error_contains;
};

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const std::size_t pos = text.find(from);
  if (pos == std::string::npos) throw std::logic_error("test vector: no \"" + from + "\"");
  return text.replace(pos, from.size(), to);
}

class StrictParseTest : public testing::TestWithParam<StrictCase> {};

TEST_P(StrictParseTest, Rejects) {
  const StrictCase& c = GetParam();
  auto parsed = ParsePendingRequest(c.bytes);
  ASSERT_TRUE(std::holds_alternative<std::string>(parsed)) << c.name;
  const std::string& error = std::get<std::string>(parsed);
  EXPECT_NE(error.find(c.error_contains), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

const std::string kGood = kExampleBytes;

INSTANTIATE_TEST_SUITE_P(
    PendingRequest, StrictParseTest,
    testing::Values(
        StrictCase{"Empty", "", "line 1: does not start with \"custos-request-v1\""},
        StrictCase{"BadPrefix", Replace(kGood, "-v1", "-v2"), "line 1: does not start"},
        StrictCase{"ApprovalPrefix", Replace(kGood, "custos-request-v1", "custos-approval-v1"),
                   "line 1"},
        StrictCase{"PrefixOnly", "custos-request-v1\n", "line 2: missing \"id: <request id>\""},
        StrictCase{"NoId", Replace(kGood, "id: rq-0123456789abcdef0123456789abcdef\n", ""),
                   "line 2: expected \"id: <request id>\""},
        StrictCase{"BadId", Replace(kGood, "id: rq-", "id: RQ-"), "line 2: request id must be"},
        StrictCase{"SecondId", kGood + "id: rq-1\n", "line 14: field name \"id\" may appear only"},
        StrictCase{"CrLf", Replace(kGood, "operation: sign\n", "operation: sign\r\n"),
                   "line 3: field \"operation\" contains a carriage return"},
        StrictCase{"CrLfAfterPrefix",
                   Replace(kGood, "custos-request-v1\n", "custos-request-v1\r\n"),
                   "line 1: does not start"},
        StrictCase{"MissingFinalNewline", kGood.substr(0, kGood.size() - 1),
                   "line 13: not terminated by a newline"},
        StrictCase{"TrailingBytes", kGood + "trailing", "line 14: not terminated by a newline"},
        StrictCase{"TrailingNul", kGood + std::string(1, '\0'), "line 14: not terminated"},
        StrictCase{"BlankLine", kGood + "\n", "line 14: is not \"name: value\""},
        StrictCase{"UppercaseFieldName", Replace(kGood, "key:", "Key:"),
                   "line 9: field name \"Key\" is not 1-64 characters of [a-z0-9-]"},
        StrictCase{"UnderscoreFieldName", Replace(kGood, "policy-version:", "policy_version:"),
                   "line 7: field name \"policy_version\""},
        StrictCase{"LongFieldName", kGood + std::string(65, 'a') + ": v\n", "line 14: field name"},
        StrictCase{"NoSpaceAfterColon", Replace(kGood, "key: ", "key:"),
                   "line 9: is not \"name: value\""},
        StrictCase{"SpaceBeforeColon", Replace(kGood, "key: ", "key : "),
                   "line 9: field name \"key \""},
        StrictCase{"LowercaseEscape", Replace(kGood, "%7F", "%7f"),
                   "line 13: field \"note\" has an escape that is not % and two uppercase hex"},
        StrictCase{"NonHexEscape", Replace(kGood, "%7F", "%7G"), "line 13: field \"note\" has an"},
        StrictCase{"TruncatedEscape", Replace(kGood, "%7F end\n", "%7\n"),
                   "line 13: field \"note\" has a truncated %XX escape"},
        StrictCase{"PercentAtEnd", Replace(kGood, "%7F end\n", "%\n"), "truncated"},
        StrictCase{"NeedlessEscape", Replace(kGood, "tested", "t%45sted"),
                   "line 13: field \"note\" escapes byte %45, which must be written as is"},
        StrictCase{"NeedlessEscapeOfHighByte", Replace(kGood, "\xc3\xa9t", "%C3\xa9t"),
                   "escapes byte %C3"},
        StrictCase{"RawTab", Replace(kGood, "second line", "second\tline"),
                   "unescaped control byte"},
        StrictCase{"RawDel", Replace(kGood, "%7F", "\x7f"), "unescaped control byte"},
        StrictCase{"RawCrInValue", Replace(kGood, "tested", "te\rsted"), "carriage return"}),
    [](const testing::TestParamInfo<StrictCase>& info) { return std::string(info.param.name); });

TEST(PendingRequest, ParseAcceptsWhatEncodeProducesOnly) {
  // A value that starts with a space or contains ": " is still one value.
  PendingRequestText r;
  r.id = "a";
  r.fields = {{"note", " key: x"}, {"n0-9", ""}};
  const std::string bytes = MustEncode(r);
  EXPECT_EQ(bytes, "custos-request-v1\nid: a\nnote:  key: x\nn0-9: \n");
  auto parsed = ParsePendingRequest(bytes);
  ASSERT_TRUE(std::holds_alternative<PendingRequestText>(parsed)) << std::get<std::string>(parsed);
  EXPECT_EQ(std::get<PendingRequestText>(parsed), r);
}

TEST(RequestDigest, IsSha256OfTheBytes) {
  // FIPS 180-2 test vector.
  EXPECT_EQ(DigestToString(RequestDigest("abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(DigestToString(RequestDigest("")),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_NE(RequestDigest(kExampleBytes), RequestDigest(std::string(kExampleBytes) + "x"));
}

TEST(NewRequestId, FormatAndUniqueness) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto id = NewRequestId();
    ASSERT_TRUE(id.has_value());
    ASSERT_EQ(id->size(), 35u) << *id;
    EXPECT_EQ(id->substr(0, 3), "rq-");
    for (char c : id->substr(3)) {
      EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << *id;
    }
    EXPECT_TRUE(IsValidApprovalId(*id));
    EXPECT_TRUE(seen.insert(*id).second) << "repeated " << *id;
  }
}

}  // namespace
}  // namespace custos::policy
