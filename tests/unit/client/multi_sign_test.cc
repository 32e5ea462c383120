// `custos sign` for many files: the file list, signature paths, the manifest
// format, batch sizes and progress output (multi_sign_plan.cc), and the
// argument handling of the real binary, which must refuse before connecting.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "multi_sign.h"

namespace custos::cli {
namespace {

TEST(FileList, OnePathPerLineEmptyLinesSkipped) {
  EXPECT_EQ(ParseFileList("a\nb c\r\n\n/d/e\n"), (std::vector<std::string>{"a", "b c", "/d/e"}));
  EXPECT_EQ(ParseFileList("last-without-newline"),
            (std::vector<std::string>{"last-without-newline"}));
  EXPECT_TRUE(ParseFileList("").empty());
  EXPECT_TRUE(ParseFileList("\n\r\n\n").empty());
  EXPECT_EQ(ParseFileList(" lead and trail "), (std::vector<std::string>{" lead and trail "}));
}

TEST(SignaturePaths, BesideEachFile) {
  std::vector<std::string> sigs;
  EXPECT_EQ(PlanSignaturePaths({"a.bin", "dir/b.bin"}, "", &sigs), std::nullopt);
  EXPECT_EQ(sigs, (std::vector<std::string>{"a.bin.sig", "dir/b.bin.sig"}));
}

TEST(SignaturePaths, IntoOutDirByBaseName) {
  std::vector<std::string> sigs;
  EXPECT_EQ(PlanSignaturePaths({"x/a.bin", "y/b.bin"}, "out", &sigs), std::nullopt);
  EXPECT_EQ(sigs, (std::vector<std::string>{"out/a.bin.sig", "out/b.bin.sig"}));
}

TEST(SignaturePaths, DuplicatesRefusedNamingBoth) {
  std::vector<std::string> sigs;
  auto error = PlanSignaturePaths({"x/a.bin", "q", "y/a.bin"}, "out", &sigs);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(*error,
            "x/a.bin and y/a.bin both sign to out/a.bin.sig (give each file once, with distinct "
            "base names)");
  error = PlanSignaturePaths({"a", "b", "a"}, "", &sigs);
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("a and a both sign to a.sig"), std::string::npos) << *error;
  error = PlanSignaturePaths({"dir/"}, "out", &sigs);
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("has no file name"), std::string::npos) << *error;
}

std::string Sha256(const std::string& data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

TEST(Manifest, SortedSha256sumLines) {
  std::string text;
  ASSERT_EQ(
      ManifestText({{"b/2", Sha256("two")}, {"a 1", Sha256("")}, {"B", Sha256("abc")}}, &text),
      std::nullopt);
  EXPECT_EQ(text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  B\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a 1\n"
            "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3  b/2\n");
  EXPECT_EQ(ManifestText({}, &text), std::nullopt);
  EXPECT_EQ(text, "");
}

TEST(Manifest, LineBreakInPathRefused) {
  std::string text;
  auto error = ManifestText({{"bad\nname", Sha256("x")}}, &text);
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("line break"), std::string::npos);
}

TEST(Batches, SizeBetweenOneAndTheLimit) {
  EXPECT_EQ(BatchSize(1), 1u);
  EXPECT_EQ(BatchSize(20), 1u);
  EXPECT_EQ(BatchSize(21), 2u);
  EXPECT_EQ(BatchSize(1000), 50u);
  EXPECT_EQ(BatchSize(100000), kMaxBatchItems);
  EXPECT_LE(kMaxBatchItems, 1024u);  // the server's limit
}

TEST(ProgressText, Bar) {
  EXPECT_EQ(ProgressBarText(0, 10, 10), "[----------] 0/10 files signed");
  EXPECT_EQ(ProgressBarText(3, 10, 10), "[###-------] 3/10 files signed");
  EXPECT_EQ(ProgressBarText(10, 10, 10), "[##########] 10/10 files signed");
  EXPECT_EQ(ProgressBarText(0, 0, 4), "[####] 0/0 files signed");
}

std::string Captured(const std::function<void(std::FILE*)>& write) {
  char* buf = nullptr;
  std::size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  write(f);
  std::fclose(f);
  std::string out(buf, size);
  std::free(buf);
  return out;
}

