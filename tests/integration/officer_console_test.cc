// The officer console in a real terminal: custos-officer runs inside a tmux
// session (a real pty, so the confirmation is read from a terminal line as an
// officer would type it) against a real custosd with the starter policy of
// `custos-init dev`. Alice lists, shows and approves a CA key creation by
// typing at the console; bob approves from the command line; the key becomes
// active. Skipped only when tmux is not installed.
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

std::size_t Count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// A detached tmux session on a private socket, killed on destruction.
class TmuxSession {
 public:
  TmuxSession(const std::string& socket, const std::string& command) : socket_(socket) {
    started_ = Exec({"tmux", "-S", socket_, "-f", "/dev/null", "new-session", "-d", "-s", "officer",
                     "-x", "200", "-y", "50", command});
  }
  ~TmuxSession() { Exec({"tmux", "-S", socket_, "kill-server"}); }
  TmuxSession(const TmuxSession&) = delete;
  TmuxSession& operator=(const TmuxSession&) = delete;

  const CommandResult& started() const { return started_; }

  // The whole pane, scrollback included, wrapped lines joined.
  std::string Capture() const {
    return Exec({"tmux", "-S", socket_, "capture-pane", "-p", "-J", "-S", "-", "-t", "officer"})
        .out;
  }
  // Types `text` literally, then Enter.
  void Type(const std::string& text) const {
    Exec({"tmux", "-S", socket_, "send-keys", "-t", "officer", "-l", text});
    Exec({"tmux", "-S", socket_, "send-keys", "-t", "officer", "Enter"});
  }
  // Polls the pane until `done(pane)` or the deadline; returns the last pane.
  template <typename Pred>
  std::string WaitFor(Pred done, std::chrono::seconds limit = 30s) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::string pane;
    for (;;) {
      pane = Capture();
      if (done(pane) || std::chrono::steady_clock::now() > deadline) return pane;
      std::this_thread::sleep_for(100ms);
    }
  }
  std::string WaitForText(const std::string& text, std::chrono::seconds limit = 30s) const {
    return WaitFor([&](const std::string& p) { return p.find(text) != std::string::npos; }, limit);
  }
  // Types a console command and waits for the next prompt.
  std::string Command(const std::string& text) const {
    const std::size_t prompts = Count(Capture(), kPrompt);
    Type(text);
    return WaitFor([&](const std::string& p) { return Count(p, kPrompt) > prompts; });
  }

  static constexpr const char* kPrompt = "custos-officer> ";

 private:
  std::string socket_;
  CommandResult started_;
};

