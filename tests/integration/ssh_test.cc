// SSH through custosd, checked with tools nobody here wrote: OpenSSH
// certificates signed by an ssh-ca key inside SoftHSM (ssh-keygen -L, a real
// sshd on a loopback port that accepts the user certificate and presents a
// host certificate the client checks with @cert-authority), SSHSIG file
// signatures (ssh-keygen -Y verify), git commit -S / git verify-commit with
// gpg.ssh.program=custos, and refusals that name the policy rule.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/v1/custos.pb.h"
#include "harness.h"

extern char** environ;

namespace custos::testing {
namespace {
using namespace std::chrono_literals;
namespace v1 = custos::v1;

constexpr char kCa[] = "ssh-ca-1";
constexpr char kSigner[] = "git-signer";     // ed25519, code-signing
constexpr char kRsaSigner[] = "rsa-signer";  // rsa-3072, code-signing
constexpr char kRelease[] = "release-ssh";   // code-signing, under quorum rule release-signing

std::string Dump(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string RequestIdIn(const CommandResult& r) {
  static const std::regex kId("rq-[0-9a-f]{32}");
  std::smatch m;
  const std::string all = r.out + "\n" + r.err;
  return std::regex_search(all, m, kId) ? m.str() : "";
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// An sshd in the foreground (-D -e), killed on destruction.
class Sshd {
 public:
  Sshd(const std::string& config, const std::string& log) {
    std::vector<std::string> args = {"/usr/sbin/sshd", "-D", "-e", "-f", config, "-E", log};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~Sshd() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

class SshTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir();
    deployment_ = new Deployment();
    ASSERT_TRUE(deployment_->Start()) << deployment_->log();
    // An ssh-ca key needs two officers (quorum rule ca-key-creation).
    CommandResult create =
        Custos("admin", {"keys", "create", kCa, "--type", "ec-p256", "--usage", "ssh-ca"});
    ASSERT_EQ(create.exit_code, 6) << Dump(create);
    const std::string id = RequestIdIn(create);
    ASSERT_FALSE(id.empty()) << Dump(create);
    for (const char* officer : {"alice", "bob"}) {
      CommandResult r = deployment_->Officer(officer, {"approve", id, "--yes"});
      ASSERT_EQ(r.exit_code, 0) << officer << "\n" << Dump(r);
    }
    CommandResult wait = Custos("admin", {"request", "wait", id, "--timeout", "60s"});
    ASSERT_EQ(wait.exit_code, 0) << Dump(wait);
    for (auto [name, type] : {std::pair{kSigner, "ed25519"}, std::pair{kRsaSigner, "rsa-3072"},
                              std::pair{kRelease, "ec-p256"}}) {
      CommandResult r =
          Custos("admin", {"keys", "create", name, "--type", type, "--usage", "code-signing"});
      ASSERT_EQ(r.exit_code, 0) << Dump(r);
    }
    CommandResult ca =
        Custos("issuer", {"ssh", "ca-pubkey", "--key", kCa, "--out", File("ca.pub")});
    ASSERT_EQ(ca.exit_code, 0) << Dump(ca);
  }
  static void TearDownTestSuite() {
    delete deployment_;
    deployment_ = nullptr;
    delete work_;
    work_ = nullptr;
  }

  static std::string File(const std::string& name) { return work_->path() + "/" + name; }
  static CommandResult Custos(const std::string& who, const std::vector<std::string>& args) {
    return deployment_->Custos(who, args);
  }
  // A fresh ed25519 key pair made by ssh-keygen; returns the private key path.
  static std::string NewSshKey(const std::string& name, const std::string& type = "ed25519") {
    const std::string path = File(name);
    CommandResult r = Exec({"ssh-keygen", "-q", "-t", type, "-N", "", "-C", name, "-f", path});
    EXPECT_EQ(r.exit_code, 0) << Dump(r);
    return path;
  }
  static CommandResult Sh(const std::string& script,
                          const std::map<std::string, std::string>& env = {}) {
    return Exec({"sh", "-c", script}, env);
  }
  // A client-library connection as `who`.
  static std::unique_ptr<client::Client> Connect(const std::string& who) {
    auto config = client::LoadClientConfig(deployment_->client_conf(who));
    EXPECT_TRUE(config.ok());
    if (!config.ok()) return nullptr;
    config->retries = 0;
    auto c = client::Client::Connect(*config);
    EXPECT_TRUE(c.ok());
    return c.ok() ? std::move(*c) : nullptr;
  }
  // A refusal: exit 4 and every part in stderr.
  static void ExpectRefused(const CommandResult& r, const std::vector<std::string>& parts) {
    EXPECT_EQ(r.exit_code, 4) << Dump(r);
    for (const auto& p : parts) EXPECT_TRUE(Contains(r.err, p)) << p << "\n" << Dump(r);
  }

  static TempDir* work_;
  static Deployment* deployment_;
};

TempDir* SshTest::work_ = nullptr;
Deployment* SshTest::deployment_ = nullptr;

TEST_F(SshTest, UserCertificateShownBySshKeygen) {
  const std::string id = NewSshKey("alice-id");
  CommandResult r =
      Custos("issuer", {"ssh", "sign", "--key", kCa, "--pubkey", id + ".pub", "--principals",
                        "alice,bob", "--validity", "1h", "--type", "user", "--force-command",
                        "/usr/bin/id", "--source-address", "127.0.0.1/32", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  EXPECT_TRUE(Contains(r.out, "\"key_id\":\"spiffe://dev.custos.test/issuer:")) << r.out;
  // The audit record names the CA key version, the serial and the key id.
  std::smatch serial;
  ASSERT_TRUE(std::regex_search(r.out, serial, std::regex("\"serial\":\"([0-9]+)\""))) << r.out;
  const std::string audit = ReadFile(deployment_->dir() + "/state/audit.log");
  EXPECT_TRUE(Contains(audit, std::string(kCa) + "@1 ssh-serial:" + serial[1].str() +
                                  " key-id:spiffe://dev.custos.test/issuer:" + serial[1].str()))
      << audit.substr(audit.size() > 3000 ? audit.size() - 3000 : 0);
  CommandResult shown = Exec({"ssh-keygen", "-L", "-f", id + "-cert.pub"});
  ASSERT_EQ(shown.exit_code, 0) << Dump(shown);
  const std::string& t = shown.out;
  EXPECT_TRUE(Contains(t, "Type: ssh-ed25519-cert-v01@openssh.com user certificate")) << t;
  EXPECT_TRUE(std::regex_search(t, std::regex("Principals: \n\\s+alice\n\\s+bob\n"))) << t;
  EXPECT_TRUE(Contains(t, "force-command /usr/bin/id")) << t;
  EXPECT_TRUE(Contains(t, "source-address 127.0.0.1/32")) << t;
  for (const char* ext : {"permit-X11-forwarding", "permit-agent-forwarding",
                          "permit-port-forwarding", "permit-pty", "permit-user-rc"}) {
    EXPECT_TRUE(Contains(t, ext)) << ext << "\n" << t;
  }
  // The signing CA is the ssh-ca key's public key.
  CommandResult fp = Exec({"ssh-keygen", "-l", "-f", File("ca.pub")});
  ASSERT_EQ(fp.exit_code, 0) << Dump(fp);
  const std::string ca_fp = fp.out.substr(fp.out.find("SHA256:"), 50);
  EXPECT_TRUE(Contains(t, "Signing CA: ECDSA " + ca_fp.substr(0, ca_fp.find(' ')))) << t << fp.out;
  // Valid: from T-60s to T+1h: 3660 seconds, as ssh-keygen prints them.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      t, m,
      std::regex("Valid: from (\\d+-\\d+-\\d+T\\d+:\\d+:\\d+) to (\\d+-\\d+-\\d+T\\d+:\\d+:\\d+)")))
      << t;
  auto parse = [](const std::string& s) {
    std::tm tm{};
    strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    return mktime(&tm);
  };
  EXPECT_EQ(parse(m[2]) - parse(m[1]), 3660) << t;

  // The inventory has it, for the issuer (own) and for the admin (READ_CERTIFICATES).
  CommandResult mine = Custos("issuer", {"ssh", "list", "--json"});
  ASSERT_EQ(mine.exit_code, 0) << Dump(mine);
  EXPECT_TRUE(Contains(mine.out, "\"principals\":[\"alice\",\"bob\"]")) << mine.out;
  CommandResult all = Custos("admin", {"ssh", "list", "--key", kCa});
  ASSERT_EQ(all.exit_code, 0) << Dump(all);
  EXPECT_TRUE(Contains(all.out, "alice,bob")) << all.out;
  ExpectRefused(
      Custos("builder", {"ssh", "list", "--requester", "spiffe://dev.custos.test/issuer"}),
      {"permission denied"});
}

TEST_F(SshTest, SshdAcceptsTheUserCertificateAndPresentsAHostCertificate) {
  if (geteuid() != 0) GTEST_SKIP() << "sshd needs root here (privilege separation)";
  if (access("/usr/sbin/sshd", X_OK) != 0) GTEST_SKIP() << "openssh-server is not installed";
  mkdir("/run/sshd", 0755);  // sshd's privilege separation directory
  const std::string dir = File("sshd");
  mkdir(dir.c_str(), 0700);
  // Host key, certified by the ssh-ca key under ssh-host (admin only).
  const std::string host_key = dir + "/host_ed25519";
  ASSERT_EQ(Exec({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key}).exit_code, 0);
  CommandResult host =
      Custos("admin", {"ssh", "sign", "--key", kCa, "--pubkey", host_key + ".pub", "--principals",
                       "localhost,sshd.dev.custos.test", "--type", "host", "--validity", "30d"});
  ASSERT_EQ(host.exit_code, 0) << Dump(host);
  CommandResult host_l = Exec({"ssh-keygen", "-L", "-f", host_key + "-cert.pub"});
  EXPECT_TRUE(Contains(host_l.out, "host certificate")) << host_l.out;

  const int port = FreePort();
  WriteFile(dir + "/sshd_config",
            "Port " + std::to_string(port) +
                "\nListenAddress 127.0.0.1\n"
                "HostKey " +
                host_key + "\nHostCertificate " + host_key +
                "-cert.pub\n"
                "PidFile " +
                dir +
                "/sshd.pid\n"
                "TrustedUserCAKeys " +
                File("ca.pub") +
                "\nAuthorizedKeysFile none\n"
                "PubkeyAuthentication yes\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin yes\nUsePAM no\n"
                "StrictModes no\n");
  CommandResult test_conf = Exec({"/usr/sbin/sshd", "-t", "-f", dir + "/sshd_config"});
  ASSERT_EQ(test_conf.exit_code, 0) << Dump(test_conf);
  Sshd sshd(dir + "/sshd_config", dir + "/sshd.log");
  ASSERT_TRUE(sshd.started());

  // The client trusts host certificates of the Custos CA for localhost.
  WriteFile(dir + "/known_hosts", "@cert-authority localhost " + ReadFile(File("ca.pub")));
  const std::string user = "root";
  const std::string id = NewSshKey("login-id");
  CommandResult cert = Custos("issuer", {"ssh", "sign", "--key", kCa, "--pubkey", id + ".pub",
                                         "--principals", user, "--validity", "10m"});
  ASSERT_EQ(cert.exit_code, 0) << Dump(cert);
  auto ssh = [&](const std::string& identity, const std::string& cert_file) {
    std::vector<std::string> argv = {"ssh",
                                     "-F",
                                     "/dev/null",
                                     "-i",
                                     identity,
                                     "-o",
                                     "CertificateFile=" + cert_file,
                                     "-o",
                                     "IdentitiesOnly=yes",
                                     "-o",
                                     "BatchMode=yes",
                                     "-o",
                                     "StrictHostKeyChecking=yes",
                                     "-o",
                                     "UserKnownHostsFile=" + dir + "/known_hosts",
                                     "-o",
                                     "HostKeyAlias=localhost",
                                     "-o",
                                     "ConnectTimeout=10",
                                     "-p",
                                     std::to_string(port),
                                     user + "@127.0.0.1",
                                     "echo",
                                     "logged-in-with-custos"};
    return Exec(argv);
  };
  // sshd takes a moment to listen.
  CommandResult in;
  for (int i = 0; i < 50; ++i) {
    in = ssh(id, id + "-cert.pub");
    if (in.exit_code == 0 || !Contains(in.err, "Connection refused")) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(in.exit_code, 0) << Dump(in) << "\nsshd log:\n" << ReadFile(dir + "/sshd.log");
  EXPECT_TRUE(Contains(in.out, "logged-in-with-custos")) << Dump(in);

  // The same key without the certificate is refused (no authorized_keys).
  const std::string bare = File("bare");
  mkdir(bare.c_str(), 0700);
  ASSERT_EQ(Exec({"cp", id, bare + "/id"}).exit_code, 0);
  ASSERT_EQ(Exec({"chmod", "600", bare + "/id"}).exit_code, 0);
  CommandResult out = ssh(bare + "/id", "none");
  EXPECT_EQ(out.exit_code, 255) << Dump(out);
  EXPECT_TRUE(Contains(out.err, "Permission denied")) << Dump(out);

  // A certificate for another principal does not log in as root.
  const std::string other = NewSshKey("other-id");
  ASSERT_EQ(Custos("issuer", {"ssh", "sign", "--key", kCa, "--pubkey", other + ".pub",
                              "--principals", "mallory", "--validity", "10m"})
                .exit_code,
            0);
  CommandResult wrong = ssh(other, other + "-cert.pub");
  EXPECT_EQ(wrong.exit_code, 255) << Dump(wrong);
}

TEST_F(SshTest, SshsigVerifiedBySshKeygen) {
  const std::string file = File("artifact.tar");
  WriteFile(file, std::string(300000, 'x') + "release 1.0\n");
  for (const char* key : {kSigner, kRsaSigner}) {
    const std::string sig = file + "." + key + ".sig";
    CommandResult s = Custos("builder", {"sign", "--format", "sshsig", "--namespace", "file",
                                         "--key", key, "--in", file, "--out", sig});
    ASSERT_EQ(s.exit_code, 0) << Dump(s);
    const std::string pub = File(std::string(key) + ".pub");
    CommandResult p = Custos("builder", {"keys", "pubkey", key, "--format", "ssh", "--out", pub});
    ASSERT_EQ(p.exit_code, 0) << Dump(p);
    WriteFile(File("allowed_signers"), "builds@custos.test " + ReadFile(pub));
    const std::string verify = "ssh-keygen -Y verify -f " + File("allowed_signers") +
                               " -I builds@custos.test -n file -s " + sig + " < ";
    CommandResult ok = Sh(verify + file);
    EXPECT_EQ(ok.exit_code, 0) << key << "\n" << Dump(ok);
    EXPECT_TRUE(Contains(ok.out, "Good \"file\" signature for builds@custos.test")) << Dump(ok);
    // Another namespace, and a modified file, fail.
    CommandResult ns = Sh("ssh-keygen -Y verify -f " + File("allowed_signers") +
                          " -I builds@custos.test -n git -s " + sig + " < " + file);
    EXPECT_NE(ns.exit_code, 0) << Dump(ns);
    WriteFile(File("modified.tar"), std::string(300000, 'x') + "release 1.1\n");
    CommandResult bad = Sh(verify + File("modified.tar"));
    EXPECT_NE(bad.exit_code, 0) << Dump(bad);
  }
}

TEST_F(SshTest, GitCommitSignedThroughCustosVerifies) {
  const std::string repo = File("repo");
  const std::string pub = File("git-signer-ssh.pub");
  CommandResult p = Custos("builder", {"keys", "pubkey", kSigner, "--format", "ssh", "--out", pub});
  ASSERT_EQ(p.exit_code, 0) << Dump(p);
  EXPECT_TRUE(Contains(ReadFile(pub), " custos:git-signer")) << ReadFile(pub);
  WriteFile(File("git_allowed_signers"), "ci@custos.test " + ReadFile(pub));
  const std::map<std::string, std::string> env = {
      {"CUSTOS_CONFIG", deployment_->client_conf("builder")},
      {"HOME", work_->path()},
      {"GIT_CONFIG_NOSYSTEM", "1"},
  };
  auto git = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"git", "-C", repo});
    return Exec(args, env);
  };
  ASSERT_EQ(Exec({"git", "init", "-q", repo}, env).exit_code, 0);
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"user.name", "CI"},
           {"user.email", "ci@custos.test"},
           {"gpg.format", "ssh"},
           {"user.signingkey", pub},
           {"gpg.ssh.program", BinPath("custos")},
           {"gpg.ssh.allowedSignersFile", File("git_allowed_signers")}}) {
    ASSERT_EQ(git({"config", k, v}).exit_code, 0);
  }
  WriteFile(repo + "/README", "signed through Custos\n");
  ASSERT_EQ(git({"add", "README"}).exit_code, 0);
  CommandResult commit = git({"commit", "-S", "-q", "-m", "signed by custos"});
  ASSERT_EQ(commit.exit_code, 0) << Dump(commit);
  CommandResult raw = git({"cat-file", "commit", "HEAD"});
  EXPECT_TRUE(Contains(raw.out, "-----BEGIN SSH SIGNATURE-----")) << raw.out;
  CommandResult verify = git({"verify-commit", "-v", "HEAD"});
  EXPECT_EQ(verify.exit_code, 0) << Dump(verify);
  EXPECT_TRUE(Contains(verify.err, "Good \"git\" signature for ci@custos.test")) << Dump(verify);

  // A commit whose signature is cut out and pasted onto other content fails.
  CommandResult show = git({"log", "--show-signature", "-1"});
  EXPECT_TRUE(Contains(show.out, "Good \"git\" signature")) << Dump(show);
  WriteFile(File("tampered"),
            std::regex_replace(raw.out, std::regex("signed by custos"), "signed by mallory"));
  CommandResult hash = git({"hash-object", "-t", "commit", "-w", File("tampered")});
  ASSERT_EQ(hash.exit_code, 0) << Dump(hash);
  const std::string tampered = hash.out.substr(0, hash.out.find('\n'));
  CommandResult bad = git({"verify-commit", tampered});
  EXPECT_NE(bad.exit_code, 0) << Dump(bad);
}

