// The audit log end to end: a real custosd under signing load, then
// `custos-audit verify` on the untouched log (passes) and on tampered copies
// (fails, naming the right record): one flipped byte, a deleted record, two
// swapped records, and truncation back past the last checkpoint with that
// checkpoint pinned. Also: every client role can fetch the audit public key,
// `custos audit checkpoint` serves a checkpoint that is in the log, every
// request (also a refused and a malformed one) has a record, and export.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "audit_util.h"
#include "harness.h"

namespace custos::testing {
namespace {

std::string Join(const std::vector<std::string>& lines, std::size_t from, std::size_t to) {
  std::string out;
  for (std::size_t i = from; i < to && i < lines.size(); ++i) out += lines[i] + "\n";
  return out;
}

class AuditLog : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    d_ = new Deployment();
    ASSERT_TRUE(d_->Start({"--audit.checkpoint-records", "40"})) << d_->log();
    auto created = d_->Custos(
        "admin", {"keys", "create", "rel", "--type", "ec-p256", "--usage", "code-signing"});
    ASSERT_EQ(created.exit_code, 0) << created.err;
    for (const char* who : {"builder", "issuer", "admin"}) {
      auto pub = d_->Custos(
          who, {"keys", "pubkey", "audit", "--out", d_->dir() + "/audit-" + who + ".pem"});
      ASSERT_EQ(pub.exit_code, 0) << who << ": " << pub.err;
    }
    SignLoad load(d_->client_conf("builder"), "rel", 3, 8);
    load.Start();
    // Enough signatures to span several checkpoints (every 40 records); on a
    // slow (sanitizer, shared) machine that takes longer than 1.5 s.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    while (load.signed_digests().size() <= 150 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    load.Stop();
    signed_ = new std::vector<std::string>(load.signed_digests());
    ASSERT_GT(signed_->size(), 100u);
    // A refused request and a malformed frame are recorded too.
    auto denied = d_->Custos(
        "issuer", {"keys", "create", "nope", "--type", "ec-p256", "--usage", "code-signing"});
    ASSERT_EQ(denied.exit_code, 4);
    RawTls raw(d_->port(), {d_->dir() + "/clients/builder.crt", d_->dir() + "/clients/builder.key",
                            d_->dir() + "/pki/ca.crt"});
    ASSERT_TRUE(raw.ok()) << raw.error();
    ASSERT_TRUE(raw.Write(Frame(std::string("\xff\xff\xff", 3))));
    ASSERT_TRUE(raw.ReadFrame(std::chrono::milliseconds(5000)).has_value());

    auto cp = d_->Custos("builder", {"audit", "checkpoint", "--out", d_->dir() + "/cp.json"});
    ASSERT_EQ(cp.exit_code, 0) << cp.err;
    ASSERT_EQ(d_->Stop(), 0) << d_->log();
    log_ = new std::string(ReadFile(d_->dir() + "/state/audit.log"));
  }
  static void TearDownTestSuite() {
    delete d_;
    delete signed_;
    delete log_;
  }

  // Runs custos-audit verify on `text`; returns the result.
  static CommandResult Verify(const std::string& text, const std::string& pin = "") {
    static int n = 0;
    const std::string path = d_->dir() + "/copy-" + std::to_string(++n) + ".log";
    WriteFile(path, text);
    std::vector<std::string> argv = {
        BinPath("custos-audit"),         "verify", "--log", path, "--pubkey",
        d_->dir() + "/audit-builder.pem"};
    if (!pin.empty()) {
      argv.push_back("--checkpoint");
      argv.push_back(pin);
    }
    return Exec(argv);
  }

  // The 0-based index of a "request" line well inside the log.
  static std::size_t MiddleRequest(const std::vector<std::string>& lines) {
    for (std::size_t i = lines.size() / 2; i + 2 < lines.size(); ++i) {
      if (Field(lines[i], "kind") == "request" && Field(lines[i + 1], "kind") == "request") {
        return i;
      }
    }
    return 0;
  }

  static Deployment* d_;
  static std::vector<std::string>* signed_;
  static std::string* log_;
};
Deployment* AuditLog::d_ = nullptr;
std::vector<std::string>* AuditLog::signed_ = nullptr;
std::string* AuditLog::log_ = nullptr;

