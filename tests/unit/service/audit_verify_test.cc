// The audit log verifier (audit_verify.h) on logs written by AuditLog under
// concurrent appends, then tampered with: the first bad record is named by
// line and sequence. Checkpoints are signed with a real OpenSSL P-256 key; the
// HSM-signed path is covered by tests/integration/audit_*_test.cc.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "custos/policy/approval.h"
#include "custos/service/audit_format.h"
#include "custos/service/audit_log.h"
#include "custos/service/audit_verify.h"

namespace custos::service {
namespace {

namespace fs = std::filesystem;

using PKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

PKey NewP256() { return PKey(EVP_EC_gen("P-256"), EVP_PKEY_free); }

CheckpointSigner SignerFor(EVP_PKEY* key) {
  return CheckpointSigner{
      "ecdsa-p256-sha256",
      [key](std::span<const std::uint8_t> digest) -> Result<CheckpointSignature> {
        std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
            EVP_PKEY_CTX_new(key, nullptr), EVP_PKEY_CTX_free);
        std::size_t len = 0;
        if (EVP_PKEY_sign_init(ctx.get()) != 1 ||
            EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) != 1) {
          return Error{"sign init"};
        }
        CheckpointSignature out;
        out.signature.resize(len);
        if (EVP_PKEY_sign(ctx.get(), out.signature.data(), &len, digest.data(), digest.size()) !=
            1) {
          return Error{"sign"};
        }
        out.signature.resize(len);
        out.key = "audit@1";
        return out;
      }};
}

class AuditVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/custos-audit-verify-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/audit.log";
    key_ = NewP256();
    ASSERT_NE(key_, nullptr);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<AuditLog> Open(std::size_t checkpoint_records) {
    AuditOptions o;
    o.path = path_;
    o.checkpoint_records = checkpoint_records;
    auto log = AuditLog::Open(o, SignerFor(key_.get()), logger_);
    EXPECT_TRUE(log.ok()) << (log.ok() ? "" : log.error());
    return log.ok() ? std::move(log.value()) : nullptr;
  }

  static Result<void> AppendSync(AuditLog& log, const std::string& trace) {
    audit::RequestFields f;
    f.principal = "spiffe://test/builder";
    f.peer = "127.0.0.1:1";
    f.request_id = 7;
    f.trace_id = trace;
    f.op = "sign";
    f.key = "k@1";
    f.op_sha256 = std::string(64, 'a');
    f.outcome = "OK";
    std::promise<Result<void>> p;
    auto fut = p.get_future();
    log.Append(f, [&p](const Result<void>& r) { p.set_value(r); });
    return fut.get();
  }

  std::vector<std::string> Lines() {
    std::ifstream in(path_);
    std::vector<std::string> out;
    std::string l;
    while (std::getline(in, l)) out.push_back(l);
    return out;
  }
  void WriteLines(const std::vector<std::string>& lines) {
    std::ofstream out(path_, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  audit::VerifyReport Verify(const std::optional<std::string>& pin = std::nullopt) {
    std::ifstream in(path_);
    return audit::VerifyLog(in, key_.get(), pin);
  }

  Logger logger_{LogLevel::kWarn};
  std::string dir_, path_;
  PKey key_{nullptr, EVP_PKEY_free};
};

TEST(AuditFormat, LineRoundTripsAndIsAscii) {
  audit::RequestFields f;
  f.principal = "p\"q\\r\n\x01\xff";
  f.outcome = "OK";
  const std::string body =
      audit::RequestBody(1, audit::kZeroHash, "2026-01-01T00:00:00.000000Z", f);
  const audit::Hash h = audit::ChainHash(audit::kZeroHash, body);
  const std::string line = audit::SealLine(body, h);
  ASSERT_EQ(line.back(), '\n');
  auto parsed = audit::ParseLine(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->body, body);
  EXPECT_EQ(parsed->hash, h);
  EXPECT_EQ(parsed->String("principal"), f.principal);
  EXPECT_EQ(parsed->Number("seq"), 1u);
  for (char c : line) EXPECT_LT(static_cast<unsigned char>(c), 0x80);
}

TEST_F(AuditVerifyTest, ConcurrentAppendsFormOneVerifiableChain) {
  {
    auto log = Open(/*checkpoint_records=*/5);
    ASSERT_NE(log, nullptr);
    // Each completion runs only once the record is durable (group commit).
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&log, t] {
        for (int i = 0; i < 25; ++i) {
          EXPECT_TRUE(AppendSync(*log, "t" + std::to_string(t) + "-" + std::to_string(i)).ok());
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_TRUE(log->LatestCheckpoint().has_value());
  }
  auto r = Verify();
  ASSERT_TRUE(r.ok) << r.problem;
  EXPECT_GE(r.checkpoints, 2u);
  EXPECT_GE(r.last_sequence, 101u);
  EXPECT_EQ(r.unsigned_tail, 0u);  // Close() signs a final checkpoint
}

class AuditVerifyTamper : public AuditVerifyTest {
 protected:
  void SetUp() override {
    AuditVerifyTest::SetUp();
    auto log = Open(/*checkpoint_records=*/4);
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < 12; ++i) ASSERT_TRUE(AppendSync(*log, "r" + std::to_string(i)).ok());
    pin_ = log->LatestCheckpoint();
    log.reset();
    ASSERT_TRUE(Verify().ok);
    lines_ = Lines();
    ASSERT_GT(lines_.size(), 12u);
  }
  std::vector<std::string> lines_;
  std::optional<std::string> pin_;
};

TEST_F(AuditVerifyTamper, FlippedByteNamesTheRecord) {
  auto lines = lines_;
  const std::size_t at = lines[5].find("\"trace_id\":\"") + 12;
  lines[5][at] = lines[5][at] == 'r' ? 's' : 'r';
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 6u) << r.problem;
  EXPECT_EQ(r.bad_sequence, 6u);
}

