// AuditLog and the verifier in process: chaining across reopen, a torn last
// line cut at open, a tampered tail refused at open, checkpoints signed by an
// in-memory P-256 key and checked by VerifyLog, and the canonical encoding.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "custos/service/audit_format.h"
#include "custos/service/audit_log.h"
#include "custos/service/audit_verify.h"

namespace custos::service {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/custos-audit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/audit.log";
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
    ASSERT_EQ(EVP_PKEY_keygen_init(ctx), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1), 1);
    ASSERT_EQ(EVP_PKEY_keygen(ctx, &key_), 1);
    EVP_PKEY_CTX_free(ctx);
  }
  void TearDown() override {
    EVP_PKEY_free(key_);
    fs::remove_all(dir_);
  }

  // Signs the digest with the in-memory key, as the HSM would.
  CheckpointSigner Signer() {
    return CheckpointSigner{
        "ecdsa-p256-sha256",
        [this](std::span<const std::uint8_t> digest) -> Result<CheckpointSignature> {
          EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key_, nullptr);
          std::size_t len = 0;
          CheckpointSignature out;
          out.key = "audit@1";
          if (EVP_PKEY_sign_init(ctx) != 1 ||
              EVP_PKEY_sign(ctx, nullptr, &len, digest.data(), digest.size()) != 1) {
            EVP_PKEY_CTX_free(ctx);
            return Error{"sign"};
          }
          out.signature.resize(len);
          EVP_PKEY_sign(ctx, out.signature.data(), &len, digest.data(), digest.size());
          out.signature.resize(len);
          EVP_PKEY_CTX_free(ctx);
          return out;
        }};
  }

  std::unique_ptr<AuditLog> Open(std::size_t every = 3) {
    AuditOptions o;
    o.path = path_;
    o.checkpoint_records = every;
    auto log = AuditLog::Open(o, Signer(), logger_);
    EXPECT_TRUE(log.ok()) << log.error();
    return log.ok() ? std::move(log.value()) : nullptr;
  }

  static void AppendSync(AuditLog& log, const std::string& op) {
    audit::RequestFields f;
    f.principal = "tester \"quoted\" \xe2\x82\xac";
    f.op = op;
    f.outcome = "OK";
    std::promise<bool> done;
    log.Append(f, [&done](const Result<void>& r) { done.set_value(r.ok()); });
    EXPECT_TRUE(done.get_future().get());
  }

  audit::VerifyReport Verify(const std::string& text) {
    std::istringstream in(text);
    return audit::VerifyLog(in, key_, std::nullopt);
  }

  std::string dir_;
  std::string path_;
  EVP_PKEY* key_ = nullptr;
  Logger logger_{LogLevel::kWarn};
};

TEST_F(AuditLogTest, ChainsAcrossReopenAndVerifies) {
  {
    auto log = Open();
    for (int i = 0; i < 10; ++i) AppendSync(*log, "sign");
    EXPECT_TRUE(log->LatestCheckpoint().has_value());
  }
  {
    auto log = Open();
    for (int i = 0; i < 5; ++i) AppendSync(*log, "sign");
  }
  const auto r = Verify(ReadAll(path_));
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_GE(r.checkpoints, 4u);
  // Strings are pure ASCII in the canonical form.
  const std::string text = ReadAll(path_);
  EXPECT_NE(text.find(R"(tester \"quoted\" \u00e2\u0082\u00ac)"), std::string::npos);
}

TEST_F(AuditLogTest, TornLastLineIsCutAtOpen) {
  { auto log = Open(); }
  {
    std::ofstream out(path_, std::ios::app | std::ios::binary);
    out << R"({"seq":99,"prev":"00)";
  }
  EXPECT_FALSE(Verify(ReadAll(path_)).ok);
  {
    auto log = Open();
    AppendSync(*log, "sign");
  }
  const auto r = Verify(ReadAll(path_));
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_NE(ReadAll(path_).find("cut a torn last line"), std::string::npos);
}

TEST_F(AuditLogTest, TamperedTailRefusesToOpen) {
  { auto log = Open(); }
  std::string text = ReadAll(path_);
  const auto at = text.rfind("\"time\":\"");
  ASSERT_NE(at, std::string::npos);
  text[at + 9] = text[at + 9] == '1' ? '2' : '1';
  std::ofstream(path_, std::ios::binary | std::ios::trunc) << text;
  AuditOptions o;
  o.path = path_;
  auto log = AuditLog::Open(o, std::nullopt, logger_);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().find("does not match its hash"), std::string::npos) << log.error();
}

TEST_F(AuditLogTest, HashIsOverPrevAndCanonicalBody) {
  audit::RequestFields f;
  f.op = "ping";
  const std::string body = audit::RequestBody(1, audit::kZeroHash, "t", f);
  const audit::Hash h = audit::ChainHash(audit::kZeroHash, body);
  std::string line = audit::SealLine(body, h);
  ASSERT_EQ(line.back(), '\n');
  line.pop_back();
  auto parsed = audit::ParseLine(line);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->body, body);
  EXPECT_EQ(parsed->hash, h);
  // SHA-256(32 zero bytes || body), computed independently.
  std::string input(32, '\0');
  input += body;
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr);
  EXPECT_EQ(audit::Hex(h), audit::Hex({md, len}));
}

TEST_F(AuditLogTest, AppendAfterCloseFails) {
  auto log = Open();
  log->Close();
  audit::RequestFields f;
  bool ok = true;
  log->Append(f, [&ok](const Result<void>& r) { ok = r.ok(); });
  EXPECT_FALSE(ok);
}

}  // namespace
}  // namespace custos::service
