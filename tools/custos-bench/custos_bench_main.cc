// custos-bench: how close custosd comes to the HSM's own signing rate.
//
// In one run, on the same token and the same key, it measures
//   1. raw: PKCS#11 signing in this process through pkcs11/ (the HSM limit),
//   2. single: single-digest requests through custosd over mutual TLS, many
//      in flight over several connections,
//   3. batch: batched requests through custosd,
// and prints rate, p50/p99 latency and the ratio service/raw.
//
//   custos-bench --dir var/dev [--spawn] [--key-type ec-p256] [--seconds 5]
//
// --dir is a deployment made by `custos-init dev`; --spawn starts custosd from
// it (and stops it afterwards) instead of using one that is already running.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/pkcs11/secret.h"
#include "custos/pkcs11/token.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string dir;
  std::string module = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token = "pkcs11:token=custos-dev";
  std::string key_type = "ec-p256";
  std::string algorithm;  // derived from the key type when empty
  double seconds = 5;
  int threads = 2;  // raw signing threads
  int connections = 8;
  int in_flight = 8;  // per connection
  int batch = 64;
  int batch_in_flight = 2;  // batches per connection
  bool spawn = false;
  bool json = false;
};

struct Row {
  std::string name;
  std::string mode;
  double rate = 0;  // signatures per second
  double p50_ms = 0;
  double p99_ms = 0;
  double ratio = 0;  // rate / raw rate
  long errors = 0;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

std::string DefaultAlgorithm(const std::string& key_type) {
  if (key_type == "ec-p256") return "ecdsa-p256-sha256";
  if (key_type == "ec-p384") return "ecdsa-p384-sha384";
  if (key_type == "ed25519") return "ed25519";
  return "rsa-pkcs1-sha256";
}

std::size_t DigestSize(const std::string& algorithm) {
  if (algorithm.find("sha384") != std::string::npos) return 48;
  if (algorithm.find("sha512") != std::string::npos) return 64;
  if (algorithm == "ed25519") return 64;  // a 64-byte message
  return 32;
}

std::string RandomBytes(std::size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "custos-bench: " << message << "\n";
  std::exit(1);
}

custos::client::ClientConfig LoadConfig(const Options& o, const std::string& who) {
  auto config = custos::client::LoadClientConfig(o.dir + "/clients/" + who + ".conf");
  if (!config.ok()) Die(config.error().message());
  config->max_in_flight = static_cast<std::size_t>(std::max(o.in_flight, o.batch_in_flight));
  return config.value();
}

custos::v1::Response MustCall(custos::client::Client& client, custos::v1::Request request) {
  auto r = client.Call(std::move(request));
  if (!r.ok()) Die(r.error().message());
  return r.value();
}

// The key custosd signs with; created through custosd (as admin) if absent.
struct BenchKey {
  std::string name;
  std::string token_label;
  std::vector<std::uint8_t> token_id;
  std::vector<std::uint8_t> spki;
};

std::vector<std::uint8_t> FromHex(const std::string& hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

BenchKey EnsureKey(const Options& o) {
  auto admin = custos::client::Client::Connect(LoadConfig(o, "admin"));
  if (!admin.ok()) Die(admin.error().message());
  BenchKey key;
  key.name = "bench-" + o.key_type;
  custos::v1::Request create;
  create.mutable_create_key()->set_name(key.name);
  create.mutable_create_key()->set_key_type(o.key_type);
  create.mutable_create_key()->set_usage("code-signing");
  auto created = MustCall(**admin, create);
  if (created.status().code() != custos::v1::OK &&
      created.status().code() != custos::v1::ALREADY_EXISTS) {
    Die("cannot create " + key.name + ": " + created.status().message());
  }
  custos::v1::Request get;
  get.mutable_get_key()->set_key(key.name);
  auto info = MustCall(**admin, get);
  if (info.status().code() != custos::v1::OK) Die(info.status().message());
  for (const auto& v : info.get_key().versions()) {
    if (v.version() == info.get_key().active_version()) {
      key.token_label = v.token_label();
      key.token_id = FromHex(v.token_id());
    }
  }
  custos::v1::Request pub;
  pub.mutable_get_public_key()->set_key(key.name);
  auto p = MustCall(**admin, pub);
  if (p.status().code() != custos::v1::OK) Die(p.status().message());
  key.spki.assign(p.get_public_key().spki_der().begin(), p.get_public_key().spki_der().end());
  return key;
}

Row RunRaw(const Options& o, const BenchKey& key) {
  custos::pkcs11::TokenConfig config;
  config.module_path = o.module;
  config.token = o.token;
  auto pin = custos::pkcs11::ReadPinFile(o.dir + "/secrets/user.pin");
  if (!pin.ok()) Die(pin.error().message());
  config.pin = std::move(pin.value());
  config.max_sessions = static_cast<std::size_t>(o.threads);
  auto token = custos::pkcs11::Token::Open(std::move(config));
  if (!token.ok()) Die("cannot open the token: " + token.error().message());
  auto ref = (*token)->FindKey(key.token_label, key.token_id);
  if (!ref.ok()) Die("cannot find " + key.token_label + ": " + ref.error().message());
  if (ref->spki_der != key.spki) Die("the token key does not match custosd's public key");
  auto alg = custos::pkcs11::ParseSignAlgorithm(o.algorithm);
  if (!alg) Die("unknown algorithm " + o.algorithm);

  std::atomic<bool> stop{false};
  std::atomic<long> errors{0};
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(o.threads));
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int t = 0; t < o.threads; ++t) {
    workers.emplace_back([&, t] {
      const std::string input = RandomBytes(DigestSize(o.algorithm));
      std::span<const std::uint8_t> span(reinterpret_cast<const std::uint8_t*>(input.data()),
                                         input.size());
      auto& lat = latencies[static_cast<std::size_t>(t)];
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = Clock::now();
        auto sig = (*token)->Sign(ref.value(), *alg, span);
        if (!sig.ok()) {
          errors.fetch_add(1);
          continue;
        }
        lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& w : workers) w.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  Row row;
  row.name = "raw pkcs11, " + std::to_string(o.threads) + " threads";
  row.mode = "raw";
  row.rate = static_cast<double>(all.size()) / elapsed;
  row.p50_ms = Percentile(all, 0.50);
  row.p99_ms = Percentile(all, 0.99);
  row.ratio = 1.0;
  row.errors = errors.load();
  return row;
}

// Keeps `depth` requests in flight on each of `connections` clients for the
// configured time; each request carries `items` digests (0: a single sign).
Row RunService(const Options& o, const std::string& key, int connections, int depth, int items) {
  struct Conn {
    std::unique_ptr<custos::client::Client> client;
    std::mutex mu;
    std::vector<double> latencies;
  };
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < connections; ++i) {
    auto c = custos::client::Client::Connect(LoadConfig(o, "builder"));
    if (!c.ok()) Die(c.error().message());
    auto conn = std::make_unique<Conn>();
    conn->client = std::move(c.value());
    conns.push_back(std::move(conn));
  }
  const std::string payload = RandomBytes(DigestSize(o.algorithm));
  auto make_request = [&]() {
    custos::v1::Request r;
    if (items == 0) {
      auto* s = r.mutable_sign();
      s->set_key(key);
      s->set_algorithm(o.algorithm);
      if (o.algorithm == "ed25519") {
        s->set_message(payload);
      } else {
        s->set_digest(payload);
      }
    } else {
      auto* b = r.mutable_sign_batch();
      b->set_key(key);
      b->set_algorithm(o.algorithm);
      for (int i = 0; i < items; ++i) {
        auto* item = b->add_items();
        item->set_ref(std::to_string(i));
        if (o.algorithm == "ed25519") {
          item->set_message(payload);
        } else {
          item->set_digest(payload);
        }
      }
    }
    return r;
  };

  std::atomic<bool> stop{false};
  std::atomic<long> signatures{0}, errors{0};
  std::atomic<int> outstanding{0};
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::string first_error;

  std::function<void(Conn*)> issue = [&](Conn* conn) {
    outstanding.fetch_add(1);
    const auto t0 = Clock::now();
    conn->client->Send(
        make_request(), [&, conn, t0](custos::client::Result<custos::v1::Response> r) {
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          long good = 0;
          if (r.ok() && r->status().code() == custos::v1::OK) {
            if (items == 0) {
              good = 1;
            } else {
              for (const auto& res : r->sign_batch().results()) {
                if (res.status().code() == custos::v1::OK) ++good;
              }
            }
          } else {
            errors.fetch_add(1);
            std::lock_guard lock(done_mu);
            if (first_error.empty()) {
              first_error = r.ok() ? r->status().message() : r.error().message();
            }
          }
          if (!stop.load()) {
            signatures.fetch_add(good);
            std::lock_guard lock(conn->mu);
            conn->latencies.push_back(ms);
          }
          if (!stop.load()) {
            issue(conn);
          }
          if (outstanding.fetch_sub(1) == 1) {
            std::lock_guard lock(done_mu);
            done_cv.notify_all();
          }
        });
  };

  const auto start = Clock::now();
  for (auto& c : conns) {
    for (int i = 0; i < depth; ++i) issue(c.get());
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  {
    std::unique_lock lock(done_mu);
    done_cv.wait_for(lock, std::chrono::seconds(30), [&] { return outstanding.load() == 0; });
  }
  std::vector<double> all;
  for (auto& c : conns) {
    std::lock_guard lock(c->mu);
    all.insert(all.end(), c->latencies.begin(), c->latencies.end());
  }
  conns.clear();
  Row row;
  row.mode = items == 0 ? "single" : "batch";
  row.name = items == 0 ? "custosd single, " + std::to_string(connections) + " conn x " +
                              std::to_string(depth) + " in flight"
                        : "custosd batch of " + std::to_string(items) + ", " +
                              std::to_string(connections) + " conn x " + std::to_string(depth);
  row.rate = static_cast<double>(signatures.load()) / elapsed;
  row.p50_ms = Percentile(all, 0.50);
  row.p99_ms = Percentile(all, 0.99);
  row.errors = errors.load();
  if (row.errors > 0)
    std::cerr << "custos-bench: " << row.name << ": first error: " << first_error << "\n";
  return row;
}

pid_t SpawnDaemon(const Options& o, const std::string& self) {
  const std::string custosd = (fs::path(self).parent_path() / "custosd").string();
  const std::string log = o.dir + "/custos-bench-custosd.log";
  pid_t pid = fork();
  if (pid == 0) {
    // The daemon's output goes to a log beside the deployment, not into the table.
    if (std::freopen(log.c_str(), "a", stderr) == nullptr || dup2(fileno(stderr), 1) < 0)
      _exit(126);
    std::string conf = o.dir + "/custosd.conf";
    execl(custosd.c_str(), custosd.c_str(), "--config", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until it answers a ping.
  const auto until = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < until) {
    auto c = custos::client::Client::Connect(LoadConfig(o, "builder"));
    if (c.ok()) {
      custos::v1::Request ping;
      ping.mutable_ping();
      auto r = (*c)->Send(ping).get();
      if (r.ok()) return pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGKILL);
  Die("custosd did not start; see " + log);
}

void Print(const Options& o, const std::vector<Row>& rows) {
  if (o.json) {
    std::cout << "[";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf(
          "%s{\"name\":\"%s\",\"algorithm\":\"%s\",\"mode\":\"%s\",\"rate\":%.1f,"
          "\"raw_rate\":%.1f,\"ratio\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"errors\":%ld}",
          i ? "," : "", r.name.c_str(), o.algorithm.c_str(), r.mode.c_str(), r.rate, rows[0].rate,
          r.ratio, r.p50_ms, r.p99_ms, r.errors);
    }
    std::cout << "]\n";
    return;
  }
  std::printf("custos-bench: %s, %s, %.0f s per row, %u cores\n", o.key_type.c_str(),
              o.algorithm.c_str(), o.seconds, std::thread::hardware_concurrency());
  std::printf("%-44s %12s %9s %9s %7s %7s\n", "row", "sig/s", "p50 ms", "p99 ms", "ratio",
              "errors");
  for (const Row& r : rows) {
    std::printf("%-44s %12.0f %9.3f %9.3f %7.2f %7ld\n", r.name.c_str(), r.rate, r.p50_ms, r.p99_ms,
                r.ratio, r.errors);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc(
      "custos-bench: raw PKCS#11 signing rate vs. the rate through custosd\n\n"
      "usage: custos-bench --dir DIR [options]\n\noptions");
  desc.add_options()("help,h", "show this help")(
      "dir", po::value(&o.dir), "a deployment made by `custos-init dev` (required)")(
      "spawn", po::bool_switch(&o.spawn), "start custosd from DIR for the run, stop it after")(
      "key-type", po::value(&o.key_type)->default_value(o.key_type),
      "ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519")(
      "algorithm", po::value(&o.algorithm), "signing algorithm (default: from the key type)")(
      "seconds", po::value(&o.seconds)->default_value(o.seconds), "duration of each row")(
      "threads", po::value(&o.threads)->default_value(o.threads), "raw signing threads")(
      "connections", po::value(&o.connections)->default_value(o.connections),
      "TLS connections to custosd")("in-flight",
                                    po::value(&o.in_flight)->default_value(o.in_flight),
                                    "single-digest requests in flight per connection")(
      "batch", po::value(&o.batch)->default_value(o.batch), "digests per batched request")(
      "batch-in-flight", po::value(&o.batch_in_flight)->default_value(o.batch_in_flight),
      "batched requests in flight per connection")(
      "module", po::value(&o.module)->default_value(o.module), "PKCS#11 module for the raw row")(
      "token", po::value(&o.token)->default_value(o.token), "token for the raw row")(
      "json", po::bool_switch(&o.json), "print rows as a JSON list");
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
  o.dir = fs::absolute(o.dir).lexically_normal().string();
  if (o.algorithm.empty()) o.algorithm = DefaultAlgorithm(o.key_type);
  ::setenv("SOFTHSM2_CONF", (o.dir + "/softhsm2.conf").c_str(), 0);
  ::signal(SIGPIPE, SIG_IGN);

  pid_t daemon = o.spawn ? SpawnDaemon(o, argv[0]) : -1;
  const BenchKey key = EnsureKey(o);
  std::vector<Row> rows;
  rows.push_back(RunRaw(o, key));
  rows.push_back(RunService(o, key.name, o.connections, o.in_flight, 0));
  rows.push_back(RunService(o, key.name, o.connections, o.batch_in_flight, o.batch));
  for (std::size_t i = 1; i < rows.size(); ++i) {
    rows[i].ratio = rows[0].rate > 0 ? rows[i].rate / rows[0].rate : 0;
  }
  if (daemon > 0) {
    kill(daemon, SIGTERM);
    int status;
    waitpid(daemon, &status, 0);
  }
  Print(o, rows);
  return 0;
}