TEST_F(AuditVerifyTamper, DeletedRecord) {
  auto lines = lines_;
  lines.erase(lines.begin() + 3);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 4u) << r.problem;
  EXPECT_EQ(r.bad_sequence, 4u);
}

TEST_F(AuditVerifyTamper, SwappedRecords) {
  auto lines = lines_;
  std::swap(lines[2], lines[3]);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 3u) << r.problem;
}

TEST_F(AuditVerifyTamper, InsertedRecord) {
  auto lines = lines_;
  lines.insert(lines.begin() + 7, lines[6]);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 8u) << r.problem;
}

TEST_F(AuditVerifyTamper, TruncationBeforeThePinnedCheckpoint) {
  ASSERT_TRUE(pin_.has_value());
  auto pinned = audit::ParseLine(*pin_);
  ASSERT_TRUE(pinned.ok());
  const std::uint64_t pin_seq = *pinned->Number("seq");
  EXPECT_TRUE(Verify(pin_).ok);
  auto lines = lines_;
  lines.resize(pin_seq - 1);  // up to the last checkpoint minus one record
  WriteLines(lines);
  // Without the pin the shortened log is a valid prefix; with it, not.
  auto r = Verify(pin_);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_sequence, pin_seq) << r.problem;
  EXPECT_NE(r.problem.find("truncated"), std::string::npos) << r.problem;
}

TEST_F(AuditVerifyTamper, CheckpointSignedByAnotherKey) {
  std::size_t first_checkpoint = 0;
  for (std::size_t i = 0; i < lines_.size() && first_checkpoint == 0; ++i) {
    if (lines_[i].find("\"kind\":\"checkpoint\"") != std::string::npos) first_checkpoint = i + 1;
  }
  ASSERT_NE(first_checkpoint, 0u);
  PKey other = NewP256();
  std::ifstream in(path_);
  auto r = audit::VerifyLog(in, other.get(), std::nullopt);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, first_checkpoint) << r.problem;
  EXPECT_NE(r.problem.find("signature"), std::string::npos) << r.problem;
}

// --- Quorum fields and approval evidence ---------------------------------

