// HSM faults through our fault-injecting PKCS#11 module (tests/faultp11),
// which forwards to SoftHSM: sessions invalidated, token logged out, device
// removed and back, a stalled call, and a key swapped behind custosd's back.
// custosd keeps serving or answers UNAVAILABLE while the fault lasts, heals by
// itself within seconds, and never signs with the wrong key.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include "harness.h"

namespace custos::testing {
namespace {
using namespace std::chrono_literals;

class HsmFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    control_ = d_.dir() + "/faults.ctl";
    WriteFile(control_, "");
    ASSERT_TRUE(d_.Start(
        {"--hsm.module", FAULTP11_MODULE_PATH},
        {{"CUSTOS_FAULTP11_TARGET", SOFTHSM2_MODULE_PATH}, {"CUSTOS_FAULTP11_CONTROL", control_}}))
        << d_.log();
    CommandResult r = d_.Custos(
        "admin", {"keys", "create", "fault-key", "--type", "ec-p256", "--usage", "code-signing"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    file_ = work_.path() + "/artifact";
    WriteFile(file_, "an artifact to sign\n");
    pub_ = work_.path() + "/fault-key.pem";
    ASSERT_EQ(d_.Custos("builder", {"keys", "pubkey", "fault-key", "--out", pub_}).exit_code, 0);
  }

  void SetFault(const std::string& text) {
    // A new mtime per write: the module re-reads the file when it changes.
    std::this_thread::sleep_for(20ms);
    WriteFile(control_, text);
  }

  CommandResult Sign(const std::string& sig) {
    return d_.Custos("builder", {"sign", "--key", "fault-key", "--algorithm", "ecdsa-p256-sha256",
                                 "--in", file_, "--out", sig});
  }

  bool VerifiesWithOriginalKey(const std::string& sig) {
    CommandResult v =
        Exec({"openssl", "dgst", "-sha256", "-verify", pub_, "-signature", sig, file_});
    return v.exit_code == 0;
  }

  // Signs until it works or the budget runs out; returns the seconds it took.
  double SignUntilHealed(const std::string& sig, std::chrono::seconds budget) {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < budget) {
      if (Sign(sig).exit_code == 0) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
      std::this_thread::sleep_for(200ms);
    }
    return -1;
  }

  long Counter(const std::string& function) {
    std::string stats = ReadFile(control_ + ".stats");
    std::smatch m;
    if (std::regex_search(stats, m, std::regex("(^|\\n)" + function + "[ \\t]+([0-9]+)"))) {
      return std::stol(m[2].str());
    }
    return 0;
  }

