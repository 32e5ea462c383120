// custos-officer's checks and formatting (client/officer/view.h) on canonical
// bytes made with policy::EncodePendingRequest.
#include "view.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <string>

#include "custos/policy/approval.h"
#include "custos/policy/pending_request.h"

namespace custos::officer {
namespace {

using namespace std::chrono_literals;
namespace v1 = custos::v1;

constexpr char kId[] = "rq-0123456789abcdef0123456789abcdef";
constexpr char kFileDigest[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

std::string Sha256Hex(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back("0123456789abcdef"[md[i] >> 4]);
    out.push_back("0123456789abcdef"[md[i] & 0xf]);
  }
  return out;
}

std::chrono::system_clock::time_point At(const char* utc) { return *ParseUtc(utc); }

policy::PendingRequestText SignRequest() {
  policy::PendingRequestText t;
  t.id = kId;
  t.fields = {
      {"operation", "sign"},
      {"requester", "spiffe://dev.custos.test/builder"},
      {"created", "2026-11-25T10:00:00Z"},
      {"expires", "2026-11-26T10:00:00Z"},
      {"policy-version", "1"},
      {"quorum", "release-signing: 2 of group officers"},
      {"key", "release-app@1"},
      {"algorithm", "ecdsa-p256-sha256"},
      {"digest", kFileDigest},
      {"file", "app-2.4.1.tar.gz"},
      {"note", "release 2.4.1, ticket OPS-77"},
  };
  return t;
}

// What the server would send for `text`.
v1::PendingRequestInfo InfoFor(const policy::PendingRequestText& text) {
  v1::PendingRequestInfo info;
  info.set_id(text.id);
  info.set_state("pending");
  info.set_operation(*text.Get("operation"));
  info.set_requester(*text.Get("requester"));
  info.set_key(text.Get("key").value_or(""));
  const std::string canonical = policy::EncodePendingRequest(text).value();
  info.set_canonical(canonical);
  info.set_digest(policy::DigestToString(policy::RequestDigest(canonical)));
  info.set_expires_at(ParseUtc(*text.Get("expires"))->time_since_epoch().count());
  auto* q = info.add_quorum();
  q->set_rule("release-signing");
  q->set_group("officers");
  q->set_threshold(2);
  q->add_approved_by("alice");
  auto* v = info.add_votes();
  v->set_officer("alice");
  v->set_decision("approve");
  v->set_time("2026-11-25T10:05:00Z");
  return info;
}

TEST(OfficerView, CheckAcceptsAMatchingRequest) {
  const auto text = SignRequest();
  auto checked = CheckRequest(InfoFor(text));
  ASSERT_TRUE(std::holds_alternative<CheckedRequest>(checked)) << std::get<std::string>(checked);
  const auto& c = std::get<CheckedRequest>(checked);
  EXPECT_EQ(c.text, text);
  EXPECT_EQ(c.digest, policy::RequestDigest(c.info.canonical()));
}

TEST(OfficerView, CheckRefusesADigestThatDoesNotMatch) {
  auto info = InfoFor(SignRequest());
  const std::string honest = info.digest();
  // The server reports another digest than its canonical bytes have.
  info.set_digest("sha256:" + std::string(64, '0'));
  auto checked = CheckRequest(info);
  ASSERT_TRUE(std::holds_alternative<std::string>(checked));
  const std::string& error = std::get<std::string>(checked);
  EXPECT_NE(error.find(kId), std::string::npos) << error;
  EXPECT_NE(error.find(honest), std::string::npos) << error;
  EXPECT_NE(error.find("nothing signed"), std::string::npos) << error;

  // The server changes the canonical bytes but keeps the old digest.
  info = InfoFor(SignRequest());
  std::string tampered = info.canonical();
  tampered.replace(tampered.find("app-2.4.1"), 9, "app-6.6.6");
  info.set_canonical(tampered);
  EXPECT_TRUE(std::holds_alternative<std::string>(CheckRequest(info)));
}

TEST(OfficerView, CheckRefusesUnparsableOrMisnamedCanonicalBytes) {
  auto info = InfoFor(SignRequest());
  info.set_canonical("custos-request-v1\nid: " + std::string(kId) + "\nKey: x\n");
  info.set_digest(policy::DigestToString(policy::RequestDigest(info.canonical())));
  auto checked = CheckRequest(info);
  ASSERT_TRUE(std::holds_alternative<std::string>(checked));
  EXPECT_NE(std::get<std::string>(checked).find("does not parse"), std::string::npos);

  info = InfoFor(SignRequest());
  info.set_id("rq-ffffffffffffffffffffffffffffffff");
  checked = CheckRequest(info);
  ASSERT_TRUE(std::holds_alternative<std::string>(checked));
  EXPECT_NE(std::get<std::string>(checked).find("names request " + std::string(kId)),
            std::string::npos)
      << std::get<std::string>(checked);
}

TEST(OfficerView, PolicyChangePayloadMustMatchItsHash) {
  const std::string payload = "version: 2\nrole { name: \"auditor\" }\n";
  policy::PendingRequestText t;
  t.id = kId;
  t.fields = {
      {"operation", "policy-change"},         {"requester", "spiffe://dev.custos.test/admin"},
      {"expires", "2026-11-26T10:00:00Z"},    {"proposed-version", "2"},
      {"payload-sha256", Sha256Hex(payload)}, {"policy-diff", "version: 1 -> 2"},
      {"policy-diff", "+ role auditor"}};
  auto info = InfoFor(t);
  info.set_payload(payload);
  auto checked = CheckRequest(info);
  ASSERT_TRUE(std::holds_alternative<CheckedRequest>(checked)) << std::get<std::string>(checked);
  const std::string shown =
      DescribeRequest(std::get<CheckedRequest>(checked), At("2026-11-25T10:00:00Z"));
  EXPECT_NE(shown.find("Change:               version: 1 -> 2\n"), std::string::npos) << shown;
  EXPECT_NE(shown.find("Change:               + role auditor\n"), std::string::npos) << shown;
  EXPECT_NE(shown.find("change the policy (policy-change)"), std::string::npos) << shown;

  info.set_payload(payload + "role { name: \"sneaky\" }\n");
  checked = CheckRequest(info);
  ASSERT_TRUE(std::holds_alternative<std::string>(checked));
  EXPECT_NE(std::get<std::string>(checked).find("payload"), std::string::npos);

  info.clear_payload();
  EXPECT_TRUE(std::holds_alternative<std::string>(CheckRequest(info)));
}

TEST(OfficerView, DescribeShowsEveryFieldInWords) {
  auto checked = std::get<CheckedRequest>(CheckRequest(InfoFor(SignRequest())));
  const std::string shown = DescribeRequest(checked, At("2026-11-25T10:47:30Z"));
  const std::string expected =
      "Request rq-0123456789abcdef0123456789abcdef\n"
      "  Operation:            sign a digest with a key (sign)\n"
      "  Requester:            spiffe://dev.custos.test/builder\n"
      "  Created:              2026-11-25T10:00:00Z\n"
      "  Expires:              2026-11-26T10:00:00Z\n"
      "  Time left:            23 h 12 min\n"
      "  Policy version:       1\n"
      "  Quorum:               release-signing: 2 of group officers\n"
      "  Key:                  release-app@1\n"
      "  Algorithm:            ecdsa-p256-sha256\n"
      "  Digest to be signed:  " +
      std::string(kFileDigest) +
      "\n"
      "  File:                 app-2.4.1.tar.gz\n"
      "  Note:                 release 2.4.1, ticket OPS-77\n"
      "  Request digest:       " +
      policy::DigestToString(checked.digest) +
      " (computed here from the request)\n"
      "Status (reported by the server, not part of what you sign):\n"
      "  State:                pending\n"
      "  Approvals:            1/2 (release-signing: alice)\n"
      "  Vote:                 alice approve at 2026-11-25T10:05:00Z\n";
  EXPECT_EQ(shown, expected);
}

TEST(OfficerView, UnknownFieldsAreShownAndControlBytesNeutralised) {
  auto text = SignRequest();
  text.fields.push_back({"future-field", "something new"});
  text.fields.push_back({"note", "hidden\x1b[2Ktext\rover"});
  auto checked = std::get<CheckedRequest>(CheckRequest(InfoFor(text)));
  const std::string shown = DescribeRequest(checked, At("2026-11-25T10:00:00Z"));
  EXPECT_NE(shown.find("  future-field:         something new\n"), std::string::npos) << shown;
  EXPECT_NE(shown.find("hidden%1B[2Ktext%0Dover"), std::string::npos) << shown;
  EXPECT_EQ(shown.find('\x1b'), std::string::npos);
  EXPECT_EQ(shown.find('\r'), std::string::npos);
}

TEST(OfficerView, TimeLeftInWords) {
  EXPECT_EQ(TimeLeftText(23h + 12min + 5s), "23 h 12 min");
  EXPECT_EQ(TimeLeftText(51h + 10min), "2 d 3 h");
  EXPECT_EQ(TimeLeftText(24h), "24 h 0 min");
  EXPECT_EQ(TimeLeftText(24h + 1s), "1 d 0 h");
  EXPECT_EQ(TimeLeftText(12min + 59s), "12 min");
  EXPECT_EQ(TimeLeftText(45s), "45 s");
  EXPECT_EQ(TimeLeftText(0s), "expired");
  EXPECT_EQ(TimeLeftText(-5s), "expired");
  auto checked = std::get<CheckedRequest>(CheckRequest(InfoFor(SignRequest())));
  const std::string late = DescribeRequest(checked, At("2026-11-26T10:00:01Z"));
  EXPECT_NE(late.find("  Time left:            expired\n"), std::string::npos) << late;
}

TEST(OfficerView, ParseUtcIsStrict) {
  EXPECT_EQ(FormatUtc(*ParseUtc("2026-02-28T23:59:59Z")), "2026-02-28T23:59:59Z");
  EXPECT_FALSE(ParseUtc("2026-02-30T00:00:00Z"));
  EXPECT_FALSE(ParseUtc("2026-02-28 23:59:59Z"));
  EXPECT_FALSE(ParseUtc("2026-02-28T24:00:00Z"));
  EXPECT_FALSE(ParseUtc("2026-02-28T23:59:59"));
  EXPECT_FALSE(ParseUtc(""));
}

TEST(OfficerView, ListLine) {
  const auto info = InfoFor(SignRequest());
  const std::string line = ListLine(1, info, At("2026-11-25T10:47:30Z"));
  EXPECT_EQ(line.rfind("  1  rq-0123456789abcdef0123456789abcdef  pending", 0), 0u) << line;
  EXPECT_NE(line.find("  sign  "), std::string::npos) << line;
  EXPECT_NE(line.find("  release-app@1  "), std::string::npos) << line;
  EXPECT_NE(line.find("spiffe://dev.custos.test/builder"), std::string::npos) << line;
  EXPECT_NE(line.find("  1/2  "), std::string::npos) << line;
  EXPECT_NE(line.find("23 h 12 min\n"), std::string::npos) << line;
  EXPECT_EQ(ApprovalsText(info), "1/2");
  EXPECT_NE(ListHeader().find("APPROVALS"), std::string::npos);
}

}  // namespace
}  // namespace custos::officer
