// End to end: keys of every type created through `custos keys create`, files
// signed through `custos sign`, signatures verified by OpenSSL's own CLI
// against the public key from `custos keys pubkey`, and the token inspected
// with OpenSC's pkcs11-tool.
#include <gtest/gtest.h>

#include <sched.h>

#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

namespace custos::testing {
namespace {

// custosd's threads as the kernel sees them: name -> scheduling policies (one
// per thread of that name), from /proc/PID/task/TID/stat (policy is field 41).
std::multimap<std::string, int> ThreadsOf(pid_t pid) {
  std::multimap<std::string, int> threads;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    const std::string stat = ReadFile(task.path().string() + "/stat");
    const auto open = stat.find('(');
    const auto close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));  // field 3 onwards
    std::string field;
    for (int i = 3; i <= 41 && rest >> field; ++i) {
    }
    threads.emplace(stat.substr(open + 1, close - open - 1), std::stoi(field));
  }
  return threads;
}

class E2eSign : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    deployment_ = new Deployment();
    ASSERT_TRUE(deployment_->Start()) << deployment_->log();
  }
  static void TearDownTestSuite() {
    // A graceful shutdown exits 0 (under ASan this also means no leak or UB
    // report from the daemon).
    EXPECT_EQ(deployment_->Stop(), 0) << deployment_->log();
    delete deployment_;
    deployment_ = nullptr;
  }
  static Deployment* deployment_;
};
Deployment* E2eSign::deployment_ = nullptr;

struct Case {
  std::string key_type;
  std::string algorithm;
  std::vector<std::string> dgst_flags;  // empty: verify with pkeyutl -rawin (Ed25519)
};

