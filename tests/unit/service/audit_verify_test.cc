// The audit log verifier (audit_verify.h) on logs written by AuditLog under
// concurrent appends, then tampered with: the first bad record is named by
// line and sequence. Checkpoints are signed with a real OpenSSL P-256 key; the
// HSM-signed path is covered by tests/integration/audit_*_test.cc.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

}  // namespace
}  // namespace custos::service