// A record line written before "quorum_request" and approval entries existed
// (hash computed independently with Python's hashlib). It must still parse,
// verify, and be byte-identical to what RequestBody writes today for the same
// fields: old logs verify unchanged.
constexpr char kPreQuorumLine[] =
    R"({"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000",)"
    R"("time":"2026-11-25T10:10:54.709098Z","kind":"request",)"
    R"("principal":"spiffe://dev.custos.test/builder","peer":"127.0.0.1:39738",)"
    R"("request_id":2,"trace_id":"","op":"sign","key":"rel@1",)"
    R"("op_sha256":"abababababababababababababababababababababababababababababababab",)"
    R"("outcome":"OK","error":"","approvals":[],)"
    R"("hash":"d42f0fcf4d93cf4069494c6b036dc108de0b0c20982e675dda11bd6fbfd47ccb"})";

TEST(AuditFormat, PreQuorumRecordParsesAndKeepsItsBytes) {
  auto parsed = audit::ParseLine(kPreQuorumLine);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(audit::ChainHash(audit::kZeroHash, parsed->body), parsed->hash);
  EXPECT_EQ(parsed->Get("quorum_request"), nullptr);
  audit::RequestFields f;
  f.principal = "spiffe://dev.custos.test/builder";
  f.peer = "127.0.0.1:39738";
  f.request_id = 2;
  f.op = "sign";
  f.key = "rel@1";
  for (int i = 0; i < 32; ++i) f.op_sha256 += "ab";
  f.outcome = "OK";
  EXPECT_EQ(audit::RequestBody(1, audit::kZeroHash, "2026-11-25T10:10:54.709098Z", f),
            parsed->body);
  // And the approval checker sees nothing to check in it.
  audit::ApprovalEvidenceChecker checker(nullptr);
  checker.Add(*parsed);
  EXPECT_TRUE(checker.report().ok());
  EXPECT_EQ(checker.report().records, 0u);
  EXPECT_TRUE(checker.report().executed.empty());
}

TEST(AuditFormat, QuorumRequestAndApprovalsAreEmittedInOrder) {
  audit::RequestFields f;
  f.op = "sign";
  f.outcome = "OK";
  f.quorum_request = "rq-1";
  f.approvals = {"alice approve 2026-01-01T00:00:00Z sha256:" + std::string(64, '0') + " 30",
                 "b\"ob"};
  const std::string body =
      audit::RequestBody(3, audit::kZeroHash, "2026-01-01T00:00:00.000000Z", f);
  EXPECT_NE(body.find(R"("error":"","quorum_request":"rq-1","approvals":["alice approve )"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find(R"( 30","b\"ob"]})"), std::string::npos) << body;
  const std::string line = audit::SealLine(body, audit::ChainHash(audit::kZeroHash, body));
  auto parsed = audit::ParseLine(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->String("quorum_request"), "rq-1");
  ASSERT_NE(parsed->Get("approvals"), nullptr);
  EXPECT_EQ(parsed->Get("approvals")->array, f.approvals);
}

TEST(AuditFormat, ApprovalEntryRoundTripsAndRejectsBadShapes) {
  audit::ApprovalEntry e;
  e.officer = "alice";
  e.decision = "deny";
  e.time = "2026-01-01T00:00:00Z";
  e.request_digest.fill(0xab);
  e.signature = {0x30, 0x01, 0xff};
  const std::string text = audit::FormatApproval(e);
  std::string digest_hex;
  for (int i = 0; i < 32; ++i) digest_hex += "ab";
  EXPECT_EQ(text, "alice deny 2026-01-01T00:00:00Z sha256:" + digest_hex + " 3001ff");
  auto back = audit::ParseApproval(text);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->officer, "alice");
  EXPECT_EQ(back->decision, "deny");
  EXPECT_EQ(back->time, e.time);
  EXPECT_EQ(back->request_digest, e.request_digest);
  EXPECT_EQ(back->signature, e.signature);
  const std::string digest = "sha256:" + std::string(64, '0');
  for (const std::string& bad :
       {std::string(""), "alice approve t " + digest,              // four fields
        "alice approve t " + digest + " 30 extra",                 // six fields
        "alice maybe t " + digest + " 30",                         // decision
        "alice approve t sha1:" + std::string(64, '0') + " 30",    // digest kind
        "alice approve t sha256:" + std::string(63, '0') + " 30",  // digest length
        "alice approve t sha256:" + std::string(64, 'A') + " 30",  // uppercase
        "alice approve t " + digest + " 3",                        // odd hex
        "alice  approve t " + digest + " 30",                      // double space
        "alice approve t " + digest + " "}) {                      // empty signature
    EXPECT_FALSE(audit::ParseApproval(bad).has_value()) << bad;
  }
}

