// `custos sign` for many files against a real custosd on SoftHSM: 1,000 files
// in one command, every signature verified with OpenSSL (20 through the
// openssl CLI, all through libcrypto, a few through `custos verify`); an
// unreadable file among them fails alone (exit 4); progress as plain lines
// when piped and as a bar in a real terminal (tmux); --out-dir, --files-from,
// --json, the manifest (checked by sha256sum -c and openssl), CUSTOS_*
// environment variables, and a quorum key's pending request (exit 6).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace custos::testing {
namespace {

using namespace std::chrono_literals;

class MultiSign : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    deployment_ = new Deployment();
    ASSERT_TRUE(deployment_->Start()) << deployment_->log();
    CommandResult r = deployment_->Custos(
        "admin", {"keys", "create", kKey, "--type", "ec-p256", "--usage", "code-signing"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    pub_dir_ = new TempDir();
    CommandResult p = deployment_->Custos("builder", {"keys", "pubkey", kKey, "--out", PubPath()});
    ASSERT_EQ(p.exit_code, 0) << p.out << p.err;
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(deployment_->Stop(), 0) << deployment_->log();
    delete pub_dir_;
    pub_dir_ = nullptr;
    delete deployment_;
    deployment_ = nullptr;
  }
  static std::string PubPath() { return pub_dir_->path() + "/pub.pem"; }

  static constexpr const char* kKey = "ms-ec";
  static Deployment* deployment_;
  static TempDir* pub_dir_;
};
Deployment* MultiSign::deployment_ = nullptr;
TempDir* MultiSign::pub_dir_ = nullptr;

std::string Dump(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

std::size_t Count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// `n` small files dir/f0000.txt ... with distinct content.
std::vector<std::string> MakeFiles(const std::string& dir, int n) {
  std::vector<std::string> files;
  for (int i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "/f%04d.txt", i);
    files.push_back(dir + name);
    WriteFile(files.back(), "artifact " + std::to_string(i) + "\n" + std::string(i % 97, 'x'));
  }
  return files;
}

// Verifies an ECDSA P-256 / SHA-256 signature over `file` with libcrypto.
bool VerifiesWithLibcrypto(EVP_PKEY* key, const std::string& file, const std::string& sig_path) {
  if (!std::filesystem::exists(sig_path)) return false;
  const std::string data = ReadFile(file);
  const std::string sig = ReadFile(sig_path);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

EVP_PKEY* LoadPub(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  EVP_PKEY* key = PEM_read_PUBKEY(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return key;
}

CommandResult OpensslVerify(const std::string& pub, const std::string& file,
                            const std::string& sig) {
  return Exec({"openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, file});
}

TEST_F(MultiSign, ThousandFilesOneUnreadableEverySignatureVerifies) {
  Deployment& d = *deployment_;
  TempDir work;
  std::vector<std::string> files = MakeFiles(work.path(), 1000);
  const std::string missing = work.path() + "/missing.bin";  // unreadable: does not exist
  std::vector<std::string> args = {"sign", "--key", kKey};
  args.insert(args.end(), files.begin(), files.begin() + 500);
  args.push_back(missing);
  args.insert(args.end(), files.begin() + 500, files.end());

  const auto start = std::chrono::steady_clock::now();
  CommandResult r = d.Custos("builder", args);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.exit_code, 4) << Dump(r);
  EXPECT_NE(r.out.find("signed 1000 of 1001 files with ms-ec@1 (ecdsa-p256-sha256); 1 failed: "
                       "see above"),
            std::string::npos)
      << Dump(r);
  // The failed file named once, on its own line; the others not at all.
  EXPECT_EQ(Count(r.err, "custos: error:"), 1u) << r.err;
  EXPECT_NE(r.err.find("custos: error: cannot open " + missing), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(missing + ".sig"));
  // Piped: plain progress lines every 10%, no bar.
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("signed 1001/1001 files\n"), std::string::npos) << r.err;
  EXPECT_GE(Count(r.err, "files\n"), 3u) << r.err;
  EXPECT_LE(Count(r.err, "files\n"), 10u) << r.err;
  std::printf(
      "signed 1000 files (+1 missing) in %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));

  // Every signature verifies (libcrypto); 20 of them through the openssl CLI.
  EVP_PKEY* key = LoadPub(PubPath());
  ASSERT_NE(key, nullptr);
  int verified = 0;
  for (const auto& f : files) verified += VerifiesWithLibcrypto(key, f, f + ".sig") ? 1 : 0;
  EXPECT_EQ(verified, 1000);
  // A signature does not verify over another file's content.
  EXPECT_FALSE(VerifiesWithLibcrypto(key, files[1], files[0] + ".sig"));
  EVP_PKEY_free(key);
  for (std::size_t i = 0; i < files.size(); i += 50) {
    CommandResult v = OpensslVerify(PubPath(), files[i], files[i] + ".sig");
    EXPECT_EQ(v.exit_code, 0) << files[i] << ": " << Dump(v);
    EXPECT_NE(v.out.find("Verified OK"), std::string::npos) << v.out;
  }
  CommandResult tampered = OpensslVerify(PubPath(), files[1], files[0] + ".sig");
  EXPECT_NE(tampered.exit_code, 0) << Dump(tampered);
  // And through `custos verify` on a few.
  for (std::size_t i : {0u, 499u, 999u}) {
    CommandResult v = d.Custos(
        "builder", {"verify", "--key", kKey, "--in", files[i], "--sig", files[i] + ".sig"});
    EXPECT_EQ(v.exit_code, 0) << Dump(v);
  }
}

TEST_F(MultiSign, FilesFromOutDirAndJson) {
  Deployment& d = *deployment_;
  TempDir work;
  std::vector<std::string> files = MakeFiles(work.path(), 30);
  const std::string list = work.path() + "/list.txt";
  std::string text;
  for (const auto& f : files) text += f + "\n";
  text += "\n";  // empty lines are skipped
  WriteFile(list, text);
  const std::string out = work.path() + "/sigs";
  std::filesystem::create_directory(out);

  CommandResult r = d.Custos(
      "builder", {"sign", "--key", kKey, "--files-from", list, "--out-dir", out, "--json"});
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  EXPECT_NE(r.out.find("\"key\":\"ms-ec@1\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"files\":30,\"signed\":30,\"failed\":0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"sig\":\"" + out + "/f0007.txt.sig\""), std::string::npos) << r.out;
  EXPECT_EQ(Count(r.out, "\"ok\":true"), 30u) << r.out;
  for (const auto& f : files) {
    const std::string sig = out + "/" + std::filesystem::path(f).filename().string() + ".sig";
    EXPECT_EQ(OpensslVerify(PubPath(), f, sig).exit_code, 0) << sig;
    EXPECT_FALSE(std::filesystem::exists(f + ".sig"));
  }

  // Two files with one base name into one --out-dir: refused before signing.
  TempDir other;
  const std::string twin = other.path() + "/f0001.txt";
  WriteFile(twin, "twin");
  CommandResult dup =
      d.Custos("builder", {"sign", "--key", kKey, "--out-dir", out, files[1], twin});
  EXPECT_EQ(dup.exit_code, 2) << Dump(dup);
  EXPECT_NE(dup.err.find("both sign to " + out + "/f0001.txt.sig"), std::string::npos) << dup.err;
  EXPECT_FALSE(std::filesystem::exists(twin + ".sig"));

  // The single-file form is unchanged.
  const std::string one = work.path() + "/one.sig";
  CommandResult single =
      d.Custos("builder", {"sign", "--key", kKey, "--in", files[0], "--out", one});
  ASSERT_EQ(single.exit_code, 0) << Dump(single);
  EXPECT_NE(single.out.find("signed " + files[0] + " with ms-ec@1 (ecdsa-p256-sha256): " + one),
            std::string::npos)
      << single.out;
  EXPECT_EQ(OpensslVerify(PubPath(), files[0], one).exit_code, 0);
}

TEST_F(MultiSign, ManifestVerifiesWithSha256sumAndOpenssl) {
  Deployment& d = *deployment_;
  TempDir work;
  std::vector<std::string> files = MakeFiles(work.path(), 50);
  const std::string manifest = work.path() + "/MANIFEST";
  std::vector<std::string> args = {"sign", "--key", kKey, "--manifest", manifest};
  // Given in reverse order; the manifest is sorted.
  args.insert(args.end(), files.rbegin(), files.rend());
  CommandResult r = d.Custos("builder", args);
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  EXPECT_NE(r.out.find("signed manifest " + manifest + " (50 files) with ms-ec@1"),
            std::string::npos)
      << r.out;
  const std::string text = ReadFile(manifest);
  EXPECT_EQ(Count(text, "\n"), 50u);
  EXPECT_EQ(text.substr(64, 2 + files[0].size()), "  " + files[0]) << text;
  CommandResult check = Exec({"sha256sum", "-c", "--strict", manifest});
  EXPECT_EQ(check.exit_code, 0) << Dump(check);
  EXPECT_EQ(Count(check.out, ": OK"), 50u) << check.out;
  CommandResult v = OpensslVerify(PubPath(), manifest, manifest + ".sig");
  EXPECT_EQ(v.exit_code, 0) << Dump(v);
  for (const auto& f : files) EXPECT_FALSE(std::filesystem::exists(f + ".sig"));

  // An unreadable file: no manifest at all (exit 5), the file named.
  const std::string partial = work.path() + "/PARTIAL";
  CommandResult bad = d.Custos("builder", {"sign", "--key", kKey, "--manifest", partial, files[0],
                                           work.path() + "/missing"});
  EXPECT_EQ(bad.exit_code, 5) << Dump(bad);
  EXPECT_NE(bad.err.find("cannot open " + work.path() + "/missing"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(partial));
}

// The client config's settings, for passing through the environment instead.
std::map<std::string, std::string> ReadConf(const std::string& path) {
  std::map<std::string, std::string> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (line.empty() || line[0] == '#' || eq == std::string::npos) continue;
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(" \t"));
      s.erase(s.find_last_not_of(" \t") + 1);
      return s;
    };
    std::string k = trim(line.substr(0, eq)), v = trim(line.substr(eq + 1));
    if ((k == "cert" || k == "key" || k == "ca") && !v.empty() && v[0] != '/') {
      v = (base / v).lexically_normal().string();
    }
    out[k] = v;
  }
  return out;
}

TEST_F(MultiSign, EnvironmentVariablesWithoutConfig) {
  Deployment& d = *deployment_;
  std::map<std::string, std::string> conf = ReadConf(d.client_conf("builder"));
  ASSERT_FALSE(conf["server"].empty());
  ASSERT_FALSE(conf["cert"].empty());
  const std::map<std::string, std::string> env = {{"CUSTOS_SERVER", conf["server"]},
                                                  {"CUSTOS_CERT", conf["cert"]},
                                                  {"CUSTOS_KEY", conf["key"]},
                                                  {"CUSTOS_CA", conf["ca"]},
                                                  {"CUSTOS_CONFIG", ""}};
  TempDir work;
  std::vector<std::string> files = MakeFiles(work.path(), 5);
  std::vector<std::string> argv = {BinPath("custos"), "sign", "--key", kKey};
  argv.insert(argv.end(), files.begin(), files.end());
  CommandResult r = Exec(argv, env);
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  for (const auto& f : files) EXPECT_EQ(OpensslVerify(PubPath(), f, f + ".sig").exit_code, 0);

  // Flags beat the environment: a wrong CUSTOS_SERVER, the right --server.
  auto wrong = env;
  wrong["CUSTOS_SERVER"] = "127.0.0.1:1";
  CommandResult bad = Exec({BinPath("custos"), "ping"}, wrong);
  EXPECT_EQ(bad.exit_code, 3) << Dump(bad);
  CommandResult good = Exec({BinPath("custos"), "--server", conf["server"], "ping"}, wrong);
  EXPECT_EQ(good.exit_code, 0) << Dump(good);
  // The environment beats the config file.
  CommandResult over =
      Exec({BinPath("custos"), "--config", d.client_conf("builder"), "ping"}, wrong);
  EXPECT_EQ(over.exit_code, 3) << Dump(over);
}

TEST_F(MultiSign, ProgressBarInATerminal) {
  Deployment& d = *deployment_;
  if (Exec({"tmux", "-V"}).exit_code != 0) GTEST_SKIP() << "tmux is not installed";
  TempDir work;
  std::vector<std::string> files = MakeFiles(work.path(), 200);
  const std::string list = work.path() + "/list.txt";
  std::string text;
  for (const auto& f : files) text += f + "\n";
  WriteFile(list, text);
  const std::string socket = work.path() + "/tmux.sock";
  const std::string command = BinPath("custos") + " --config " + d.client_conf("builder") +
                              " sign --key " + kKey + " --files-from - < " + list +
                              "; echo \"[custos exited $?]\"; sleep 60";
  CommandResult started = Exec({"tmux", "-S", socket, "-f", "/dev/null", "new-session", "-d", "-s",
                                "ms", "-x", "160", "-y", "20", command});
  ASSERT_EQ(started.exit_code, 0) << Dump(started);
  std::string pane;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    pane = Exec({"tmux", "-S", socket, "capture-pane", "-p", "-J", "-S", "-", "-t", "ms"}).out;
    if (pane.find("[custos exited") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  Exec({"tmux", "-S", socket, "kill-server"});
  EXPECT_NE(pane.find("[custos exited 0]"), std::string::npos) << pane;
  // One bar line, redrawn in place, ending full; no plain progress lines.
  EXPECT_NE(pane.find("[##############################] 200/200 files signed"), std::string::npos)
      << pane;
  EXPECT_EQ(Count(pane, "files signed"), 1u) << pane;
  EXPECT_EQ(pane.find("signed 200/200 files"), std::string::npos) << pane;
  EXPECT_NE(pane.find("signed 200 of 200 files with ms-ec@1 (ecdsa-p256-sha256)"),
            std::string::npos)
      << pane;
  for (std::size_t i = 0; i < files.size(); i += 40) {
    EXPECT_EQ(OpensslVerify(PubPath(), files[i], files[i] + ".sig").exit_code, 0) << files[i];
  }
}

TEST_F(MultiSign, QuorumKeyReportsPendingRequest) {
  Deployment& d = *deployment_;
  CommandResult create = d.Custos(
      "admin", {"keys", "create", "release-ms", "--type", "ec-p256", "--usage", "code-signing"});
  ASSERT_EQ(create.exit_code, 0) << Dump(create);
  TempDir work;
  std::vector<std::string> files = MakeFiles(work.path(), 3);
  std::vector<std::string> args = {"sign", "--key", "release-ms"};
  args.insert(args.end(), files.begin(), files.end());
  CommandResult r = d.Custos("builder", args);
  EXPECT_EQ(r.exit_code, 6) << Dump(r);
  EXPECT_NE(r.out.find("pending approval: rq-"), std::string::npos) << Dump(r);
  EXPECT_NE(r.out.find("3 await approval"), std::string::npos) << Dump(r);
  for (const auto& f : files) EXPECT_FALSE(std::filesystem::exists(f + ".sig"));
}

// --wait: the batch held for approval is waited for, and once two officers
// approve, every file's signature is written and verifies.
TEST_F(MultiSign, QuorumKeyWithWaitWritesSignaturesAfterApproval) {
  Deployment& d = *deployment_;
  CommandResult create = d.Custos(
      "admin", {"keys", "create", "release-msw", "--type", "ec-p256", "--usage", "code-signing"});
  ASSERT_EQ(create.exit_code, 0) << Dump(create);
  TempDir work;
  const std::string pub = work.path() + "/release-msw.pem";
  ASSERT_EQ(d.Custos("builder", {"keys", "pubkey", "release-msw", "--out", pub}).exit_code, 0);
  std::vector<std::string> files = MakeFiles(work.path(), 5);
  std::vector<std::string> args = {"sign", "--key",  "release-msw", "--wait",
                                   "90s",  "--note", "nightly"};
  args.insert(args.end(), files.begin(), files.end());
  CommandResult signing;
  std::thread signer([&] { signing = d.Custos("builder", args); });

  // Find the request the command is waiting on, then approve it twice.
  std::string id;
  for (int i = 0; i < 150 && id.empty(); ++i) {
    // Other tests here leave requests of their own: take the one for this key.
    CommandResult list = d.Custos("builder", {"request", "list", "--json"});
    for (auto at = list.out.find("\"id\":\"rq-"); at != std::string::npos && id.empty();) {
      const auto next = list.out.find("\"id\":\"rq-", at + 1);
      const std::string entry =
          list.out.substr(at, next == std::string::npos ? std::string::npos : next - at);
      if (entry.find("release-msw") != std::string::npos) {
        id = entry.substr(6, entry.find('"', 6) - 6);
      }
      at = next;
    }
    if (id.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_FALSE(id.empty()) << "no pending request appeared";
  for (const char* officer : {"alice", "bob"}) {
    CommandResult vote = d.Officer(officer, {"approve", id, "--yes"});
    EXPECT_EQ(vote.exit_code, 0) << officer << ": " << Dump(vote);
  }
  signer.join();
  EXPECT_EQ(signing.exit_code, 0) << Dump(signing);
  EXPECT_NE(signing.err.find(id + " needs approval; waiting up to 90s"), std::string::npos)
      << Dump(signing);
  EXPECT_NE(signing.out.find("signed 5 of 5 files with release-msw@1"), std::string::npos)
      << Dump(signing);
  // One pending request for the whole run, not one per batch.
  EXPECT_EQ(Count(signing.err, "needs approval"), 1u) << Dump(signing);
  for (const auto& f : files) {
    EXPECT_EQ(OpensslVerify(pub, f, f + ".sig").exit_code, 0) << f;
  }
}

TEST_F(MultiSign, UsageErrors) {
  Deployment& d = *deployment_;
  CommandResult none = d.Custos("builder", {"sign", "--key", kKey, "--files-from", "/dev/null"});
  EXPECT_EQ(none.exit_code, 2) << Dump(none);
  EXPECT_NE(none.err.find("no files to sign"), std::string::npos) << none.err;
  CommandResult mixed = d.Custos("builder", {"sign", "--key", kKey, "--in", "a", "b"});
  EXPECT_EQ(mixed.exit_code, 2) << Dump(mixed);
  CommandResult nodir =
      d.Custos("builder", {"sign", "--key", kKey, "--out-dir", "/nonexistent-dir", "a"});
  EXPECT_EQ(nodir.exit_code, 5) << Dump(nodir);
}

}  // namespace
}  // namespace custos::testing