TEST(ProgressOutput, PlainLinesEveryTenPercent) {
  const std::string out = Captured([](std::FILE* f) {
    Progress p(1000, /*terminal=*/false, f);
    for (std::size_t done = 0; done <= 1000; done += 50) p.Update(done);
    p.Note("custos: error: x: cannot open");
    p.Finish();
  });
  EXPECT_EQ(out,
            "signed 100/1000 files\nsigned 200/1000 files\nsigned 300/1000 files\n"
            "signed 400/1000 files\nsigned 500/1000 files\nsigned 600/1000 files\n"
            "signed 700/1000 files\nsigned 800/1000 files\nsigned 900/1000 files\n"
            "signed 1000/1000 files\ncustos: error: x: cannot open\n");
}

TEST(ProgressOutput, CoarseStepsPrintOneLineEach) {
  const std::string out = Captured([](std::FILE* f) {
    Progress p(4, false, f);
    for (std::size_t done = 0; done <= 4; ++done) p.Update(done);
  });
  EXPECT_EQ(out, "signed 1/4 files\nsigned 2/4 files\nsigned 3/4 files\nsigned 4/4 files\n");
}

TEST(ProgressOutput, TerminalBarRedrawnInPlace) {
  const std::string out = Captured([](std::FILE* f) {
    Progress p(2, /*terminal=*/true, f);
    p.Update(1);
    p.Note("custos: error: b: refused");
    p.Update(2);
    p.Finish();
  });
  const std::string half = "[###############---------------] 1/2 files signed";
  const std::string full = "[##############################] 2/2 files signed";
  EXPECT_EQ(out, "\r" + half + "\r\033[Kcustos: error: b: refused\n" + half + "\r" + full + "\n");
}

// --- The binary: refusals before any connection ---

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

class SignManyBinary : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/custos-multi-sign-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs custos with `args` (shell words) and `env` (shell assignments),
  // with no other configuration from the environment.
  RunResult Custos(const std::string& args, const std::string& env = "") {
    const std::string out = dir_ + "/out", err = dir_ + "/err";
    const std::string command =
        "env -u CUSTOS_CONFIG -u CUSTOS_SERVER -u CUSTOS_CERT -u CUSTOS_KEY -u CUSTOS_CA " + env +
        " " + std::string(CUSTOS_CLI) + " " + args + " >" + out + " 2>" + err + " </dev/null";
    const int status = std::system(command.c_str());
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string dir_;
};

TEST_F(SignManyBinary, UsageErrorsExitTwoWithOneLine) {
  struct Case {
    std::string args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"sign a b", "usage: custos sign --key NAME[@V]"},
      {"sign --key k --in a --out a.sig b", "--in/--out sign one file"},
      {"sign --key k --wait soon a b", "--wait"},
      {"sign --key k --manifest M --out-dir D a", "it does not take --out-dir"},
      {"sign --key k --files-from /dev/null", "no files to sign"},
      {"sign --key k --out-dir " + dir_ + " x/a y/a", "refusing to sign: x/a and y/a both sign to"},
      {"sign --key k a a", "a and a both sign to a.sig"},
      {"verify --key k --files-from L", "option --files-from does not apply to 'verify'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    RunResult r = Custos(c.args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(SignManyBinary, FileErrorsExitFive) {
  RunResult r = Custos("sign --key k --files-from " + dir_ + "/no-such-list");
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("no-such-list"), std::string::npos) << r.err;
  r = Custos("sign --key k --out-dir " + dir_ + "/no-such-dir a");
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("is not a directory"), std::string::npos) << r.err;
}

TEST_F(SignManyBinary, EnvironmentFillsSettingsAndFlagsWin) {
  // CUSTOS_SERVER is used without --config...
  RunResult r = Custos("ping", "CUSTOS_SERVER=from-env");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("server address 'from-env' is not HOST:PORT"), std::string::npos) << r.err;
  // ... and --server overrides it.
  r = Custos("--server from-flag ping", "CUSTOS_SERVER=from-env");
  EXPECT_NE(r.err.find("'from-flag'"), std::string::npos) << r.err;
  // The environment overrides the config file.
  const std::string conf = dir_ + "/c.conf";
  std::ofstream(conf) << "server = from-file\ncert = c.pem\nkey = k.pem\nca = ca.pem\n";
  r = Custos("--config " + conf + " ping", "CUSTOS_SERVER=from-env");
  EXPECT_NE(r.err.find("'from-env'"), std::string::npos) << r.err;
  r = Custos("--config " + conf + " ping");
  EXPECT_NE(r.err.find("'from-file'"), std::string::npos) << r.err;
  // Missing settings name their variable.
  r = Custos("ping", "CUSTOS_SERVER=127.0.0.1:1");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("CUSTOS_CERT"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace custos::cli