// Officers with real OpenSSL keys, signing real statements.
class ApprovalEvidenceTest : public ::testing::Test {
 protected:
  static constexpr char kRequest[] = "rq-00112233445566778899aabbccddeeff";

  struct TestOfficer {
    std::string id;
    PKey key{nullptr, EVP_PKEY_free};
  };

  void SetUp() override {
    for (const char* id : {"alice", "bob", "carol"}) {
      officers_.push_back(TestOfficer{id, NewP256()});
      ASSERT_NE(officers_.back().key, nullptr);
    }
    digest_.fill(0x5a);
  }

  EVP_PKEY* KeyOf(const std::string& id) {
    for (auto& o : officers_) {
      if (o.id == id) return o.key.get();
    }
    ADD_FAILURE() << "no officer " << id;
    return nullptr;
  }

  static policy::OfficerPublicKey PublicKey(EVP_PKEY* key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    EXPECT_EQ(PEM_write_bio_PUBKEY(bio.get(), key), 1);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    auto parsed = policy::OfficerPublicKey::Parse(std::string_view(data, len));
    EXPECT_TRUE(std::holds_alternative<policy::OfficerPublicKey>(parsed));
    return std::get<policy::OfficerPublicKey>(parsed);
  }

  // Keyring with the named officers' current keys.
  audit::OfficerKeyring Keyring(std::initializer_list<const char*> ids) {
    audit::OfficerKeyring ring;
    for (const char* id : ids) ring[id].push_back(PublicKey(KeyOf(id)));
    return ring;
  }

  // Signs the canonical statement (as custos-officer does: SHA-256, DER
  // ECDSA) and returns the audit entry for it.
  static std::string Entry(const std::string& officer, EVP_PKEY* key,
                           const policy::Sha256Digest& signed_digest,
                           policy::ApprovalDecision decision = policy::ApprovalDecision::kApprove,
                           const std::string& request = kRequest) {
    policy::ApprovalStatement st;
    st.request_id = request;
    st.request_digest = signed_digest;
    st.decision = decision;
    st.officer_id = officer;
    st.time = std::chrono::sys_seconds(std::chrono::seconds(1767225600));  // 2026-01-01
    auto text = policy::CanonicalStatement(st);
    EXPECT_TRUE(text.has_value());
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    const EVP_MD* md = EVP_PKEY_is_a(key, "ED25519") ? nullptr : EVP_sha256();
    std::size_t len = 0;
    EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key), 1);
    const auto* msg = reinterpret_cast<const unsigned char*>(text->data());
    EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, msg, text->size()), 1);
    audit::ApprovalEntry e;
    e.signature.resize(len);
    EXPECT_EQ(EVP_DigestSign(ctx.get(), e.signature.data(), &len, msg, text->size()), 1);
    e.signature.resize(len);
    e.officer = officer;
    e.decision = std::string(policy::ApprovalDecisionName(decision));
    e.time = "2026-01-01T00:00:00Z";
    std::copy(signed_digest.begin(), signed_digest.end(), e.request_digest.begin());
    return audit::FormatApproval(e);
  }
  std::string Entry(const std::string& officer) { return Entry(officer, KeyOf(officer), digest_); }

  // A sealed, parsed record as custosd writes it.
  audit::ParsedLine Record(std::uint64_t seq, const std::string& kind, const std::string& op,
                           const std::string& outcome, std::vector<std::string> approvals,
                           const std::string& request = kRequest) {
    audit::RequestFields f;
    f.kind = kind;
    f.principal = "spiffe://dev.custos.test/builder";
    f.op = op;
    f.key = op == "sign" ? "release-demo@1" : "";
    f.outcome = outcome;
    f.quorum_request = request;
    f.approvals = std::move(approvals);
    const std::string body = audit::RequestBody(seq, prev_, "2026-01-01T00:00:01.000000Z", f);
    prev_ = audit::ChainHash(prev_, body);
    const std::string line = audit::SealLine(body, prev_);
    auto parsed = audit::ParseLine(std::string_view(line).substr(0, line.size() - 1));
    EXPECT_TRUE(parsed.ok()) << (parsed.ok() ? "" : parsed.error());
    return parsed.value();
  }

  std::vector<TestOfficer> officers_;
  policy::Sha256Digest digest_{};
  audit::Hash prev_ = audit::kZeroHash;
};

