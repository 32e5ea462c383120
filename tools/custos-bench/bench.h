// custos-bench internals shared by its source files (see custos_bench_main.cc
// for what the tool measures and docs/BENCHMARKS.md for every row).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/pkcs11/token.h"

namespace custos::bench {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string dir;
  std::string self;  // argv[0]: custosd is looked up beside it
  std::string module = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token = "pkcs11:token=custos-dev";
  std::string key_type = "ec-p256";
  std::string algorithm;  // derived from the key type when empty
  std::string suite = "default";
  double seconds = 5;
  int threads = 2;  // raw signing threads = custosd's workers when spawned
  int connections = 8;
  int in_flight = 8;  // per connection
  int batch = 64;
  int batch_in_flight = 2;  // batches per connection
  bool spawn = false;
  // --spawn: more custosd flags, e.g. "--server.io-scheduling=normal" for an A/B run.
  std::vector<std::string> custosd_flags;
  bool json = false;
  double open_loop_rate = 0;  // default suite: adds an open-loop row at this rate
  // --suite full only.
  int idle_connections = 10000;
  int handshake_concurrency = 16;
  std::string p11kit = "p11-kit";
  std::string p11kit_client = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";
};

// One line of the table / one object of the JSON list. Numbers that do not
// apply to a row are nullopt (null in JSON, "-" in the table).
struct Row {
  std::string name;
  std::string algorithm;
  std::string mode;
  double rate = 0;  // per second: signatures, or handshakes for idle-connections
  std::optional<double> raw_rate;
  std::optional<double> ratio;  // rate / raw_rate
  double p50_ms = 0;
  double p99_ms = 0;
  long errors = 0;
  // Extra numeric fields for --json (e.g. rss_mb, peer_rate), in order.
  std::vector<std::pair<std::string, double>> extra;
  std::string note;  // shown in the table's last column and as "note" in JSON
};

// What a timed run measured.
struct Measurement {
  double rate = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  long errors = 0;
  std::string first_error;
};

// The key custosd signs with and its identity on the token.
struct BenchKey {
  std::string name;
  std::string key_type;
  std::string algorithm;
  std::string token_label;
  std::vector<std::uint8_t> token_id;
  std::vector<std::uint8_t> spki;
};

[[noreturn]] void Die(const std::string& message);
void Progress(const Options& o, const std::string& message);  // stderr, --suite full only
double Percentile(std::vector<double>& v, double p);
std::string DefaultAlgorithm(const std::string& key_type);
std::size_t InputSize(const std::string& algorithm);
std::string RandomBytes(std::size_t n);
std::string AlgorithmLabel(const std::string& key_type);  // "P-256", "RSA-2048", ...

client::ClientConfig LoadConfig(const Options& o, const std::string& who, std::size_t in_flight);

// Creates bench-<key_type> through custosd as admin if absent; returns it.
BenchKey EnsureKey(const Options& o, const std::string& key_type);

// A custosd started from o.dir/custosd.conf with extra flags.
struct Daemon {
  pid_t pid = -1;
};
// Starts custosd (workers = o.threads, plus `extra` flags) and waits until it
// answers a ping; dies with the log's path if it does not.
Daemon SpawnDaemon(const Options& o, const std::vector<std::string>& extra);
void StopDaemon(Daemon* d);
// VmRSS of a process in MiB, or nullopt if it cannot be read.
std::optional<double> ResidentMiB(pid_t pid);

// Signs from `threads` threads for o.seconds through `token` with `key`.
Measurement SignOnToken(const Options& o, pkcs11::Token& token, const pkcs11::KeyRef& key,
                        const std::string& algorithm, int threads);
// Opens the token of o.module and measures raw signing with o.threads.
Row RunRaw(const Options& o, const BenchKey& key);
// Closed loop: keeps `depth` requests in flight on each of `connections`
// clients; each request carries `items` digests (0: a single sign).
Row RunService(const Options& o, const BenchKey& key, int connections, int depth, int items);
// Open loop: single signs paced at `rate` per second over `connections`;
// latency counts from each request's scheduled send time.
Row RunOpenLoop(const Options& o, const BenchKey& key, int connections, double rate);

// p11-kit server + p11-kit-client.so on the same token and key, signing from
// o.connections threads. On failure the row's note says why (rate 0).
Row RunP11KitPeer(const Options& o, const BenchKey& key);

// N idle mutual-TLS connections to the running custosd `daemon`.
Row RunIdleConnections(const Options& o, const Daemon& daemon);

}  // namespace custos::bench