TEST(OfficerConsole, AliceApprovesInTheConsoleBobOnTheCommandLine) {
  if (Exec({"tmux", "-V"}).exit_code != 0) GTEST_SKIP() << "tmux is not installed";
  Deployment deployment;
  ASSERT_TRUE(deployment.Start()) << deployment.log();

  // The admin asks for a CA key: the starter policy's ca-key-creation rule
  // holds it for 2 of the officers.
  CommandResult create =
      deployment.Custos("admin", {"keys", "create", "root-ca-key", "--type", "ec-p256", "--usage",
                                  "ca", "--note", "dev root CA, ticket OPS-1"});
  ASSERT_EQ(create.exit_code, 6) << Dump(create);
  std::smatch m;
  static const std::regex kId("rq-[0-9a-f]{32}");
  ASSERT_TRUE(std::regex_search(create.out, m, kId)) << Dump(create);
  const std::string id = m.str();
  EXPECT_NE(create.out.find("pending approval: " + id), std::string::npos) << create.out;

  // The digest the officers must see, as the server reports it to the requester.
  CommandResult shown = deployment.Custos("admin", {"request", "show", id, "--json"});
  ASSERT_EQ(shown.exit_code, 0) << Dump(shown);
  static const std::regex kDigest("\"digest\":\"(sha256:[0-9a-f]{64})\"");
  ASSERT_TRUE(std::regex_search(shown.out, m, kDigest)) << shown.out;
  const std::string digest = m[1].str();

  TempDir tmux_dir;
  const std::string command = BinPath("custos-officer") + " --config " +
                              deployment.officer_conf("alice") +
                              " console; echo \"[console exited $?]\"; sleep 600";
  TmuxSession tmux(tmux_dir.path() + "/tmux.sock", command);
  ASSERT_EQ(tmux.started().exit_code, 0) << Dump(tmux.started());

  // The console lists the pending request at start and prompts.
  std::string pane = tmux.WaitFor([&](const std::string& p) {
    return p.find(id) != std::string::npos && p.find(TmuxSession::kPrompt) != std::string::npos;
  });
  ASSERT_NE(pane.find(id), std::string::npos) << pane;

  pane = tmux.Command("list");
  ASSERT_GE(Count(pane, TmuxSession::kPrompt), 2u) << pane;
  EXPECT_NE(pane.find("  1  " + id + "  pending"), std::string::npos) << pane;
  EXPECT_NE(pane.find("0/2"), std::string::npos) << pane;

  pane = tmux.Command("show 1");
  EXPECT_NE(pane.find("Request " + id), std::string::npos) << pane;
  EXPECT_NE(pane.find("root-ca-key"), std::string::npos) << pane;
  EXPECT_NE(pane.find("dev root CA, ticket OPS-1"), std::string::npos) << pane;
  EXPECT_NE(pane.find(digest), std::string::npos) << "digest not shown:\n" << pane;
  EXPECT_NE(pane.find("Time left:"), std::string::npos) << pane;

  // approve asks for confirmation on the terminal; "yes" signs and submits.
  tmux.Type("approve 1");
  pane = tmux.WaitForText("Type yes to approve " + id);
  ASSERT_NE(pane.find("Type yes to approve " + id), std::string::npos) << pane;
  const std::size_t prompts = Count(pane, TmuxSession::kPrompt);
  tmux.Type("yes");
  pane =
      tmux.WaitFor([&](const std::string& p) { return Count(p, TmuxSession::kPrompt) > prompts; });
  EXPECT_NE(pane.find("approved " + id + " as alice"), std::string::npos) << pane;
  EXPECT_NE(pane.find("request is pending (1/2 approvals)"), std::string::npos) << pane;
  EXPECT_EQ(pane.find("error:"), std::string::npos) << pane;

  // Anything but yes cancels and signs nothing.
  tmux.Type("deny 1 changed my mind");
  pane = tmux.WaitForText("Type yes to deny " + id);
  tmux.Type("no");
  pane = tmux.WaitForText("cancelled: " + id + " not denied");
  EXPECT_NE(pane.find("cancelled: " + id + " not denied, nothing signed"), std::string::npos)
      << pane;

  tmux.Type("quit");
  pane = tmux.WaitForText("[console exited 0]");
  EXPECT_NE(pane.find("[console exited 0]"), std::string::npos) << pane;

  // One approval is not enough; bob's from the command line completes it.
  CommandResult still = deployment.Custos("admin", {"keys", "show", "root-ca-key", "--json"});
  EXPECT_NE(still.out.find("\"state\":\"pre-activation\""), std::string::npos) << Dump(still);
  CommandResult bob = deployment.Officer("bob", {"approve", id, "--yes"});
  ASSERT_EQ(bob.exit_code, 0) << Dump(bob);
  EXPECT_NE(bob.out.find("approved " + id + " as bob: request is executed"), std::string::npos)
      << Dump(bob);

  CommandResult key = deployment.Custos("admin", {"keys", "show", "root-ca-key"});
  ASSERT_EQ(key.exit_code, 0) << Dump(key);
  EXPECT_NE(key.out.find("active version: 1"), std::string::npos) << key.out;
  EXPECT_NE(key.out.find("version 1: active"), std::string::npos) << key.out;

  CommandResult wait = deployment.Custos("admin", {"request", "wait", id, "--timeout", "10s"});
  EXPECT_EQ(wait.exit_code, 0) << Dump(wait);
  EXPECT_NE(wait.out.find("executed " + id), std::string::npos) << wait.out;
}