TEST_F(ApprovalEvidenceTest, GoodEvidenceNamesTheApprovers) {
  const auto ring = Keyring({"alice", "bob", "carol"});
  audit::ApprovalEvidenceChecker c(&ring);
  c.Add(Record(1, "request", "sign", "PENDING_APPROVAL", {}));
  c.Add(Record(2, "request", "submit_approval", "OK", {Entry("alice")}));
  c.Add(Record(3, "request", "submit_approval", "OK", {Entry("bob")}));
  c.Add(Record(4, "intent", "sign", "", {Entry("alice"), Entry("bob")}));
  c.Add(Record(5, "request", "sign", "OK", {Entry("alice"), Entry("bob")}));
  // Reads of the request name it too; they are not executions.
  c.Add(Record(6, "request", "get_request", "OK", {}));
  c.Add(Record(7, "request", "list_requests", "OK", {}));
  const auto& r = c.report();
  EXPECT_TRUE(r.ok()) << r.problems.front();
  EXPECT_TRUE(r.checked);
  EXPECT_EQ(r.records, 4u);
  EXPECT_EQ(r.entries, 6u);
  EXPECT_EQ(r.valid, 6u);
  ASSERT_EQ(r.executed.size(), 1u);
  EXPECT_EQ(r.executed[0].seq, 5u);
  EXPECT_EQ(r.executed[0].approved_by, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(r.executed[0].Summary(true), std::string(kRequest) +
                                             " sign release-demo@1: approved by alice, bob (2 "
                                             "valid signatures)");
}

TEST_F(ApprovalEvidenceTest, WithoutKeysEvidenceIsListedUnchecked) {
  audit::ApprovalEvidenceChecker c(nullptr);
  c.Add(Record(1, "request", "sign", "OK", {Entry("alice"), Entry("bob")}));
  const auto& r = c.report();
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.checked);
  EXPECT_EQ(r.valid, 0u);
  ASSERT_EQ(r.executed.size(), 1u);
  EXPECT_EQ(r.executed[0].Summary(false),
            std::string(kRequest) +
                " sign release-demo@1: approved by alice, bob (signatures not checked)");
}

TEST_F(ApprovalEvidenceTest, FlippedSignatureByteIsAnError) {
  const auto ring = Keyring({"alice", "bob"});
  std::string bob = Entry("bob");
  char& last = bob.back();
  last = last == '0' ? '1' : '0';
  audit::ApprovalEvidenceChecker c(&ring);
  c.Add(Record(7, "request", "sign", "OK", {Entry("alice"), bob}));
  const auto& r = c.report();
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find("sequence 7: approval by bob for rq-"), std::string::npos)
      << r.problems[0];
  EXPECT_NE(r.problems[0].find("does not verify"), std::string::npos) << r.problems[0];
  ASSERT_EQ(r.executed.size(), 1u);
  EXPECT_EQ(r.executed[0].valid_signatures, 1u);
}

TEST_F(ApprovalEvidenceTest, SignatureByAnotherOfficersKeyIsAnError) {
  const auto ring = Keyring({"alice", "bob"});
  audit::ApprovalEvidenceChecker c(&ring);
  // "bob"'s statement, signed with alice's key.
  c.Add(Record(2, "request", "sign", "OK", {Entry("bob", KeyOf("alice"), digest_)}));
  ASSERT_EQ(c.report().problems.size(), 1u);
  EXPECT_NE(c.report().problems[0].find("approval by bob"), std::string::npos);
}

