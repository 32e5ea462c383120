// custos-bench: how close custosd comes to the HSM's own signing rate.
//
// Default suite: in one run, on the same token and the same key, it measures
//   1. raw: PKCS#11 signing in this process through pkcs11/ (the HSM limit),
//   2. single: single-digest requests through custosd over mutual TLS, many
//      in flight over several connections,
//   3. batch: batched requests through custosd,
// and prints rate, p50/p99 latency and the ratio service/raw.
//
// --suite full (needs --spawn) adds, in the same run: an open-loop single row
// at half the closed-loop rate, raw vs. single for RSA-2048 and Ed25519, the
// p11-kit forwarding peer, 10,000 idle mutual-TLS connections with custosd's
// resident memory, and the audit log on disk vs. on tmpfs (docs/BENCHMARKS.md,
// "Issue 7", describes every row).
//
//   custos-bench --dir var/dev [--spawn] [--suite full] [--seconds 5] [--json]
//
// --dir is a deployment made by `custos-init dev`; --spawn starts custosd from
// it (and stops it afterwards) instead of using one that is already running.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "bench.h"

#ifndef CUSTOS_BENCH_BUILD_TYPE
#define CUSTOS_BENCH_BUILD_TYPE "unknown"
#endif

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace custos::bench;

namespace {

std::string Json(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string Number(std::optional<double> v, const char* format = "%.3f") {
  if (!v) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, *v);
  return buf;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

std::string CommandOutput(const std::string& command) {
  std::string out;
  if (FILE* p = ::popen(command.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string HsmVersion(const Options& o) {
  if (o.module.find("softhsm") == std::string::npos) return o.module;
  const std::string v = CommandOutput("softhsm2-util --version 2>/dev/null");
  return "SoftHSM " + (v.empty() ? std::string("(softhsm2-util --version failed)") : v);
}

std::string UtcNow() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// The file system type under `path`, by name where we know it.
std::string FileSystemType(const std::string& path, bool* is_tmpfs) {
  struct statfs s {};
  *is_tmpfs = false;
  if (::statfs(path.c_str(), &s) != 0) return "unknown";
  const auto type = static_cast<unsigned long>(s.f_type);
  switch (type) {
    case 0x01021994:
      *is_tmpfs = true;
      return "tmpfs";
    case 0xEF53:
      return "ext4";
    case 0x794c7630:
      return "overlayfs";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "fs type 0x%lx", type);
      return buf;
    }
  }
}

void RaiseNoFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void Print(const Options& o, const std::vector<Row>& rows) {
  if (o.json) {
    std::cout << "[\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::cout << "  {\"name\":" << Json(r.name) << ",\"algorithm\":" << Json(r.algorithm)
                << ",\"mode\":" << Json(r.mode) << ",\"rate\":" << Number(r.rate, "%.1f")
                << ",\"raw_rate\":" << Number(r.raw_rate, "%.1f")
                << ",\"ratio\":" << Number(r.ratio) << ",\"p50_ms\":" << Number(r.p50_ms)
                << ",\"p99_ms\":" << Number(r.p99_ms) << ",\"errors\":" << r.errors;
      for (const auto& [k, v] : r.extra) std::cout << "," << Json(k) << ":" << Number(v, "%.10g");
      if (!r.note.empty()) std::cout << ",\"note\":" << Json(r.note);
      std::cout << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    std::cout << "]\n";
    return;
  }
  std::printf("%-58s %10s %9s %9s %6s %6s  %s\n", "row", "rate/s", "p50 ms", "p99 ms", "ratio",
              "errors", "notes");
  for (const Row& r : rows) {
    std::printf("%-58s %10.0f %9.3f %9.3f %6s %6ld%s%s\n", r.name.c_str(), r.rate, r.p50_ms,
                r.p99_ms, Number(r.ratio, "%.2f").c_str(), r.errors, r.note.empty() ? "" : "  ",
                r.note.c_str());
  }
}

void PrintHeader(const Options& o) {
  // With --json the rows alone go to stdout.
  std::FILE* out = o.json ? stderr : stdout;
  std::fprintf(out, "custos-bench: suite %s%s, %.0f s per row, %s\n", o.suite.c_str(),
               o.suite == "full" ? "" : (" (" + o.key_type + ", " + o.algorithm + ")").c_str(),
               o.seconds, UtcNow().c_str());
  std::fprintf(out, "machine: %u cores, %s; %s; build %s%s\n", std::thread::hardware_concurrency(),
               CpuModel().c_str(), HsmVersion(o).c_str(),
               *CUSTOS_BENCH_BUILD_TYPE ? CUSTOS_BENCH_BUILD_TYPE : "(no CMAKE_BUILD_TYPE)",
#ifdef NDEBUG
               ""
#else
               " (assertions on)"
#endif
  );
  std::fprintf(out,
               "raw rows: %d signing threads%s; ratio = rate / mean of the raw windows "
               "(same algorithm) just before and after the row\n",
               o.threads, o.spawn ? " = custosd --server.workers" : "");
  if (!o.custosd_flags.empty()) {
    std::string flags;
    for (const auto& f : o.custosd_flags) flags += " " + f;
    std::fprintf(out, "custosd started with%s\n", flags.c_str());
  }
}

// "met"/"NOT met" for a ratio target.
std::string Target(const char* what, double value, double target) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s %.2f, target >= %.2f: %s", what, value, target,
                value >= target ? "met" : "NOT met");
  return buf;
}

void AddNote(Row* row, const std::string& note) {
  row->note = row->note.empty() ? note : note + "; " + row->note;
}

// This kind of machine drifts (a shared VM's raw P-256 rate moved by a third
// within a minute here), so each service row is compared with the raw rate
// measured just before and just after it, not with one raw window for the
// whole run. The row keeps both windows (raw_before, raw_after).
void CompareWithRaw(Row* row, const Row& before, const Row& after) {
  const double base = (before.rate + after.rate) / 2;
  row->raw_rate = base;
  if (row->note.rfind("not run", 0) != 0) row->ratio = base > 0 ? row->rate / base : 0;
  row->extra.emplace_back("raw_before", before.rate);
  row->extra.emplace_back("raw_after", after.rate);
}

// The raw row of the table: every raw window of one algorithm, their mean as
// its rate (the latencies are the first window's).
Row RawSummary(const std::vector<Row>& windows) {
  Row row = windows.front();
  double sum = 0;
  std::string rates;
  for (std::size_t i = 0; i < windows.size(); ++i) {
    const Row& w = windows[i];
    sum += w.rate;
    row.errors = std::max(row.errors, w.errors);
    rates += (rates.empty() ? "" : ", ") + std::to_string(static_cast<long>(w.rate + 0.5));
    row.extra.emplace_back("window_" + std::to_string(i + 1) + "_rate", w.rate);
  }
  row.rate = sum / static_cast<double>(windows.size());
  row.raw_rate = row.rate;
  const std::string how = " windows, one before and after each service row: ";
  AddNote(&row, "mean of " + std::to_string(windows.size()) + how + rates);
  return row;
}

std::vector<Row> RunDefaultSuite(const Options& o) {
  Daemon daemon = o.spawn ? SpawnDaemon(o, {}) : Daemon{};
  const BenchKey key = EnsureKey(o, o.key_type);
  std::vector<Row> raw = {RunRaw(o, key)};
  Row single = RunService(o, key, o.connections, o.in_flight, 0);
  raw.push_back(RunRaw(o, key));
  Row batch = RunService(o, key, o.connections, o.batch_in_flight, o.batch);
  raw.push_back(RunRaw(o, key));
  CompareWithRaw(&single, raw[0], raw[1]);
  CompareWithRaw(&batch, raw[1], raw[2]);
  std::vector<Row> rows = {RawSummary(raw), single, batch};
  if (o.open_loop_rate > 0) {
    Row open = RunOpenLoop(o, key, o.connections, o.open_loop_rate);
    raw.push_back(RunRaw(o, key));
    CompareWithRaw(&open, raw[2], raw[3]);
    rows[0] = RawSummary(raw);
    rows.push_back(open);
  }
  StopDaemon(&daemon);
  return rows;
}

std::vector<Row> RunFullSuite(const Options& o) {
  RaiseNoFileLimit();  // custosd inherits it too
  Progress(o, "starting custosd");
  Daemon daemon = SpawnDaemon(o, {});
  const BenchKey p256 = EnsureKey(o, "ec-p256");
  const BenchKey rsa = EnsureKey(o, "rsa-2048");
  const BenchKey ed = EnsureKey(o, "ed25519");

  // Raw windows before and after each service row (CompareWithRaw).
  Progress(o, "row 1: raw P-256");
  std::vector<Row> raw_p256 = {RunRaw(o, p256)};
  Progress(o, "row 2: custosd P-256 batch");
  Row batch = RunService(o, p256, o.connections, o.batch_in_flight, o.batch);
  raw_p256.push_back(RunRaw(o, p256));
  Progress(o, "row 3: custosd P-256 single");
  Row single = RunService(o, p256, o.connections, o.in_flight, 0);
  Progress(o, "row 6: p11-kit peer");  // next to row 3, which it is compared with
  Row peer = RunP11KitPeer(o, p256);
  raw_p256.push_back(RunRaw(o, p256));
  Progress(o, "row 4: custosd P-256 single, open loop at half load");
  Row half = RunOpenLoop(o, p256, o.connections, single.rate / 2);
  raw_p256.push_back(RunRaw(o, p256));
  Progress(o, "row 5: RSA-2048 and Ed25519");
  std::vector<Row> raw_rsa = {RunRaw(o, rsa)};
  Row single_rsa = RunService(o, rsa, o.connections, o.in_flight, 0);
  raw_rsa.push_back(RunRaw(o, rsa));
  std::vector<Row> raw_ed = {RunRaw(o, ed)};
  Row single_ed = RunService(o, ed, o.connections, o.in_flight, 0);
  raw_ed.push_back(RunRaw(o, ed));

  // 8: the same workload as row 3, on disk again (just before) and with the
  // audit log on tmpfs (a fresh log in a directory of ours, removed after).
  Progress(o, "row 8: audit log on disk vs. tmpfs");
  Row disk = RunService(o, p256, o.connections, o.in_flight, 0);
  StopDaemon(&daemon);
  const std::string shm = "/dev/shm/custos-bench-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(shm, ec);
  if (::mkdir(shm.c_str(), 0700) != 0) Die("cannot create " + shm);
  bool shm_is_tmpfs = false, state_is_tmpfs = false;
  const std::string shm_fs = FileSystemType(shm, &shm_is_tmpfs);
  const std::string state_dir = fs::exists(o.dir + "/state") ? o.dir + "/state" : o.dir;
  const std::string state_fs = FileSystemType(state_dir, &state_is_tmpfs);
  daemon = SpawnDaemon(o, {"--audit.log", shm + "/audit.log"});
  Row tmpfs = RunService(o, p256, o.connections, o.in_flight, 0);
  StopDaemon(&daemon);
  // Evidence that custosd wrote its records there: one line per record.
  long tmpfs_records = 0;
  {
    std::ifstream log(shm + "/audit.log");
    std::string line;
    while (std::getline(log, line)) ++tmpfs_records;
  }
  fs::remove_all(shm, ec);

  Progress(o, "row 7: " + std::to_string(o.idle_connections) + " idle mTLS connections");
  daemon = SpawnDaemon(
      o, {"--limits.max-connections", std::to_string(std::max(20000, o.idle_connections + 100)),
          "--limits.idle-timeout-ms", "600000"});
  Row idle = RunIdleConnections(o, daemon);
  StopDaemon(&daemon);

  // Ratios against the raw windows around each row, and the targets. The
  // audit rows are compared with each other (disk_over_tmpfs); their ratio
  // is against the P-256 mean.
  CompareWithRaw(&batch, raw_p256[0], raw_p256[1]);
  CompareWithRaw(&single, raw_p256[1], raw_p256[2]);
  CompareWithRaw(&peer, raw_p256[1], raw_p256[2]);
  CompareWithRaw(&half, raw_p256[2], raw_p256[3]);
  CompareWithRaw(&single_rsa, raw_rsa[0], raw_rsa[1]);
  CompareWithRaw(&single_ed, raw_ed[0], raw_ed[1]);
  const Row raw = RawSummary(raw_p256);
  for (Row* r : {&disk, &tmpfs}) {
    r->raw_rate = raw.rate;
    if (r->note.rfind("not run", 0) != 0) r->ratio = raw.rate > 0 ? r->rate / raw.rate : 0;
  }
  AddNote(&batch, Target("ratio", *batch.ratio, 0.90));
  AddNote(&single, Target("ratio", *single.ratio, 0.70));
  AddNote(&single_rsa, Target("ratio", *single_rsa.ratio, 0.90));
  AddNote(&single_ed, Target("ratio", *single_ed.ratio, 0.90));
  if (peer.rate > 0) {
    const double s = single.rate / peer.rate, b = batch.rate / peer.rate;
    single.extra.emplace_back("peer_rate", peer.rate);
    single.extra.emplace_back("peer_ratio", s);
    batch.extra.emplace_back("peer_rate", peer.rate);
    batch.extra.emplace_back("peer_ratio", b);
    single.note += "; " + Target("vs p11-kit peer", s, 2.0);
    batch.note += "; " + Target("vs p11-kit peer", b, 3.0);
    peer.extra.emplace_back("single_over_peer", s);
    peer.extra.emplace_back("batch_over_peer", b);
    AddNote(&peer, Target("custosd single/peer", s, 2.0) + ", " + Target("batch/peer", b, 3.0));
  }
  disk.mode = "single-audit-disk";
  disk.name = "custosd P-256 single, audit on disk (" + state_fs + ", again)";
  tmpfs.mode = "single-audit-tmpfs";
  tmpfs.name = "custosd P-256 single, audit log on " + shm_fs + " (restarted)";
  const double disk_over_tmpfs = tmpfs.rate > 0 ? disk.rate / tmpfs.rate : 0;
  tmpfs.extra.emplace_back("disk_rate", disk.rate);
  tmpfs.extra.emplace_back("tmpfs_rate", tmpfs.rate);
  tmpfs.extra.emplace_back("disk_over_tmpfs", disk_over_tmpfs);
  disk.extra.emplace_back("disk_over_tmpfs", disk_over_tmpfs);
  char note[128];
  std::snprintf(note, sizeof note, "audit disk/tmpfs = %.2f", disk_over_tmpfs);
  AddNote(&tmpfs, note);
  AddNote(&disk, note);
  tmpfs.extra.emplace_back("tmpfs_audit_records", static_cast<double>(tmpfs_records));
  if (tmpfs_records == 0) AddNote(&tmpfs, "WARNING: custosd wrote no audit record to " + shm);
  if (!shm_is_tmpfs) AddNote(&tmpfs, "WARNING: /dev/shm is not tmpfs here");
  if (state_is_tmpfs) AddNote(&disk, "WARNING: the state dir is on tmpfs: no real fsync cost");

  return {raw,  batch, single, half, RawSummary(raw_rsa), single_rsa, RawSummary(raw_ed), single_ed,
          peer, idle,  disk,   tmpfs};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc(
      "custos-bench: raw PKCS#11 signing rate vs. the rate through custosd\n\n"
      "usage: custos-bench --dir DIR [--spawn] [--suite full] [options]\n\noptions");
  desc.add_options()("help,h", "show this help")(
      "dir", po::value(&o.dir), "a deployment made by `custos-init dev` (required)")(
      "spawn", po::bool_switch(&o.spawn),
      "start custosd from DIR for the run (workers = --threads), stop it after")(
      "custosd-flag", po::value(&o.custosd_flags)->composing(),
      "with --spawn: pass this flag to custosd (repeatable), e.g. "
      "--custosd-flag=--server.io-scheduling=normal")(
      "suite", po::value(&o.suite)->default_value(o.suite),
      "default (raw, single, batch for --key-type) or full (every row of docs/BENCHMARKS.md "
      "\"Issue 7\"; needs --spawn)")("key-type", po::value(&o.key_type)->default_value(o.key_type),
                                     "default suite: ec-p256, ec-p384, rsa-2048, rsa-3072, "
                                     "rsa-4096, ed25519")(
      "algorithm", po::value(&o.algorithm),
      "default suite: signing algorithm (default: from the "
      "key type)")("seconds", po::value(&o.seconds)->default_value(o.seconds),
                   "duration of each row")(
      "threads", po::value(&o.threads)->default_value(o.threads),
      "raw signing threads (and custosd's workers with --spawn)")(
      "connections", po::value(&o.connections)->default_value(o.connections),
      "TLS connections to custosd (and the p11-kit peer's threads)")(
      "in-flight", po::value(&o.in_flight)->default_value(o.in_flight),
      "single-digest requests in flight per connection")(
      "batch", po::value(&o.batch)->default_value(o.batch), "digests per batched request")(
      "batch-in-flight", po::value(&o.batch_in_flight)->default_value(o.batch_in_flight),
      "batched requests in flight per connection")(
      "idle-connections", po::value(&o.idle_connections)->default_value(o.idle_connections),
      "full suite: idle mutual-TLS connections to hold")(
      "handshake-concurrency",
      po::value(&o.handshake_concurrency)->default_value(o.handshake_concurrency),
      "full suite: TLS handshakes in progress at once while opening them")(
      "p11kit", po::value(&o.p11kit)->default_value(o.p11kit), "full suite: the p11-kit program")(
      "p11kit-client", po::value(&o.p11kit_client)->default_value(o.p11kit_client),
      "full suite: p11-kit's PKCS#11 client module")(
      "module", po::value(&o.module)->default_value(o.module), "PKCS#11 module for the raw rows")(
      "token", po::value(&o.token)->default_value(o.token), "token for the raw rows")(
      "open-loop-rate", po::value(&o.open_loop_rate),
      "default suite: add a single-digest open-loop row at this many requests/s (latency from "
      "the scheduled send time)")("json", po::bool_switch(&o.json), "print rows as a JSON list");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "custos-bench: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (o.dir.empty()) {
    std::cerr << "custos-bench: --dir is required (make one with `custos-init dev --dir DIR`)\n";
    return 2;
  }
  if (o.suite != "default" && o.suite != "full") {
    std::cerr << "custos-bench: --suite must be default or full, not \"" << o.suite << "\"\n";
    return 2;
  }
  if (!o.custosd_flags.empty() && !o.spawn) {
    std::cerr << "custos-bench: --custosd-flag needs --spawn\n";
    return 2;
  }
  if (o.suite == "full" && !o.spawn) {
    std::cerr << "custos-bench: --suite full needs --spawn (it restarts custosd with the audit "
                 "log on tmpfs and with higher connection limits)\n";
    return 2;
  }
  if (o.seconds <= 0 || o.threads < 1 || o.connections < 1 || o.in_flight < 1 || o.batch < 1 ||
      o.batch_in_flight < 1 || o.idle_connections < 1 || o.handshake_concurrency < 1) {
    std::cerr << "custos-bench: --seconds and the counts must be positive\n";
    return 2;
  }
  if (o.open_loop_rate < 0 || (o.open_loop_rate > 0 && o.suite == "full")) {
    std::cerr << "custos-bench: --open-loop-rate must be positive and belongs to the default suite "
                 "(the full suite runs its open loop at half of its single-digest rate)\n";
    return 2;
  }
  o.self = argv[0];
  o.dir = fs::absolute(o.dir).lexically_normal().string();
  if (o.algorithm.empty()) o.algorithm = DefaultAlgorithm(o.key_type);
  ::setenv("SOFTHSM2_CONF", (o.dir + "/softhsm2.conf").c_str(), 0);
  ::signal(SIGPIPE, SIG_IGN);

  PrintHeader(o);
  const std::vector<Row> rows = o.suite == "full" ? RunFullSuite(o) : RunDefaultSuite(o);
  Print(o, rows);
  return 0;
}
