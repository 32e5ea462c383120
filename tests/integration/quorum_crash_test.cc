// Exactly-once execution of an approved request across a crash (issue 4):
// the second approval starts a release signature, custosd is killed while
// the HSM is inside C_Sign (stalled by tests/faultp11), and after a restart
// the request completes by itself, once: the requester collects a signature
// that openssl verifies, and the audit log holds exactly one successful
// execution record for it, which custos-audit verifies with its approvals.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace custos::testing {
namespace {
using namespace std::chrono_literals;

std::string Dump(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

long Counter(const std::string& stats_path, const std::string& function) {
  const std::string stats = ReadFile(stats_path);
  std::smatch m;
  if (std::regex_search(stats, m, std::regex("(^|\\n)" + function + "[ \\t]+([0-9]+)"))) {
    return std::stol(m[2].str());
  }
  return 0;
}

// Audit records about request `id` of `kind` (and outcome, if given).
int CountRecords(const std::string& log, const std::string& id, const std::string& kind,
                 const std::string& outcome = "") {
  int n = 0;
  std::size_t at = 0;
  while (at < log.size()) {
    std::size_t nl = log.find('\n', at);
    if (nl == std::string::npos) nl = log.size();
    const std::string line = log.substr(at, nl - at);
    at = nl + 1;
    if (line.find("\"quorum_request\":\"" + id + "\"") != std::string::npos &&
        line.find("\"kind\":\"" + kind + "\"") != std::string::npos &&
        line.find("\"op\":\"sign\"") != std::string::npos &&
        (outcome.empty() || line.find("\"outcome\":\"" + outcome + "\"") != std::string::npos)) {
      ++n;
    }
  }
  return n;
}

TEST(QuorumCrash, ApprovedSignatureExecutesOnceAcrossAKill) {
  Deployment d;
  TempDir work;
  const std::string control = d.dir() + "/faults.ctl";
  WriteFile(control, "");
  const std::vector<std::string> flags = {"--hsm.module", FAULTP11_MODULE_PATH};
  const std::map<std::string, std::string> env = {{"CUSTOS_FAULTP11_TARGET", SOFTHSM2_MODULE_PATH},
                                                  {"CUSTOS_FAULTP11_CONTROL", control}};
  ASSERT_TRUE(d.Start(flags, env)) << d.log();

  CommandResult r = d.Custos(
      "admin", {"keys", "create", "release-crash", "--type", "ec-p256", "--usage", "code-signing"});
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  const std::string file = work.path() + "/artifact";
  const std::string sig = work.path() + "/artifact.sig";
  const std::string pub = work.path() + "/release-crash.pem";
  WriteFile(file, "release 9.9\n");
  ASSERT_EQ(d.Custos("builder", {"keys", "pubkey", "release-crash", "--out", pub}).exit_code, 0);

  r = d.Custos("builder", {"sign", "--key", "release-crash", "--in", file, "--out", sig});
  ASSERT_EQ(r.exit_code, 6) << Dump(r);
  std::smatch m;
  const std::string all = r.out + r.err;
  ASSERT_TRUE(std::regex_search(all, m, std::regex("rq-[0-9a-f]{32}"))) << Dump(r);
  const std::string id = m.str();
  ASSERT_EQ(d.Officer("alice", {"approve", id, "--yes"}).exit_code, 0);

  // The second approval reaches the threshold; the signature it starts hangs
  // in the HSM, and custosd dies there.
  const long signs_before = Counter(control + ".stats", "C_Sign");
  std::this_thread::sleep_for(20ms);
  WriteFile(control, "stall C_Sign 60000\n");
  CommandResult bob;
  std::thread approver([&] { bob = d.Officer("bob", {"approve", id, "--yes"}); });
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (Counter(control + ".stats", "C_Sign") == signs_before &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(Counter(control + ".stats", "C_Sign"), signs_before)
      << "execution never reached C_Sign";
  ASSERT_TRUE(d.Kill());
  approver.join();
  EXPECT_NE(bob.exit_code, 0) << "the approval cannot have been answered: " << Dump(bob);
  // The crash came mid-execution: the execution's intent is on record, its
  // outcome is not.
  const std::string log_at_crash = ReadFile(d.dir() + "/state/audit.log");
  ASSERT_EQ(CountRecords(log_at_crash, id, "intent"), 1) << log_at_crash;
  ASSERT_EQ(CountRecords(log_at_crash, id, "request", "OK"), 0) << log_at_crash;

  // Restart with a healthy HSM: the approved request resumes by itself.
  WriteFile(control, "");
  ASSERT_TRUE(d.Start(flags, env)) << d.log();
  CommandResult wait =
      d.Custos("builder", {"request", "wait", id, "--timeout", "30s", "--out", sig});
  ASSERT_EQ(wait.exit_code, 0) << Dump(wait) << d.log();
  CommandResult verify =
      Exec({"openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, file});
  EXPECT_EQ(verify.exit_code, 0) << Dump(verify);

  // Bob's approval counted once; one successful execution is on record.
  CommandResult show = d.Custos("builder", {"request", "show", id, "--json"});
  EXPECT_NE(show.out.find("\"state\":\"executed\""), std::string::npos) << show.out;
  const int executed = CountRecords(ReadFile(d.dir() + "/state/audit.log"), id, "request", "OK");
  EXPECT_EQ(executed, 1) << "successful execution records for " << id;

  ASSERT_EQ(
      d.Custos("admin", {"keys", "pubkey", "audit", "--out", work.path() + "/audit.pem"}).exit_code,
      0);
  CommandResult audit =
      Exec({BinPath("custos-audit"), "verify", "--log", d.dir() + "/state/audit.log", "--pubkey",
            work.path() + "/audit.pem", "--policy", d.dir() + "/policy.txtpb"});
  EXPECT_EQ(audit.exit_code, 0) << Dump(audit);
  EXPECT_NE(audit.out.find(id + " sign release-crash@1: approved by alice, bob"), std::string::npos)
      << audit.out;
}

}  // namespace
}  // namespace custos::testing