TEST_F(SshTest, RefusalsNameTheRule) {
  const std::string id = NewSshKey("refused-id");
  const std::vector<std::string> base = {"ssh", "sign", "--key", kCa, "--pubkey", id + ".pub"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  // Principals outside the profile ("[a-z]*").
  ExpectRefused(Custos("issuer", with({"--principals", "Root"})),
                {"ssh-profile:ssh-user:principals", "\"Root\""});
  // Validity over the cap (24h).
  ExpectRefused(Custos("issuer", with({"--principals", "alice", "--validity", "48h"})),
                {"ssh-profile:ssh-user:max_validity", "48h", "24h"});
  // An extension the profile does not allow.
  ExpectRefused(
      Custos("issuer", with({"--principals", "alice", "--extension", "no-touch-required"})),
      {"ssh-profile:ssh-user:extensions", "no-touch-required"});
  // Too many principals (max 8).
  ExpectRefused(Custos("issuer", with({"--principals", "a,b,c,d,e,f,g,h,i"})),
                {"ssh-profile:ssh-user:max_principals"});
  // Host certificates are for admins only.
  ExpectRefused(Custos("issuer", with({"--principals", "web.dev.custos.test", "--type", "host"})),
                {"ssh-profile:ssh-host:roles"});
  // Builders have no ssh profile at all.
  ExpectRefused(Custos("builder", with({"--principals", "alice"})), {"ssh-profile:ssh-user:roles"});
  // A code-signing key does not sign certificates.
  ExpectRefused(Custos("issuer", {"ssh", "sign", "--key", kSigner, "--pubkey", id + ".pub",
                                  "--principals", "alice"}),
                {"usage code-signing", "key-usage"});
  // A version the CA key does not have.
  ExpectRefused(Custos("issuer", {"ssh", "sign", "--key", std::string(kCa) + "@99", "--pubkey",
                                  id + ".pub", "--principals", "alice"}),
                {"NOT_FOUND", "has no version 99"});
  // The CA key does not certify itself.
  ExpectRefused(Custos("issuer", {"ssh", "sign", "--key", kCa, "--pubkey", File("ca.pub"),
                                  "--principals", "alice"}),
                {"ssh-cert-subject"});
  // A certificate as the subject key.
  ASSERT_EQ(Custos("issuer", with({"--principals", "alice"})).exit_code, 0);
  ExpectRefused(Custos("issuer", {"ssh", "sign", "--key", kCa, "--pubkey", id + "-cert.pub",
                                  "--principals", "alice"}),
                {"ssh-key-type", "certificates are not accepted"});

  // SSHSIG: an ssh-ca key is not a code-signing key (builders may not sign with it).
  const std::string file = File("small.txt");
  WriteFile(file, "hello\n");
  ExpectRefused(Custos("builder", {"sign", "--format", "sshsig", "--namespace", "file", "--key",
                                   kCa, "--in", file}),
                {"permission denied", "policy rule"});
  // A namespace with characters SSHSIG does not allow.
  ExpectRefused(Custos("builder", {"sign", "--format", "sshsig", "--namespace", "bad ns!", "--key",
                                   kSigner, "--in", file}),
                {"sshsig-namespace"});
  // A release-* key needs quorum: SSHSIG refuses and names the quorum rule.
  ExpectRefused(Custos("builder", {"sign", "--format", "sshsig", "--namespace", "file", "--key",
                                   kRelease, "--in", file}),
                {"release-signing", "quorum"});

  // A digest that is not 64 bytes, sent through the client library.
  auto c = Connect("builder");
  ASSERT_TRUE(c);
  for (std::size_t n : {std::size_t{63}, std::size_t{32}, std::size_t{65}}) {
    v1::Request req;
    req.mutable_sign_sshsig()->set_key(kSigner);
    req.mutable_sign_sshsig()->set_namespace_("file");
    req.mutable_sign_sshsig()->set_sha512_digest(std::string(n, '\x01'));
    auto resp = c->Call(req);
    ASSERT_TRUE(resp.ok());
    EXPECT_EQ(resp->status().code(), v1::INVALID_ARGUMENT);
    EXPECT_EQ(resp->status().message(), "sha512_digest is " + std::to_string(n) +
                                            " bytes; SSHSIG needs the 64-byte SHA-512 of the file");
  }
  // A tampered digest signs, but the signature does not verify for the file.
  {
    v1::Request req;
    req.mutable_sign_sshsig()->set_key(kSigner);
    req.mutable_sign_sshsig()->set_namespace_("file");
    req.mutable_sign_sshsig()->set_sha512_digest(std::string(64, '\x02'));
    auto resp = c->Call(req);
    ASSERT_TRUE(resp.ok());
    ASSERT_EQ(resp->status().code(), v1::OK) << resp->status().message();
    WriteFile(file + ".sig", resp->sign_sshsig().armored());
    WriteFile(File("signers2"), "x@y " + resp->sign_sshsig().ssh_public_key() + "\n");
    CommandResult v = Sh("ssh-keygen -Y verify -f " + File("signers2") + " -I x@y -n file -s " +
                         file + ".sig < " + file);
    EXPECT_NE(v.exit_code, 0) << Dump(v);
  }
  // Oversized and malformed certificate requests are refused, never crash.
  auto admin = Connect("admin");
  ASSERT_TRUE(admin);
  v1::Request big;
  big.mutable_ssh_sign_certificate()->set_key(kCa);
  big.mutable_ssh_sign_certificate()->set_public_key(std::string(9000, 'A'));
  big.mutable_ssh_sign_certificate()->add_principals("alice");
  auto r = admin->Call(big);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status().code(), v1::INVALID_ARGUMENT) << r->status().message();
  v1::Request junk = big;
  junk.mutable_ssh_sign_certificate()->set_public_key("ssh-ed25519 AAAA!!!! x");
  r = admin->Call(junk);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status().code(), v1::INVALID_ARGUMENT) << r->status().message();
  EXPECT_EQ(r->status().policy_rule(), "ssh-key-line") << r->status().message();
}

