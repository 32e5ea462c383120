// Fail closed: the audit log lives on a small tmpfs that the test fills up
// during signing load. custosd must then refuse every operation but ping
// with UNAVAILABLE ("audit log unavailable: ..."), never answer OK without a
// durable record, and resume by itself, without a restart, once space is
// free again. Needs root (mount); skipped otherwise.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "audit_helpers.h"
#include "harness.h"

namespace custos::testing {
namespace {

using namespace std::chrono_literals;

class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
    std::filesystem::create_directories(dir);
    const std::string opts = "size=" + size + ",mode=0700";
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      error_ = std::strerror(errno);
    } else {
      mounted_ = true;
    }
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// Writes zeros to `path` until the file system is full.
void FillUp(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::setvbuf(f, nullptr, _IONBF, 0);
  const std::string block(4096, '\0');
  while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {
  }
  // Fill the last partial page too, byte by byte.
  while (std::fwrite(block.data(), 1, 1, f) == 1) {
  }
  std::fclose(f);
}

bool SignOnce(const Deployment& d, std::string* err) {
  const std::string in = d.dir() + "/msg.txt";
  WriteFile(in, "fail closed\n");
  auto r = d.Custos("builder", {"sign", "--key", "fc-sign", "--in", in, "--out", in + ".sig"});
  *err = r.err;
  return r.exit_code == 0;
}

TEST(AuditFailClosed, FullAuditStorageRefusesOperationsThenRecovers) {
  Deployment d;
  const std::string fs_dir = d.dir() + "/auditfs";
  // Room for a few seconds of records (about 500 bytes each) around the
  // outage; FillUp() takes the rest.
  TmpfsMount mount(fs_dir, "16m");
  if (!mount.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << mount.error()
                 << "); this test needs root, as in CI";
  }
  const std::string log = fs_dir + "/audit.log";
  WriteFile(d.dir() + "/custosd.conf", ReadFile(d.dir() + "/custosd.conf") + "\n[audit]\nlog = " +
                                           log + "\ncheckpoint-records = 100\nretry-ms = 200\n");
  ASSERT_TRUE(d.Start()) << d.log();
  ASSERT_EQ(d.Custos("admin",
                     {"keys", "create", "fc-sign", "--type", "ec-p256", "--usage", "code-signing"})
                .exit_code,
            0);
  ASSERT_EQ(
      d.Custos("builder", {"keys", "pubkey", "audit", "--out", d.dir() + "/audit.pem"}).exit_code,
      0);

  std::vector<Received> received;
  std::map<std::string, int> failures;
  {
    SignLoad load(d, "fc-sign", "fc", 2, 8);
    std::this_thread::sleep_for(300ms);
    FillUp(fs_dir + "/filler");
    // Refused while full: UNAVAILABLE with the reason, ping still served. A
    // few more records may still fit in the log's last tmpfs page, so sign
    // until the writer hits the full file system (fast on an idle machine,
    // slower under a sanitizer).
    std::string err;
    bool refused = false;
    for (int i = 0; i < 200 && !refused; ++i) {
      refused = !SignOnce(d, &err);
      if (!refused) std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(refused) << "still signing after the audit file system filled up";
    EXPECT_NE(err.find("audit log unavailable"), std::string::npos) << err;
    EXPECT_NE(err.find("refusing to act unrecorded"), std::string::npos) << err;
    auto create = d.Custos(
        "admin", {"keys", "create", "fc-2", "--type", "ec-p256", "--usage", "code-signing"});
    EXPECT_NE(create.exit_code, 0);
    EXPECT_NE(create.err.find("audit log unavailable"), std::string::npos) << create.err;
    auto ping = d.Custos("builder", {"ping"});
    EXPECT_EQ(ping.exit_code, 0) << ping.err;
    EXPECT_TRUE(d.running());
    // Space again: service resumes without a restart. The load stops first:
    // at its rate it would fill the small file system again within a second.
    load.Stop();
    std::filesystem::remove(fs_dir + "/filler");
    bool resumed = false;
    for (int i = 0; i < 50 && !resumed; ++i) {
      resumed = SignOnce(d, &err);
      if (!resumed) std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(resumed) << "still refusing after space was freed: " << err;
    std::this_thread::sleep_for(300ms);
    load.Stop();
    received = load.received();
    failures = load.failures();
  }
  EXPECT_GT(failures["UNAVAILABLE"], 0) << "the load never saw the outage";
  ASSERT_EQ(d.Stop(), 0) << d.log();
  EXPECT_NE(d.log().find("audit_unavailable"), std::string::npos);
  EXPECT_NE(d.log().find("audit_resumed"), std::string::npos);

  auto verify =
      Exec({BinPath("custos-audit"), "verify", "--log", log, "--pubkey", d.dir() + "/audit.pem"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  std::map<std::string, std::string> by_trace;
  bool resumed_event = false;
  for (const auto& l : ReadLines(log)) {
    if (Field(l, "kind") == "request" && Field(l, "outcome") == "OK") {
      by_trace[Field(l, "trace_id")] = Field(l, "op_sha256");
    }
    resumed_event |= Field(l, "op") == "audit_resumed";
  }
  EXPECT_TRUE(resumed_event);
  std::size_t missing = 0;
  for (const auto& r : received) {
    auto it = by_trace.find(r.trace_id);
    if (it == by_trace.end() || it->second != r.op_sha256) ++missing;
  }
  EXPECT_EQ(missing, 0u) << "signatures answered without a durable record, of " << received.size();
}

}  // namespace
}  // namespace custos::testing
