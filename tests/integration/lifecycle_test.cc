// Key lifecycle against the real daemon: rotation, every state change and its
// refusals, crypto-period expiry, destroy removing the token objects (checked
// with pkcs11-tool), and reconcile reporting what changed on the token behind
// custosd's back. See docs/operations.md, "Key lifecycle".
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace custos::testing {
namespace {
using namespace std::chrono_literals;

class Lifecycle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    deployment_ = new Deployment();
    ASSERT_TRUE(deployment_->Start()) << deployment_->log();
    work_ = new TempDir();
    WriteFile(File("artifact.bin"), "an artifact to sign\n");
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
    delete deployment_;
    deployment_ = nullptr;
  }

  static std::string File(const std::string& name) { return work_->path() + "/" + name; }

  static CommandResult Admin(const std::vector<std::string>& args) {
    return deployment_->Custos("admin", args);
  }

  static void Create(const std::string& name, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"keys",    "create",  name,          "--type",
                                     "ec-p256", "--usage", "code-signing"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Admin(args);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  // Destroying needs 2 of the 3 officers under the starter policy (rule
  // key-destruction): asks as admin, has alice and bob approve, and returns
  // the result of `custos request wait`. Returns the first command that did
  // not go as expected.
  static CommandResult DestroyWithQuorum(const std::string& key) {
    CommandResult r = Admin({"keys", "destroy", key});
    if (r.exit_code != 6) return r;
    static const std::regex kId("rq-[0-9a-f]{32}");
    std::smatch m;
    const std::string all = r.out + r.err;
    if (!std::regex_search(all, m, kId)) return r;
    const std::string id = m.str();
    for (const char* officer : {"alice", "bob"}) {
      CommandResult a = deployment_->Officer(officer, {"approve", id, "--yes"});
      if (a.exit_code != 0) return a;
    }
    return Admin({"request", "wait", id, "--timeout", "30s"});
  }

  // Signs artifact.bin as the builder with `key` into `sig`.
  static CommandResult Sign(const std::string& key, const std::string& sig) {
    return deployment_->Custos("builder", {"sign", "--key", key, "--in", File("artifact.bin"),
                                           "--out", File(sig), "--json"});
  }

  static CommandResult Verify(const std::string& key, const std::string& sig) {
    return deployment_->Custos(
        "builder", {"verify", "--key", key, "--in", File("artifact.bin"), "--sig", File(sig)});
  }

  // Expects a refusal: exit 4, FAILED_PRECONDITION, and every part of `says`.
  static void ExpectPrecondition(const CommandResult& r, const std::vector<std::string>& says) {
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    EXPECT_NE(r.err.find("FAILED_PRECONDITION"), std::string::npos) << r.err;
    for (const auto& s : says) EXPECT_NE(r.err.find(s), std::string::npos) << r.err;
  }

  static std::vector<std::string> Pkcs11Tool(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        "pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH,   "--token-label", "custos-dev",
        "--login",     "--pin",    deployment_->user_pin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  static CommandResult TokenObjects() {
    return Exec(Pkcs11Tool({"--list-objects"}), {{"SOFTHSM2_CONF", deployment_->softhsm_conf()}});
  }

  // The hex CKA_ID of `key` (NAME@V) from `keys show --json`.
  static std::string TokenId(const std::string& name, int version) {
    CommandResult show = Admin({"keys", "show", name, "--json"});
    EXPECT_EQ(show.exit_code, 0) << show.err;
    std::smatch m;
    const std::regex re("\"version\":" + std::to_string(version) +
                        ",[^}]*\"token_id\":\"([0-9a-f]+)\"");
    EXPECT_TRUE(std::regex_search(show.out, m, re)) << show.out;
    return m.empty() ? "" : m[1].str();
  }

  static Deployment* deployment_;
  static TempDir* work_;
};
Deployment* Lifecycle::deployment_ = nullptr;
TempDir* Lifecycle::work_ = nullptr;

TEST_F(Lifecycle, RotateSignsWithNewVersionAndOldVersionOnlyVerifies) {
  Create("rot");
  CommandResult s1 = Sign("rot", "rot-v1.sig");
  ASSERT_EQ(s1.exit_code, 0) << s1.err;
  EXPECT_NE(s1.out.find("\"key_version\":1"), std::string::npos) << s1.out;

  CommandResult r = Admin({"keys", "rotate", "rot"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("version 2 is active"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rot@1 is deactivated"), std::string::npos) << r.out;

  CommandResult s2 = Sign("rot", "rot-v2.sig");
  ASSERT_EQ(s2.exit_code, 0) << s2.err;
  EXPECT_NE(s2.out.find("\"key_version\":2"), std::string::npos) << s2.out;

  // rot@1 no longer signs; the refusal names the state and the active version.
  ExpectPrecondition(Sign("rot@1", "refused.sig"),
                     {"rot@1 is deactivated", "the active version is rot@2"});

  // ...but its public key is still served, and its signatures still verify.
  CommandResult pub = Admin({"keys", "pubkey", "rot@1", "--out", File("rot1.pem")});
  EXPECT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_EQ(Verify("rot@1", "rot-v1.sig").exit_code, 0);
  EXPECT_EQ(Verify("rot@2", "rot-v2.sig").exit_code, 0);
  EXPECT_EQ(Verify("rot@2", "rot-v1.sig").exit_code, 1);

  // The token holds both versions under their labels.
  CommandResult objs = TokenObjects();
  ASSERT_EQ(objs.exit_code, 0) << objs.err;
  EXPECT_NE(objs.out.find("custos:rot@1"), std::string::npos) << objs.out;
  EXPECT_NE(objs.out.find("custos:rot@2"), std::string::npos) << objs.out;

  CommandResult show = Admin({"keys", "show", "rot", "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("\"active_version\":2"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("\"state\":\"deactivated\""), std::string::npos) << show.out;
}

TEST_F(Lifecycle, DisableAndEnable) {
  Create("toggle");
  CommandResult r = Admin({"keys", "disable", "toggle"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ExpectPrecondition(Sign("toggle", "t.sig"), {"toggle has no active version"});
  ExpectPrecondition(Sign("toggle@1", "t.sig"), {"toggle@1 is deactivated"});
  ExpectPrecondition(Admin({"keys", "disable", "toggle@1"}), {"already deactivated"});

  r = Admin({"keys", "enable", "toggle@1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Sign("toggle", "t.sig").exit_code, 0);
  ExpectPrecondition(Admin({"keys", "enable", "toggle@1"}), {"already active"});

  // One active version: enabling v1 while v2 is active is refused.
  ASSERT_EQ(Admin({"keys", "rotate", "toggle"}).exit_code, 0);
  ExpectPrecondition(Admin({"keys", "enable", "toggle@1"}),
                     {"toggle@2 is active", "disable toggle@2 first"});
}

TEST_F(Lifecycle, DestroyRemovesTokenObjectsAndIsFinal) {
  Create("doomed");
  ASSERT_EQ(Sign("doomed", "doomed.sig").exit_code, 0);
  CommandResult before = TokenObjects();
  ASSERT_NE(before.out.find("custos:doomed@1"), std::string::npos) << before.out;

  CommandResult r = DestroyWithQuorum("doomed@1");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  CommandResult after = TokenObjects();
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(after.out.find("custos:doomed@1"), std::string::npos)
      << "private or public key object still on the token:\n"
      << after.out;

  ExpectPrecondition(Sign("doomed", "x.sig"), {"doomed has no active version", "destroyed"});
  ExpectPrecondition(Sign("doomed@1", "x.sig"), {"doomed@1 is destroyed"});
  ExpectPrecondition(Admin({"keys", "destroy", "doomed@1"}), {"doomed@1 is already destroyed"});
  ExpectPrecondition(Admin({"keys", "enable", "doomed@1"}), {"destroyed"});
  ExpectPrecondition(Admin({"keys", "mark-compromised", "doomed@1"}), {"destroyed is final"});

  // Metadata and the public key stay: old signatures still verify.
  CommandResult show = Admin({"keys", "show", "doomed"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("version 1: destroyed"), std::string::npos) << show.out;
  EXPECT_EQ(Verify("doomed@1", "doomed.sig").exit_code, 0);
}

TEST_F(Lifecycle, MarkCompromised) {
  Create("leaked");
  CommandResult r = Admin({"keys", "mark-compromised", "leaked"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("leaked@1 compromised"), std::string::npos) << r.out;
  ExpectPrecondition(Sign("leaked@1", "x.sig"), {"leaked@1 is compromised"});
  ExpectPrecondition(Admin({"keys", "enable", "leaked@1"}),
                     {"compromised and can never be active again"});
  ExpectPrecondition(Admin({"keys", "mark-compromised", "leaked@1"}), {"already compromised"});
  // Rotating away from a compromised key gives a fresh active version.
  ASSERT_EQ(Admin({"keys", "rotate", "leaked"}).exit_code, 0);
  CommandResult s = Sign("leaked", "leaked2.sig");
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("\"key_version\":2"), std::string::npos) << s.out;
  // Destroy is allowed from compromised.
  CommandResult destroyed = DestroyWithQuorum("leaked@1");
  EXPECT_EQ(destroyed.exit_code, 0) << destroyed.out << destroyed.err;
}

TEST_F(Lifecycle, ExpiredVersionRefusesToSign) {
  // 10 s: long enough for the first signature even on a slow sanitizer
  // build; the test then waits until it has surely passed.
  const auto created = std::chrono::steady_clock::now();
  Create("short", {"--expires", "10s"});
  CommandResult first = Sign("short", "short.sig");
  EXPECT_EQ(first.exit_code, 0) << first.err;
  Create("long", {"--expires", "365d"});
  Create("forever");

  // --expiring 30d: "short" (expiring soon), not "long" or "forever".
  CommandResult soon = Admin({"keys", "list", "--expiring", "30d"});
  ASSERT_EQ(soon.exit_code, 0) << soon.err;
  EXPECT_NE(soon.out.find("short@1"), std::string::npos) << soon.out;
  EXPECT_EQ(soon.out.find("long@1"), std::string::npos) << soon.out;
  EXPECT_EQ(soon.out.find("forever@1"), std::string::npos) << soon.out;
  CommandResult year = Admin({"keys", "list", "--expiring", "400d", "--json"});
  ASSERT_EQ(year.exit_code, 0) << year.err;
  EXPECT_NE(year.out.find("\"name\":\"long\""), std::string::npos) << year.out;
  EXPECT_EQ(year.out.find("\"name\":\"forever\""), std::string::npos) << year.out;

  std::this_thread::sleep_until(created + 11s);
  CommandResult late = Sign("short", "late.sig");
  ExpectPrecondition(late, {"key short@1 expired at 20", "Z"});
  // Still listed (already expired), marked expired.
  CommandResult expired = Admin({"keys", "list", "--expiring", "1d"});
  EXPECT_NE(expired.out.find("(expired)"), std::string::npos) << expired.out;
  // An expired active version may still be disabled (it cannot be enabled).
  CommandResult off = Admin({"keys", "disable", "short"});
  EXPECT_EQ(off.exit_code, 0) << off.err;
}

TEST_F(Lifecycle, ExpiredVersionCannotBeReEnabledButRotates) {
  Create("brief", {"--expires", "2s"});
  std::this_thread::sleep_for(3s);
  ExpectPrecondition(Sign("brief", "b.sig"), {"brief@1 expired at"});
  CommandResult r = Admin({"keys", "rotate", "brief", "--expires", "1d"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Sign("brief", "b.sig").exit_code, 0);
  ExpectPrecondition(Admin({"keys", "enable", "brief@1"}), {"brief@1 expired at"});
}

TEST_F(Lifecycle, BadDurationsAreUsageErrors) {
  for (const char* bad : {"10", "0d", "d", "5w", "-1d", "1.5d"}) {
    CommandResult r = Admin({"keys", "create", "never", "--type", "ec-p256", "--usage",
                             "code-signing", "--expires", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("not a duration"), std::string::npos) << r.err;
  }
}

TEST_F(Lifecycle, PolicyGovernsEveryTransition) {
  Create("guarded");
  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{{"keys", "rotate", "guarded"},
                                             {"keys", "disable", "guarded"},
                                             {"keys", "enable", "guarded"},
                                             {"keys", "destroy", "guarded"},
                                             {"keys", "mark-compromised", "guarded"}}) {
    CommandResult r = deployment_->Custos("builder", cmd);
    EXPECT_EQ(r.exit_code, 4) << cmd[1] << ": " << r.err;
    EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  }
  // Nothing changed.
  EXPECT_EQ(Sign("guarded", "g.sig").exit_code, 0);
  ExpectPrecondition(Admin({"keys", "enable", "guarded"}), {"already active"});
}

TEST_F(Lifecycle, ListGivesTheInventory) {
  Create("inventory", {"--expires", "10d"});
  CommandResult list = Admin({"keys", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  for (const char* field : {"\"name\":\"inventory\"", "\"key_type\":\"ec-p256\"",
                            "\"usage\":\"code-signing\"", "\"state\":\"active\"", "\"created\":",
                            "\"expires\":\"20", "\"token_id\":", "\"public_key_sha256\":"}) {
    EXPECT_NE(list.out.find(field), std::string::npos) << field << " in " << list.out;
  }
  CommandResult text = Admin({"keys", "list"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("inventory@1"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("STATE"), std::string::npos) << text.out;
}

TEST_F(Lifecycle, ReconcileReportsMissingAndUnknownObjects) {
  Create("vanishing");
  const std::string id = TokenId("vanishing", 1);
  ASSERT_FALSE(id.empty());
  const std::map<std::string, std::string> env = {{"SOFTHSM2_CONF", deployment_->softhsm_conf()}};
  // Behind custosd's back: delete vanishing@1, add a foreign key pair and a
  // custos-labelled one the store does not know.
  for (const char* type : {"privkey", "pubkey"}) {
    CommandResult del = Exec(Pkcs11Tool({"--delete-object", "--type", type, "--id", id}), env);
    ASSERT_EQ(del.exit_code, 0) << del.out << del.err;
  }
  CommandResult gen = Exec(Pkcs11Tool({"--keypairgen", "--key-type", "EC:prime256v1", "--label",
                                       "someone-elses-key", "--id", "f00d"}),
                           env);
  ASSERT_EQ(gen.exit_code, 0) << gen.out << gen.err;
  gen = Exec(Pkcs11Tool({"--keypairgen", "--key-type", "EC:prime256v1", "--label", "custos:ghost@1",
                         "--id", "beef"}),
             env);
  ASSERT_EQ(gen.exit_code, 0) << gen.out << gen.err;

  // Live: keys list --check.
  CommandResult check = Admin({"keys", "list", "--check", "--json"});
  ASSERT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.out.find("\"checked\":true"), std::string::npos) << check.out;
  EXPECT_TRUE(std::regex_search(
      check.out, std::regex("\"name\":\"vanishing\"[^\\]]*\\][^\\]]*\"token_check\":\"missing\"")))
      << check.out;
  // custos-init's audit key (when it makes one) is in the store and on the token.
  if (check.out.find("\"name\":\"audit\"") != std::string::npos) {
    EXPECT_TRUE(std::regex_search(
        check.out, std::regex("\"name\":\"audit\"[^\\]]*\\][^\\]]*\"token_check\":\"present\"")))
        << check.out;
  }
  EXPECT_NE(check.out.find("\"label\":\"someone-elses-key\""), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("foreign object"), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("\"label\":\"custos:ghost@1\""), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("custos label not in the key store"), std::string::npos) << check.out;
  CommandResult text = Admin({"keys", "list", "--check"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("vanishing@1 .* missing"))) << text.out;
  EXPECT_NE(text.out.find("unknown token object: label someone-elses-key"), std::string::npos)
      << text.out;

  // Signing with the missing version fails cleanly, and nothing was deleted.
  EXPECT_NE(Sign("vanishing", "v.sig").exit_code, 0);
  CommandResult objs = TokenObjects();
  EXPECT_NE(objs.out.find("someone-elses-key"), std::string::npos) << objs.out;
  EXPECT_NE(objs.out.find("custos:ghost@1"), std::string::npos) << objs.out;

  // At start: logged.
  ASSERT_EQ(deployment_->Stop(), 0) << deployment_->log();
  ASSERT_TRUE(deployment_->Start()) << deployment_->log();
  const std::string log = deployment_->log();
  EXPECT_TRUE(
      std::regex_search(log, std::regex("reconcile_version[^\\n]*vanishing@1[^\\n]*missing")))
      << log;
  EXPECT_TRUE(std::regex_search(
      log, std::regex("reconcile_unknown_object[^\\n]*someone-elses-key[^\\n]*foreign object")))
      << log;
  EXPECT_TRUE(std::regex_search(log, std::regex("reconcile_unknown_object[^\\n]*custos:ghost@1")))
      << log;
  objs = TokenObjects();
  EXPECT_NE(objs.out.find("someone-elses-key"), std::string::npos) << objs.out;
  // Other keys still sign after the restart.
  Create("after-restart");
  EXPECT_EQ(Sign("after-restart", "ar.sig").exit_code, 0);
}

}  // namespace
}  // namespace custos::testing