TEST_F(SshTest, CustosDashYSignWritesWhatSshKeygenVerifies) {
  const std::string pub = File("dash-y.pub");
  ASSERT_EQ(
      Custos("builder", {"keys", "pubkey", kRsaSigner, "--format", "ssh", "--out", pub}).exit_code,
      0);
  const std::string file = File("dash-y.txt");
  WriteFile(file, "content\n");
  const std::map<std::string, std::string> env = {
      {"CUSTOS_CONFIG", deployment_->client_conf("builder")}};
  CommandResult s = Exec({BinPath("custos"), "-Y", "sign", "-n", "file", "-f", pub, file}, env);
  ASSERT_EQ(s.exit_code, 0) << Dump(s);
  WriteFile(File("dash-y-signers"), "me@custos.test " + ReadFile(pub));
  // verify through custos -Y verify, which runs ssh-keygen.
  CommandResult v = Sh(BinPath("custos") + " -Y verify -f " + File("dash-y-signers") +
                       " -I me@custos.test -n file -s " + file + ".sig < " + file);
  EXPECT_EQ(v.exit_code, 0) << Dump(v);
  // A pubkey file without custos:NAME and no CUSTOS_SIGNING_KEY: a clear error.
  const std::string plain = NewSshKey("plain-id");
  CommandResult none =
      Exec({BinPath("custos"), "-Y", "sign", "-n", "file", "-f", plain + ".pub", file}, env);
  EXPECT_NE(none.exit_code, 0);
  EXPECT_TRUE(Contains(none.err, "CUSTOS_SIGNING_KEY")) << Dump(none);
  // CUSTOS_SIGNING_KEY naming another key than the file holds: refused.
  auto env2 = env;
  env2["CUSTOS_SIGNING_KEY"] = kSigner;
  CommandResult other =
      Exec({BinPath("custos"), "-Y", "sign", "-n", "file", "-f", plain + ".pub", file}, env2);
  EXPECT_NE(other.exit_code, 0);
  EXPECT_TRUE(Contains(other.err, "is not the key in")) << Dump(other);
}