const std::vector<Case> kCases = {
    {"ec-p256", "ecdsa-p256-sha256", {"-sha256"}},
    {"ec-p384", "ecdsa-p384-sha384", {"-sha384"}},
    {"rsa-2048", "rsa-pkcs1-sha256", {"-sha256"}},
    {"rsa-2048", "rsa-pkcs1-sha384", {"-sha384"}},
    {"rsa-2048", "rsa-pkcs1-sha512", {"-sha512"}},
    {"rsa-3072",
     "rsa-pss-sha256",
     {"-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"}},
    {"rsa-3072",
     "rsa-pss-sha384",
     {"-sha384", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"}},
    {"rsa-4096",
     "rsa-pss-sha512",
     {"-sha512", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"}},
    {"rsa-4096", "rsa-pkcs1-sha256", {"-sha256"}},
    {"ed25519", "ed25519", {}},
};

std::string KeyNameFor(const std::string& key_type) {
  std::string name = "it-" + key_type;
  return name;
}

CommandResult OpensslVerify(const Case& c, const std::string& pub, const std::string& file,
                            const std::string& sig) {
  if (c.dgst_flags.empty()) {
    return Exec({"openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", file,
                 "-sigfile", sig});
  }
  std::vector<std::string> argv = {"openssl", "dgst"};
  argv.insert(argv.end(), c.dgst_flags.begin(), c.dgst_flags.end());
  argv.insert(argv.end(), {"-verify", pub, "-signature", sig, file});
  return Exec(argv);
}

TEST_F(E2eSign, EveryAlgorithmVerifiesWithOpenssl) {
  Deployment& d = *deployment_;
  TempDir work;
  const std::string file = work.path() + "/artifact.bin";
  std::string content;
  for (int i = 0; i < 1500; ++i) content += "custos artifact line " + std::to_string(i) + "\n";
  WriteFile(file, content);
  const std::string tampered = work.path() + "/tampered.bin";
  WriteFile(tampered, content + "x");

  std::vector<std::string> created;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.algorithm + " on " + c.key_type);
    const std::string key = KeyNameFor(c.key_type);
    if (std::find(created.begin(), created.end(), key) == created.end()) {
      CommandResult r = d.Custos(
          "admin", {"keys", "create", key, "--type", c.key_type, "--usage", "code-signing"});
      ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
      created.push_back(key);
      CommandResult pub =
          d.Custos("builder", {"keys", "pubkey", key, "--out", work.path() + "/" + key + ".pem"});
      ASSERT_EQ(pub.exit_code, 0) << pub.out << pub.err;
    }
    const std::string pub = work.path() + "/" + key + ".pem";
    const std::string sig = work.path() + "/" + c.algorithm + ".sig";
    CommandResult s = d.Custos(
        "builder", {"sign", "--key", key, "--algorithm", c.algorithm, "--in", file, "--out", sig});
    ASSERT_EQ(s.exit_code, 0) << s.out << s.err;

    CommandResult v = OpensslVerify(c, pub, file, sig);
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    // dgst says "Verified OK", pkeyutl "Signature Verified Successfully".
    EXPECT_TRUE(v.out.find("Verified OK") != std::string::npos ||
                v.out.find("Signature Verified Successfully") != std::string::npos)
        << "openssl did not accept the signature: " << v.out << v.err;

    CommandResult bad = OpensslVerify(c, pub, tampered, sig);
    EXPECT_NE(bad.exit_code, 0) << "a tampered file verified: " << bad.out;

    CommandResult cv = d.Custos("builder", {"verify", "--key", key, "--algorithm", c.algorithm,
                                            "--in", file, "--sig", sig});
    EXPECT_EQ(cv.exit_code, 0) << cv.out << cv.err;
    CommandResult cbad = d.Custos("builder", {"verify", "--key", key, "--algorithm", c.algorithm,
                                              "--in", tampered, "--sig", sig});
    EXPECT_EQ(cbad.exit_code, 1) << "custos verify must exit 1 on a bad signature: " << cbad.out
                                 << cbad.err;
  }
}

TEST_F(E2eSign, EcdsaDigestVerifiesWithPkeyutl) {
  Deployment& d = *deployment_;
  TempDir work;
  const std::string file = work.path() + "/a.txt";
  WriteFile(file, "hello from the pipeline\n");
  ASSERT_EQ(d.Custos("admin", {"keys", "create", "pkeyutl-p256", "--type", "ec-p256", "--usage",
                               "code-signing"})
                .exit_code,
            0);
  // The algorithm is implied by an EC key's type: the CLI names it on the wire.
  CommandResult s =
      d.Custos("builder", {"sign", "--key", "pkeyutl-p256", "--in", file, "--out", file + ".sig"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  ASSERT_EQ(
      d.Custos("builder", {"keys", "pubkey", "pkeyutl-p256", "--out", file + ".pem"}).exit_code, 0);
  CommandResult dg = Exec({"openssl", "dgst", "-sha256", "-binary", "-out", file + ".dgst", file});
  ASSERT_EQ(dg.exit_code, 0);
  CommandResult v = Exec({"openssl", "pkeyutl", "-verify", "-pubin", "-inkey", file + ".pem", "-in",
                          file + ".dgst", "-sigfile", file + ".sig"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("Signature Verified Successfully"), std::string::npos) << v.out;
}

TEST_F(E2eSign, RsaKeyNeedsAnExplicitAlgorithm) {
  Deployment& d = *deployment_;
  TempDir work;
  WriteFile(work.path() + "/f", "x");
  ASSERT_EQ(d.Custos("admin", {"keys", "create", "rsa-explicit", "--type", "rsa-2048", "--usage",
                               "code-signing"})
                .exit_code,
            0);
  CommandResult s = d.Custos("builder", {"sign", "--key", "rsa-explicit", "--in",
                                         work.path() + "/f", "--out", work.path() + "/f.sig"});
  EXPECT_EQ(s.exit_code, 2) << s.out << s.err;
  EXPECT_NE(s.err.find("--algorithm"), std::string::npos) << s.err;
}

TEST_F(E2eSign, PrivateKeysOnTokenAreSensitiveAndNeverExtractable) {
  Deployment& d = *deployment_;
  ASSERT_EQ(d.Custos("admin", {"keys", "create", "inspect-me", "--type", "ec-p256", "--usage",
                               "code-signing"})
                .exit_code,
            0);
  CommandResult r =
      Exec({"pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH, "--token-label", "custos-dev",
            "--login", "--pin", d.user_pin(), "--list-objects", "--type", "privkey"},
           {{"SOFTHSM2_CONF", d.softhsm_conf()}});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // Every private key object pkcs11-tool lists must say sensitive, always
  // sensitive and never extractable, and none may be plainly "extractable".
  std::regex block("Private Key Object[^\\n]*\\n((?:[ \\t]+[^\\n]*\\n?)*)");
  int keys = 0;
  bool saw_inspect_me = false;
  for (std::sregex_iterator it(r.out.begin(), r.out.end(), block), end; it != end; ++it) {
    const std::string body = (*it)[1].str();
    ++keys;
    if (body.find("custos:inspect-me@1") != std::string::npos) saw_inspect_me = true;
    std::smatch access;
    ASSERT_TRUE(std::regex_search(body, access, std::regex("Access:[ \\t]*([^\\n]*)"))) << body;
    const std::string flags = access[1].str();
    EXPECT_NE(flags.find("always sensitive"), std::string::npos) << body;
    EXPECT_NE(flags.find("never extractable"), std::string::npos) << body;
    EXPECT_EQ(std::regex_search(flags, std::regex("(^|, )extractable")), false) << body;
  }
  EXPECT_GE(keys, 1) << r.out;
  EXPECT_TRUE(saw_inspect_me) << "label custos:inspect-me@1 not listed:\n" << r.out;
}

// docs/operations.md "Threads": the event loop and the audit writer run under
// SCHED_BATCH by default, the HSM workers under the normal policy, and every
// thread says what it is.
TEST_F(E2eSign, ThreadsAreNamedAndOnlyNetworkAndAuditAreBatch) {
  const auto threads = ThreadsOf(deployment_->pid());
  std::string all;
  for (const auto& [name, policy] : threads) all += name + ":" + std::to_string(policy) + " ";
  ASSERT_EQ(threads.count("custosd"), 1u) << all;  // the main thread runs the event loop
  EXPECT_EQ(threads.find("custosd")->second, SCHED_BATCH) << all;
  ASSERT_EQ(threads.count("custosd-audit"), 1u) << all;
  EXPECT_EQ(threads.find("custosd-audit")->second, SCHED_BATCH) << all;
  EXPECT_GE(threads.count("custosd-hsm"), 1u) << all;
  for (const auto& [name, policy] : threads) {
    if (name != "custosd" && name != "custosd-audit") {
      EXPECT_EQ(policy, SCHED_OTHER) << name << " in " << all;
    }
  }
  EXPECT_NE(deployment_->log().find("\"io_scheduling\":\"batch\""), std::string::npos);
}

TEST(E2eSignThreads, NormalSchedulingOnRequestAndSigningStillVerifies) {
  Deployment d;
  ASSERT_TRUE(d.Start({"--server.io-scheduling", "normal", "--server.workers", "3"})) << d.log();
  const auto threads = ThreadsOf(d.pid());
  std::string all;
  for (const auto& [name, policy] : threads) all += name + ":" + std::to_string(policy) + " ";
  EXPECT_EQ(threads.count("custosd-hsm"), 3u) << all;
  for (const auto& [name, policy] : threads)
    EXPECT_EQ(policy, SCHED_OTHER) << name << " in " << all;

  TempDir work;
  WriteFile(work.path() + "/f", "normal scheduling\n");
  ASSERT_EQ(
      d.Custos("admin", {"keys", "create", "sched", "--type", "ec-p256", "--usage", "code-signing"})
          .exit_code,
      0);
  CommandResult s = d.Custos("builder", {"sign", "--key", "sched", "--in", work.path() + "/f",
                                         "--out", work.path() + "/f.sig"});
  ASSERT_EQ(s.exit_code, 0) << s.out << s.err;
  CommandResult pub =
      d.Custos("builder", {"keys", "pubkey", "sched", "--out", work.path() + "/pub.pem"});
  ASSERT_EQ(pub.exit_code, 0) << pub.out << pub.err;
  CommandResult v = Exec({"openssl", "dgst", "-sha256", "-verify", work.path() + "/pub.pem",
                          "-signature", work.path() + "/f.sig", work.path() + "/f"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("Verified OK"), std::string::npos) << v.out;
  EXPECT_EQ(d.Stop(), 0) << d.log();
}

}  // namespace
}  // namespace custos::testing