TEST(OfficerConsole, PassphraseIsAskedOnTheTerminalAndNeverEchoed) {
  if (Exec({"tmux", "-V"}).exit_code != 0) GTEST_SKIP() << "tmux is not installed";
  Deployment deployment;
  ASSERT_TRUE(deployment.Start()) << deployment.log();
  CommandResult create = deployment.Custos(
      "admin", {"keys", "create", "ssh-ca-key", "--type", "ec-p256", "--usage", "ssh-ca"});
  ASSERT_EQ(create.exit_code, 6) << Dump(create);
  std::smatch m;
  static const std::regex kId("rq-[0-9a-f]{32}");
  ASSERT_TRUE(std::regex_search(create.out, m, kId)) << Dump(create);
  const std::string id = m.str();

  // Carol's approval key, passphrase-protected (PKCS#8, AES-256), and a copy
  // of her config that names it and no passphrase file.
  TempDir work;
  const std::string passphrase = "correct horse battery staple";
  const std::string encrypted = work.path() + "/carol-enc.key";
  CommandResult pkcs8 = Exec({"openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in",
                              deployment.dir() + "/officers/carol.key", "-out", encrypted,
                              "-passout", "pass:" + passphrase});
  ASSERT_EQ(pkcs8.exit_code, 0) << Dump(pkcs8);
  std::string conf = ReadFile(deployment.officer_conf("carol"));
  const auto at = conf.find("officer-key = ");
  ASSERT_NE(at, std::string::npos) << conf;
  conf.replace(at, conf.find('\n', at) - at, "officer-key = " + encrypted);
  const std::string conf_path = work.path() + "/carol-enc.conf";
  WriteFile(conf_path, conf);

  const std::string command = BinPath("custos-officer") + " --config " + conf_path +
                              " console; echo \"[console exited $?]\"; sleep 600";
  TmuxSession tmux(work.path() + "/tmux.sock", command);
  ASSERT_EQ(tmux.started().exit_code, 0) << Dump(tmux.started());
  std::string pane = tmux.WaitForText(TmuxSession::kPrompt);
  ASSERT_NE(pane.find(id), std::string::npos) << pane;

  tmux.Type("approve " + id);
  pane = tmux.WaitForText("Type yes to approve " + id);
  tmux.Type("yes");
  pane = tmux.WaitForText("Passphrase for officer key " + encrypted);
  ASSERT_NE(pane.find("Passphrase for officer key " + encrypted), std::string::npos) << pane;
  const std::size_t prompts = Count(pane, TmuxSession::kPrompt);
  tmux.Type(passphrase);
  pane =
      tmux.WaitFor([&](const std::string& p) { return Count(p, TmuxSession::kPrompt) > prompts; });
  EXPECT_NE(pane.find("approved " + id + " as carol"), std::string::npos) << pane;
  EXPECT_EQ(pane.find(passphrase), std::string::npos) << "passphrase echoed:\n" << pane;
  EXPECT_EQ(pane.find("horse"), std::string::npos) << pane;

  // The key stays loaded for the session: no second prompt for the next vote.
  CommandResult other = deployment.Custos(
      "admin", {"keys", "create", "ssh-ca-2", "--type", "ec-p256", "--usage", "ssh-ca"});
  ASSERT_TRUE(std::regex_search(other.out, m, kId)) << Dump(other);
  const std::string second = m.str();
  tmux.Type("approve " + second);
  pane = tmux.WaitForText("Type yes to approve " + second);
  const std::size_t before = Count(pane, TmuxSession::kPrompt);
  tmux.Type("yes");
  pane =
      tmux.WaitFor([&](const std::string& p) { return Count(p, TmuxSession::kPrompt) > before; });
  EXPECT_NE(pane.find("approved " + second + " as carol"), std::string::npos) << pane;
  EXPECT_EQ(Count(pane, "Passphrase for officer key"), 1u) << pane;
  tmux.Type("quit");
  pane = tmux.WaitForText("[console exited 0]");
  EXPECT_NE(pane.find("[console exited 0]"), std::string::npos) << pane;
}

}  // namespace
}  // namespace custos::testing