TEST_F(AuditLog, UntouchedLogVerifies) {
  auto r = Verify(*log_);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.out;
  auto pinned = Verify(*log_, d_->dir() + "/cp.json");
  EXPECT_EQ(pinned.exit_code, 0) << pinned.out << pinned.err;
}

TEST_F(AuditLog, EverySignatureHasItsRecord) {
  const auto outcomes = OutcomesByDigest(*log_);
  for (const auto& op : *signed_) {
    auto it = outcomes.find(op);
    ASSERT_NE(it, outcomes.end()) << "no audit record for a signature the client received";
    EXPECT_EQ(it->second, "OK");
  }
}

TEST_F(AuditLog, RefusedAndMalformedRequestsAreRecorded) {
  bool denied = false;
  bool malformed = false;
  for (const auto& line : Lines(*log_)) {
    if (Field(line, "op") == "create_key" && Field(line, "outcome") == "PERMISSION_DENIED" &&
        Field(line, "principal") == "spiffe://dev.custos.test/issuer") {
      denied = true;
    }
    if (Field(line, "kind") == "request" && line.find("\"op\":\"\"") != std::string::npos &&
        Field(line, "outcome") == "INVALID_ARGUMENT" && !Field(line, "op_sha256").empty()) {
      malformed = true;
    }
  }
  EXPECT_TRUE(denied);
  EXPECT_TRUE(malformed);
}

// The value of a number field in a log line, or -1 when absent.
long long NumberField(const std::string& line, const std::string& name) {
  const std::string key = "\"" + name + "\":";
  const auto at = line.find(key);
  if (at == std::string::npos) return -1;
  return std::stoll(line.substr(at + key.size()));
}

// custosd's request log line splits latency_us into its steps
// (docs/operations.md "Logs"); the audit step is there for every signature.
TEST_F(AuditLog, RequestLogLineSplitsLatencyIntoSteps) {
  int signs = 0;
  bool malformed_seen = false;
  for (const auto& line : Lines(d_->log())) {
    if (line.find("\"event\":\"request\"") == std::string::npos) continue;
    const long long latency = NumberField(line, "latency_us");
    ASSERT_GE(latency, 0) << line;
    if (Field(line, "op") == "sign" && Field(line, "status") == "OK") {
      ++signs;
      const long long queued = NumberField(line, "queued_us");
      const long long exec = NumberField(line, "exec_us");
      const long long audit = NumberField(line, "audit_us");
      const long long back = NumberField(line, "return_us");
      ASSERT_GE(queued, 0) << line;
      ASSERT_GE(exec, 0) << line;
      ASSERT_GE(audit, 0) << line;
      ASSERT_GE(back, 0) << line;
      // The steps add up to latency_us (each is truncated to whole
      // microseconds on its own).
      EXPECT_LE(queued + exec + audit + back, latency) << line;
      EXPECT_GE(queued + exec + audit + back + 4, latency) << line;
    }
    if (Field(line, "status") == "INVALID_ARGUMENT" &&
        line.find("\"op\":\"\"") != std::string::npos) {
      // The malformed frame never reached a worker.
      malformed_seen = true;
      EXPECT_EQ(NumberField(line, "queued_us"), -1) << line;
      EXPECT_EQ(NumberField(line, "exec_us"), -1) << line;
    }
  }
  EXPECT_GT(signs, 100);
  EXPECT_TRUE(malformed_seen);
}

TEST_F(AuditLog, CheckpointFromDaemonIsInTheLog) {
  std::string pin = ReadFile(d_->dir() + "/cp.json");
  ASSERT_FALSE(pin.empty());
  pin.pop_back();  // newline
  EXPECT_EQ(Field(pin, "kind"), "checkpoint");
  EXPECT_NE(log_->find(pin + "\n"), std::string::npos);
}