TEST_F(ApprovalEvidenceTest, OfficerAbsentFromThePolicyIsAnError) {
  const auto ring = Keyring({"alice", "bob"});  // carol is in no given policy
  audit::ApprovalEvidenceChecker c(&ring);
  c.Add(Record(9, "request", "sign", "OK", {Entry("alice"), Entry("carol")}));
  const auto& r = c.report();
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find("sequence 9: approval by carol"), std::string::npos);
  EXPECT_NE(r.problems[0].find("not an officer of any given policy"), std::string::npos)
      << r.problems[0];
}

TEST_F(ApprovalEvidenceTest, DigestNotMatchingIsAnError) {
  const auto ring = Keyring({"alice", "bob"});
  policy::Sha256Digest other = digest_;
  other[0] ^= 1;
  {
    // The entry names another digest than the one alice signed.
    std::string alice = Entry("alice");
    const std::string good = "sha256:" + audit::Hex(digest_);
    alice.replace(alice.find(good), good.size(), "sha256:" + audit::Hex(other));
    audit::ApprovalEvidenceChecker c(&ring);
    c.Add(Record(3, "request", "sign", "OK", {alice, Entry("bob")}));
    ASSERT_EQ(c.report().problems.size(), 1u);
    EXPECT_NE(c.report().problems[0].find("approval by alice"), std::string::npos);
    EXPECT_NE(c.report().problems[0].find("does not verify"), std::string::npos);
  }
  {
    // Both signatures are good, but over different request digests: they
    // cannot both be approvals of the one request.
    audit::ApprovalEvidenceChecker c(&ring);
    c.Add(Record(4, "request", "sign", "OK", {Entry("alice"), Entry("bob", KeyOf("bob"), other)}));
    ASSERT_EQ(c.report().problems.size(), 1u);
    EXPECT_NE(c.report().problems[0].find("approval by bob"), std::string::npos);
    EXPECT_NE(c.report().problems[0].find("earlier approvals"), std::string::npos)
        << c.report().problems[0];
  }
  {
    // A statement for another request id does not verify as this one's.
    audit::ApprovalEvidenceChecker c(&ring);
    c.Add(Record(5, "request", "sign", "OK",
                 {Entry("alice", KeyOf("alice"), digest_, policy::ApprovalDecision::kApprove,
                        "rq-ffffffffffffffffffffffffffffffff")}));
    ASSERT_EQ(c.report().problems.size(), 1u);
    EXPECT_NE(c.report().problems[0].find("does not verify"), std::string::npos);
  }
}

TEST_F(ApprovalEvidenceTest, RefusedVotesAreNotEvidence) {
  const auto ring = Keyring({"alice"});
  std::string forged = Entry("alice");
  forged.back() = forged.back() == '0' ? '1' : '0';
  audit::ApprovalEvidenceChecker c(&ring);
  c.Add(Record(1, "request", "submit_approval", "PERMISSION_DENIED",
               {forged, Entry("mallory", KeyOf("bob"), digest_)}));
  EXPECT_TRUE(c.report().ok()) << c.report().problems.front();
  EXPECT_EQ(c.report().refused_votes, 2u);
  EXPECT_TRUE(c.report().executed.empty());
}

TEST_F(ApprovalEvidenceTest, AnyOfAnOfficersKeysMayVerify) {
  // alice's key changed between policy versions: both policies are given.
  auto ring = Keyring({"alice", "bob"});
  PKey old_key = NewP256();
  ring["alice"].insert(ring["alice"].begin(), PublicKey(old_key.get()));
  audit::ApprovalEvidenceChecker c(&ring);
  c.Add(Record(1, "request", "sign", "OK",
               {Entry("alice", old_key.get(), digest_), Entry("alice"), Entry("bob")}));
  EXPECT_TRUE(c.report().ok()) << c.report().problems.front();
  EXPECT_EQ(c.report().valid, 3u);
}

