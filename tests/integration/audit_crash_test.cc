// Crash safety of the audit log: custosd is killed with SIGKILL at random
// moments during concurrent signing load, 20+ times. After each restart the
// log verifies (a torn last line is cut at start) and every signature a
// client received has its record (same trace id and request digest): a
// response leaves only after its record is durable.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "audit_helpers.h"
#include "harness.h"

namespace custos::testing {
namespace {

using namespace std::chrono_literals;

TEST(AuditCrash, KillNineDuringLoadLosesNoAcknowledgedRecord) {
  Deployment d;
  WriteFile(d.dir() + "/custosd.conf",
            ReadFile(d.dir() + "/custosd.conf") + "\n[audit]\ncheckpoint-records = 50\n");
  ASSERT_TRUE(d.Start()) << d.log();
  ASSERT_EQ(d.Custos("admin", {"keys", "create", "crash-sign", "--type", "ec-p256", "--usage",
                               "code-signing"})
                .exit_code,
            0);
  ASSERT_EQ(
      d.Custos("builder", {"keys", "pubkey", "audit", "--out", d.dir() + "/audit.pem"}).exit_code,
      0);
  const std::string log = d.dir() + "/state/audit.log";
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pause_ms(20, 400);

  constexpr int kKills = 20;
  std::vector<Received> all;
  std::map<std::string, int> failures;
  const auto started = std::chrono::steady_clock::now();
  for (int k = 0; k < kKills; ++k) {
    SignLoad load(d, "crash-sign", "k" + std::to_string(k), 3, 8);
    // Kill at a random moment once signing is under way (connecting takes
    // longer under ASan).
    const auto wait_until = std::chrono::steady_clock::now() + 5s;
    while (load.received_count() == 0 && std::chrono::steady_clock::now() < wait_until) {
      std::this_thread::sleep_for(5ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    ASSERT_TRUE(d.running()) << "custosd died by itself before kill " << k;
    ASSERT_TRUE(d.Kill());
    load.Stop();
    auto got = load.received();
    all.insert(all.end(), got.begin(), got.end());
    for (const auto& [what, n] : load.failures()) failures[what] += n;
    if (!d.Start()) {
      const std::string log = d.log();
      FAIL() << "restart " << k << " failed; the end of custosd's log:\n"
             << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
    }
  }
  ASSERT_EQ(d.Stop(), 0) << d.log();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 120s);
  std::string summary;
  for (const auto& [what, n] : failures) summary += what + " x" + std::to_string(n) + "; ";
  ASSERT_GT(all.size(), 100u) << "too little load to mean anything; failures: " << summary;

  auto verify =
      Exec({BinPath("custos-audit"), "verify", "--log", log, "--pubkey", d.dir() + "/audit.pem"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

  std::map<std::string, std::string> by_trace;
  std::size_t opened = 0, torn = 0;
  for (const auto& l : ReadLines(log)) {
    if (Field(l, "kind") == "request" && Field(l, "outcome") == "OK") {
      by_trace[Field(l, "trace_id")] = Field(l, "op_sha256");
    }
    if (Field(l, "op") == "audit_opened") {
      ++opened;
      torn += l.find("cut a torn last line") != std::string::npos;
    }
  }
  // custos-init opens the log once (to record the dev CA hierarchy), custosd
  // at its first start and after every kill.
  EXPECT_EQ(opened, static_cast<std::size_t>(kKills + 2));
  std::size_t missing = 0;
  for (const auto& r : all) {
    auto it = by_trace.find(r.trace_id);
    if (it == by_trace.end() || it->second != r.op_sha256) {
      if (++missing <= 5) ADD_FAILURE() << "signature without its audit record: " << r.trace_id;
    }
  }
  EXPECT_EQ(missing, 0u) << "of " << all.size() << " signatures received";
  std::printf("%zu signatures received over %d kills (%zu torn tails cut); failures: %s\n",
              all.size(), kKills, torn, summary.c_str());
}

}  // namespace
}  // namespace custos::testing