  Deployment d_;
  TempDir work_;
  std::string control_, file_, pub_;
};

TEST_F(HsmFaults, SessionsClosedUnderneathHealTransparently) {
  ASSERT_EQ(Sign(work_.path() + "/before.sig").exit_code, 0);
  SetFault("closeall\n");
  const std::string sig = work_.path() + "/after.sig";
  CommandResult r = Sign(sig);
  EXPECT_EQ(r.exit_code, 0) << "sign after sessions were closed: " << r.err << "\n" << d_.log();
  EXPECT_TRUE(VerifiesWithOriginalKey(sig));
}

TEST_F(HsmFaults, TokenLoggedOutHealsTransparently) {
  ASSERT_EQ(Sign(work_.path() + "/before.sig").exit_code, 0);
  SetFault("logout\n");
  const std::string sig = work_.path() + "/after.sig";
  CommandResult r = Sign(sig);
  EXPECT_EQ(r.exit_code, 0) << r.err << "\n" << d_.log();
  EXPECT_TRUE(VerifiesWithOriginalKey(sig));
}

TEST_F(HsmFaults, InvalidSessionHandleOnSignIsRetried) {
  SetFault("fail C_Sign CKR_SESSION_HANDLE_INVALID count=1\n");
  const std::string sig = work_.path() + "/s.sig";
  CommandResult r = Sign(sig);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(VerifiesWithOriginalKey(sig));
}

TEST_F(HsmFaults, DeviceRemovedThenBack) {
  ASSERT_EQ(Sign(work_.path() + "/before.sig").exit_code, 0);
  SetFault("removed\n");
  CommandResult during = Sign(work_.path() + "/during.sig");
  EXPECT_EQ(during.exit_code, 4) << during.out << during.err;
  EXPECT_NE(during.err.find("UNAVAILABLE"), std::string::npos) << during.err;
  EXPECT_TRUE(during.err.find("CKR_DEVICE_REMOVED") != std::string::npos ||
              during.err.find("CKR_TOKEN_NOT_PRESENT") != std::string::npos ||
              during.err.find("CKR_SESSION_HANDLE_INVALID") != std::string::npos)
      << during.err;
  // Health checks keep working while the HSM is gone.
  EXPECT_EQ(d_.Custos("builder", {"ping"}).exit_code, 0);

  SetFault("");
  const std::string sig = work_.path() + "/after.sig";
  const double healed_in = SignUntilHealed(sig, 15s);
  ASSERT_GE(healed_in, 0) << "custosd did not recover after the device came back\n" << d_.log();
  EXPECT_LT(healed_in, 10.0);
  EXPECT_TRUE(VerifiesWithOriginalKey(sig));
  EXPECT_TRUE(d_.running());
}

TEST_F(HsmFaults, StalledHsmDoesNotBlockOtherWork) {
  SetFault("stall C_Sign 4000 count=1\n");
  // One signature waits on the stalled call; meanwhile pings are answered.
  std::thread slow([this] { Sign(work_.path() + "/slow.sig"); });
  std::this_thread::sleep_for(300ms);
  const auto start = std::chrono::steady_clock::now();
  CommandResult ping = d_.Custos("builder", {"ping"});
  const auto took = std::chrono::steady_clock::now() - start;
  slow.join();
  EXPECT_EQ(ping.exit_code, 0) << ping.err;
  EXPECT_LT(took, 3s) << "ping waited for the stalled HSM call";
  EXPECT_EQ(Sign(work_.path() + "/later.sig").exit_code, 0);
}

TEST_F(HsmFaults, KeyHandlesAreCachedNotSearchedPerSignature) {
  ASSERT_EQ(Sign(work_.path() + "/warm.sig").exit_code, 0);
  const long finds_before = Counter("C_FindObjectsInit");
  const long signs_before = Counter("C_Sign");
  for (int i = 0; i < 10; ++i) ASSERT_EQ(Sign(work_.path() + "/n.sig").exit_code, 0);
  EXPECT_GE(Counter("C_Sign") - signs_before, 10);
  EXPECT_EQ(Counter("C_FindObjectsInit"), finds_before)
      << "the token was searched on the signing path";
}

TEST_F(HsmFaults, KeySwappedWhileRemovedIsNeverUsed) {
  ASSERT_EQ(Sign(work_.path() + "/before.sig").exit_code, 0);
  CommandResult show = d_.Custos("admin", {"keys", "show", "fault-key", "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  std::smatch id;
  ASSERT_TRUE(std::regex_search(show.out, id, std::regex("\"token_id\"\\s*:\\s*\"([0-9a-f]+)\"")))
      << show.out;
  const std::string label = "custos:fault-key@1";

  SetFault("removed\n");
  // Behind custosd's back: replace the key pair with a different one under
  // the same label and id, as a confused operator or an attacker might.
  const std::map<std::string, std::string> env = {{"SOFTHSM2_CONF", d_.softhsm_conf()}};
  const std::vector<std::string> base = {"pkcs11-tool",   "--module",   SOFTHSM2_MODULE_PATH,
                                         "--token-label", "custos-dev", "--login",
                                         "--pin",         d_.user_pin()};
  for (const char* type : {"privkey", "pubkey"}) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), {"--delete-object", "--type", type, "--id", id[1].str()});
    CommandResult del = Exec(argv, env);
    ASSERT_EQ(del.exit_code, 0) << del.out << del.err;
  }
  std::vector<std::string> gen = base;
  gen.insert(gen.end(), {"--keypairgen", "--key-type", "EC:prime256v1", "--label", label, "--id",
                         id[1].str(), "--sensitive"});
  CommandResult g = Exec(gen, env);
  ASSERT_EQ(g.exit_code, 0) << g.out << g.err;

  SetFault("");
  // From now on custosd must refuse: the key under that label and id is not
  // the key it created. No signature may be produced, for several seconds.
  const auto until = std::chrono::steady_clock::now() + 5s;
  int attempts = 0;
  // At least 5 s and at least 3 attempts (one attempt can take seconds on a
  // slow sanitizer build).
  while (attempts < 3 || std::chrono::steady_clock::now() < until) {
    const std::string sig = work_.path() + "/swapped.sig";
    std::remove(sig.c_str());
    CommandResult r = Sign(sig);
    ++attempts;
    EXPECT_NE(r.exit_code, 0) << "custosd signed with a key that is not fault-key@1";
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(300ms);
  }
  EXPECT_GE(attempts, 3);
  EXPECT_TRUE(d_.running());
}

}  // namespace
}  // namespace custos::testing