TEST_F(ApprovalEvidenceTest, DenialsAndEd25519Keys) {
  PKey ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free);
  ASSERT_NE(ed, nullptr);
  auto ring = Keyring({"alice", "bob"});
  ring["dave"].push_back(PublicKey(ed.get()));
  audit::ApprovalEvidenceChecker c(&ring);
  c.Add(Record(1, "request", "sign", "OK",
               {Entry("alice"), Entry("dave", ed.get(), digest_),
                Entry("bob", KeyOf("bob"), digest_, policy::ApprovalDecision::kDeny)}));
  const auto& r = c.report();
  EXPECT_TRUE(r.ok()) << r.problems.front();
  ASSERT_EQ(r.executed.size(), 1u);
  EXPECT_EQ(r.executed[0].Summary(true),
            std::string(kRequest) +
                " sign release-demo@1: approved by alice, dave; denied by bob (3 valid "
                "signatures)");
}

TEST_F(ApprovalEvidenceTest, MalformedEntriesAndUnboundApprovals) {
  const auto ring = Keyring({"alice"});
  audit::ApprovalEvidenceChecker c(&ring);
  c.Add(Record(1, "request", "sign", "OK", {"alice approve"}));
  // A valid shape whose time is no statement time.
  std::string bad_time = Entry("alice");
  bad_time.replace(bad_time.find("2026-01-01T00:00:00Z"), 20, "2026-13-01T00:00:00Z");
  c.Add(Record(2, "request", "sign", "OK", {bad_time}));
  c.Add(Record(3, "request", "sign", "OK", {Entry("alice")}, /*request=*/""));
  const auto& r = c.report();
  ASSERT_EQ(r.problems.size(), 3u);
  EXPECT_NE(r.problems[0].find("sequence 1: approval entry 1 is malformed"), std::string::npos)
      << r.problems[0];
  EXPECT_NE(r.problems[1].find("not a valid statement"), std::string::npos) << r.problems[1];
  EXPECT_NE(r.problems[2].find("no quorum_request"), std::string::npos) << r.problems[2];
}

TEST_F(AuditVerifyTest, LogWithApprovalEvidenceVerifiesAndChecks) {
  PKey alice = NewP256();
  {
    auto log = Open(/*checkpoint_records=*/3);
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(AppendSync(*log, "before").ok());  // a record without quorum fields
    audit::RequestFields f;
    f.principal = "spiffe://dev.custos.test/builder";
    f.op = "sign";
    f.key = "release-demo@1";
    f.outcome = "OK";
    f.quorum_request = "rq-1";
    f.approvals = {"alice approve 2026-01-01T00:00:00Z sha256:" + std::string(64, '0') + " 3000"};
    std::promise<Result<void>> p;
    auto fut = p.get_future();
    log->Append(f, [&p](const Result<void>& r) { p.set_value(r); });
    ASSERT_TRUE(fut.get().ok());
  }
  auto r = Verify();
  ASSERT_TRUE(r.ok) << r.problem;
  std::ifstream in(path_);
  const auto unchecked = audit::CheckApprovalEvidence(in, nullptr);
  EXPECT_TRUE(unchecked.ok());
  ASSERT_EQ(unchecked.executed.size(), 1u);
  EXPECT_EQ(unchecked.executed[0].quorum_request, "rq-1");
  // "3000" is no signature of alice's: checked, it is named.
  audit::OfficerKeyring ring;
  {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    ASSERT_EQ(PEM_write_bio_PUBKEY(bio.get(), alice.get()), 1);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    auto key = policy::OfficerPublicKey::Parse(std::string_view(data, len));
    ASSERT_TRUE(std::holds_alternative<policy::OfficerPublicKey>(key));
    ring["alice"].push_back(std::get<policy::OfficerPublicKey>(key));
  }
  std::ifstream again(path_);
  const auto checked = audit::CheckApprovalEvidence(again, &ring);
  ASSERT_EQ(checked.problems.size(), 1u);
  EXPECT_NE(checked.problems[0].find("approval by alice for rq-1"), std::string::npos)
      << checked.problems[0];
}

}  // namespace
}  // namespace custos::service