// An ssh profile under a CERT_ISSUE quorum rule ("ssh:<name>") is refused
// naming the rule, never signed without the officers; other profiles still sign.
TEST(SshQuorum, ProfileUnderQuorumIsRefusedNamingTheRule) {
  Deployment d;
  std::string policy = ReadFile(d.dir() + "/policy.txtpb");
  policy +=
      "\n# Added by ssh_test.\nquorum_rule {\n  name: \"ssh-host-certs\"\n  operation: CERT_ISSUE\n"
      "  profiles: \"ssh:ssh-host\"\n  group: \"officers\"\n  threshold: 2\n}\n";
  WriteFile(d.dir() + "/policy.txtpb", policy);
  ASSERT_TRUE(d.Start()) << d.log();
  CommandResult create =
      d.Custos("admin", {"keys", "create", "q-ssh-ca", "--type", "ed25519", "--usage", "ssh-ca"});
  ASSERT_EQ(create.exit_code, 6) << Dump(create);
  const std::string id = RequestIdIn(create);
  for (const char* officer : {"alice", "bob"}) {
    ASSERT_EQ(d.Officer(officer, {"approve", id, "--yes"}).exit_code, 0) << officer;
  }
  ASSERT_EQ(d.Custos("admin", {"request", "wait", id, "--timeout", "60s"}).exit_code, 0);
  TempDir work;
  const std::string key = work.path() + "/host";
  ASSERT_EQ(Exec({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key}).exit_code, 0);
  CommandResult host =
      d.Custos("admin", {"ssh", "sign", "--key", "q-ssh-ca", "--pubkey", key + ".pub", "--type",
                         "host", "--principals", "localhost"});
  EXPECT_EQ(host.exit_code, 4) << Dump(host);
  EXPECT_TRUE(Contains(host.err, "FAILED_PRECONDITION")) << Dump(host);
  EXPECT_TRUE(Contains(host.err, "quorum rule ssh-host-certs")) << Dump(host);
  EXPECT_TRUE(Contains(host.err, "(policy rule ssh-host-certs)")) << Dump(host);
  EXPECT_FALSE(Contains(ReadFile(work.path() + "/host-cert.pub"), "cert-v01")) << "signed anyway";
  // Nothing recorded.
  CommandResult list = d.Custos("admin", {"ssh", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << Dump(list);
  EXPECT_EQ(list.out, "[]\n");
  // User certificates (ssh-user, not under quorum) sign with the same Ed25519 CA key.
  CommandResult user = d.Custos("admin", {"ssh", "sign", "--key", "q-ssh-ca", "--pubkey",
                                          key + ".pub", "--principals", "alice"});
  ASSERT_EQ(user.exit_code, 0) << Dump(user);
  CommandResult shown = Exec({"ssh-keygen", "-L", "-f", key + "-cert.pub"});
  EXPECT_TRUE(Contains(shown.out, "Signing CA: ED25519")) << Dump(shown);
}

}  // namespace
}  // namespace custos::testing