TEST_F(AuditLog, FlippedByteNamesTheRecord) {
  auto lines = Lines(*log_);
  const std::size_t i = MiddleRequest(lines);
  ASSERT_GT(i, 0u);
  // Flip one bit of a byte inside the principal.
  const auto at = lines[i].find("dev.custos.test");
  ASSERT_NE(at, std::string::npos);
  lines[i][at] = static_cast<char>(lines[i][at] ^ 0x01);
  auto r = Verify(Join(lines, 0, lines.size()));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string want = "line " + std::to_string(i + 1) + " (sequence " + std::to_string(i + 1);
  EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("altered"), std::string::npos) << r.err;
}

TEST_F(AuditLog, DeletedRecordIsNamed) {
  auto lines = Lines(*log_);
  const std::size_t i = MiddleRequest(lines);
  lines.erase(lines.begin() + static_cast<long>(i));
  auto r = Verify(Join(lines, 0, lines.size()));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string want = "line " + std::to_string(i + 1) + " (sequence " + std::to_string(i + 1) +
                           "): found sequence " + std::to_string(i + 2);
  EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
}

TEST_F(AuditLog, SwappedRecordsAreNamed) {
  auto lines = Lines(*log_);
  const std::size_t i = MiddleRequest(lines);
  std::swap(lines[i], lines[i + 1]);
  auto r = Verify(Join(lines, 0, lines.size()));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string want = "line " + std::to_string(i + 1) + " (sequence " + std::to_string(i + 1) +
                           "): found sequence " + std::to_string(i + 2);
  EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
}

TEST_F(AuditLog, InsertedRecordIsNamed) {
  auto lines = Lines(*log_);
  const std::size_t i = MiddleRequest(lines);
  lines.insert(lines.begin() + static_cast<long>(i), lines[i]);
  auto r = Verify(Join(lines, 0, lines.size()));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("line " + std::to_string(i + 2) + " "), std::string::npos) << r.err;
}

TEST_F(AuditLog, TruncationPastThePinnedCheckpointIsDetected) {
  const auto lines = Lines(*log_);
  // The last checkpoint in the log, pinned as a verifier would have pinned it.
  std::size_t last = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (Field(lines[i], "kind") == "checkpoint") last = i;
  }
  ASSERT_GT(last, 0u);
  const std::string pin = d_->dir() + "/last-cp.json";
  WriteFile(pin, lines[last] + "\n");
  EXPECT_EQ(Verify(*log_, pin).exit_code, 0);
  // Cut the log after "the last checkpoint minus one record".
  auto r = Verify(Join(lines, 0, last), pin);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("before the pinned checkpoint at sequence " + std::to_string(last + 1)),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;

  // The same with the checkpoint fetched from the running daemon.
  std::string fetched = ReadFile(d_->dir() + "/cp.json");
  auto seq = std::stoull(fetched.substr(fetched.find("\"seq\":") + 6));
  auto r2 = Verify(Join(lines, 0, seq - 1), d_->dir() + "/cp.json");
  EXPECT_EQ(r2.exit_code, 1) << r2.out << r2.err;
  EXPECT_NE(r2.err.find("truncated"), std::string::npos) << r2.err;
}

TEST_F(AuditLog, WrongPublicKeyFails) {
  auto other = Exec({"openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                     d_->dir() + "/other.key"});
  ASSERT_EQ(other.exit_code, 0);
  ASSERT_EQ(Exec({"openssl", "ec", "-in", d_->dir() + "/other.key", "-pubout", "-out",
                  d_->dir() + "/other.pem"})
                .exit_code,
            0);
  WriteFile(d_->dir() + "/w.log", *log_);
  auto r = Exec({BinPath("custos-audit"), "verify", "--log", d_->dir() + "/w.log", "--pubkey",
                 d_->dir() + "/other.pem"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("signature does not verify"), std::string::npos) << r.err;
}

TEST_F(AuditLog, ExportWritesJsonLines) {
  WriteFile(d_->dir() + "/e.log", *log_);
  auto r = Exec({BinPath("custos-audit"), "export", "--log", d_->dir() + "/e.log"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = Lines(r.out);
  EXPECT_EQ(lines.size(), Lines(*log_).size());
  for (const auto& l : lines) {
    ASSERT_FALSE(l.empty());
    EXPECT_EQ(l.front(), '{');
    EXPECT_EQ(l.back(), '}');
  }
}

}  // namespace
}  // namespace custos::testing
