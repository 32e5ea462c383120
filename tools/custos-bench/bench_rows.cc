// custos-bench: the signing rows (raw PKCS#11, custosd closed and open loop).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <span>
#include <thread>

#include "bench.h"
#include "custos/pkcs11/secret.h"

namespace custos::bench {

Measurement SignOnToken(const Options& o, pkcs11::Token& token, const pkcs11::KeyRef& key,
                        const std::string& algorithm, int threads) {
  auto alg = pkcs11::ParseSignAlgorithm(algorithm);
  if (!alg) Die("unknown algorithm " + algorithm);
  std::atomic<bool> stop{false};
  std::atomic<long> errors{0};
  std::mutex error_mu;
  std::string first_error;
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(threads));
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const std::string input = RandomBytes(InputSize(algorithm));
      std::span<const std::uint8_t> span(reinterpret_cast<const std::uint8_t*>(input.data()),
                                         input.size());
      auto& lat = latencies[static_cast<std::size_t>(t)];
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = Clock::now();
        auto sig = token.Sign(key, *alg, span);
        if (!sig.ok()) {
          if (errors.fetch_add(1) == 0) {
            std::lock_guard lock(error_mu);
            first_error = sig.error().message();
          }
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
  Measurement m;
  m.rate = static_cast<double>(all.size()) / elapsed;
  m.p50_ms = Percentile(all, 0.50);
  m.p99_ms = Percentile(all, 0.99);
  m.errors = errors.load();
  m.first_error = first_error;
  return m;
}

Row RunRaw(const Options& o, const BenchKey& key) {
  pkcs11::TokenConfig config;
  config.module_path = o.module;
  config.token = o.token;
  auto pin = pkcs11::ReadPinFile(o.dir + "/secrets/user.pin");
  if (!pin.ok()) Die(pin.error().message());
  config.pin = std::move(pin.value());
  config.max_sessions = static_cast<std::size_t>(o.threads);
  auto token = pkcs11::Token::Open(std::move(config));
  if (!token.ok()) Die("cannot open the token: " + token.error().message());
  auto ref = (*token)->FindKey(key.token_label, key.token_id);
  if (!ref.ok()) Die("cannot find " + key.token_label + ": " + ref.error().message());
  if (ref->spki_der != key.spki) Die("the token key does not match custosd's public key");
  const Measurement m = SignOnToken(o, **token, ref.value(), key.algorithm, o.threads);
  Row row;
  row.name =
      "raw pkcs11 " + AlgorithmLabel(key.key_type) + ", " + std::to_string(o.threads) + " threads";
  row.algorithm = key.algorithm;
  row.mode = "raw";
  row.rate = m.rate;
  row.raw_rate = m.rate;
  row.ratio = 1.0;
  row.p50_ms = m.p50_ms;
  row.p99_ms = m.p99_ms;
  row.errors = m.errors;
  if (m.errors > 0) row.note = "first error: " + m.first_error;
  return row;
}

namespace {

v1::Request MakeRequest(const BenchKey& key, const std::string& payload, int items) {
  v1::Request r;
  const bool message = key.algorithm == "ed25519";
  if (items == 0) {
    auto* s = r.mutable_sign();
    s->set_key(key.name);
    s->set_algorithm(key.algorithm);
    if (message) {
      s->set_message(payload);
    } else {
      s->set_digest(payload);
    }
  } else {
    auto* b = r.mutable_sign_batch();
    b->set_key(key.name);
    b->set_algorithm(key.algorithm);
    for (int i = 0; i < items; ++i) {
      auto* item = b->add_items();
      item->set_ref(std::to_string(i));
      if (message) {
        item->set_message(payload);
      } else {
        item->set_digest(payload);
      }
    }
  }
  return r;
}

// Good signatures in a response (0 for a failed request).
long GoodSignatures(const client::Result<v1::Response>& r, int items) {
  if (!r.ok() || r->status().code() != v1::OK) return 0;
  if (items == 0) return 1;
  long good = 0;
  for (const auto& res : r->sign_batch().results()) {
    if (res.status().code() == v1::OK) ++good;
  }
  return good;
}

std::string ErrorText(const client::Result<v1::Response>& r) {
  if (!r.ok()) return r.error().message();
  return v1::StatusCode_Name(r->status().code()) + ": " + r->status().message();
}

std::vector<std::unique_ptr<client::Client>> ConnectClients(const Options& o, int connections,
                                                            std::size_t in_flight) {
  // One I/O thread drives every connection: the load generator shares the
  // cores with custosd, and with a thread per connection it used about a
  // third more CPU during the single-digest row (docs/BENCHMARKS.md).
  const client::IoThread io_thread;
  std::vector<std::unique_ptr<client::Client>> clients;
  for (int i = 0; i < connections; ++i) {
    auto c = client::Client::Connect(LoadConfig(o, "builder", in_flight), io_thread);
    if (!c.ok()) Die(c.error().message());
    clients.push_back(std::move(c.value()));
  }
  return clients;
}

}  // namespace

Row RunService(const Options& o, const BenchKey& key, int connections, int depth, int items) {
  struct Conn {
    std::unique_ptr<client::Client> client;
    std::mutex mu;
    std::vector<double> latencies;
  };
  std::vector<std::unique_ptr<Conn>> conns;
  for (auto& c : ConnectClients(o, connections, static_cast<std::size_t>(depth))) {
    auto conn = std::make_unique<Conn>();
    conn->client = std::move(c);
    conns.push_back(std::move(conn));
  }
  const std::string payload = RandomBytes(InputSize(key.algorithm));

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
        MakeRequest(key, payload, items), [&, conn, t0](client::Result<v1::Response> r) {
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          const long good = GoodSignatures(r, items);
          if (good == 0) {
            errors.fetch_add(1);
            std::lock_guard lock(done_mu);
            if (first_error.empty()) first_error = ErrorText(r);
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
  row.algorithm = key.algorithm;
  row.mode = items == 0 ? "single" : "batch";
  const std::string alg = AlgorithmLabel(key.key_type);
  row.name = items == 0 ? "custosd " + alg + " single, " + std::to_string(connections) +
                              " conn x " + std::to_string(depth) + " in flight"
                        : "custosd " + alg + " batch of " + std::to_string(items) + ", " +
                              std::to_string(connections) + " conn x " + std::to_string(depth);
  row.rate = static_cast<double>(signatures.load()) / elapsed;
  row.p50_ms = Percentile(all, 0.50);
  row.p99_ms = Percentile(all, 0.99);
  row.errors = errors.load();
  if (row.errors > 0) {
    std::lock_guard lock(done_mu);
    row.note = "first error: " + first_error;
    std::cerr << "custos-bench: " << row.name << ": first error: " << first_error << "\n";
  }
  return row;
}

Row RunOpenLoop(const Options& o, const BenchKey& key, int connections, double rate) {
  Row row;
  row.algorithm = key.algorithm;
  row.mode = "single-open-loop";
  row.name = "custosd " + AlgorithmLabel(key.key_type) + " single, open loop at " +
             std::to_string(static_cast<long>(rate)) + "/s, " + std::to_string(connections) +
             " conn";
  if (rate <= 0) {
    row.note = "not run: the closed-loop single row measured no rate to take half of";
    return row;
  }
  // In flight per connection is not a pacing limit here: allow the server's
  // default maximum so that a slow response does not hold back later sends.
  auto clients = ConnectClients(o, connections, 64);
  const std::string payload = RandomBytes(InputSize(key.algorithm));

  std::mutex mu;
  std::condition_variable done_cv;
  std::vector<double> latencies;
  long good = 0, errors = 0, outstanding = 0;
  std::string first_error;
  double max_lag_ms = 0;  // how far behind schedule the pacer ever sent

  const auto interval = std::chrono::duration<double>(1.0 / rate);
  const auto start = Clock::now() + std::chrono::milliseconds(10);
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  long i = 0;
  while (true) {
    const auto scheduled =
        start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(i));
    if (scheduled >= end) break;
    auto now = Clock::now();
    if (scheduled > now) {
      std::this_thread::sleep_until(scheduled);
      now = Clock::now();
    }
    max_lag_ms =
        std::max(max_lag_ms, std::chrono::duration<double, std::milli>(now - scheduled).count());
    {
      std::lock_guard lock(mu);
      ++outstanding;
    }
    clients[static_cast<std::size_t>(i) % clients.size()]->Send(
        MakeRequest(key, payload, 0), [&, scheduled](client::Result<v1::Response> r) {
          // Latency from the scheduled send time: a send the pacer made late
          // (or that waited in the client) counts its whole wait.
          const double ms =
              std::chrono::duration<double, std::milli>(Clock::now() - scheduled).count();
          const long n = GoodSignatures(r, 0);
          std::lock_guard lock(mu);
          if (n == 0) {
            ++errors;
            if (first_error.empty()) first_error = ErrorText(r);
          } else {
            ++good;
          }
          latencies.push_back(ms);
          if (--outstanding == 0) done_cv.notify_all();
        });
    ++i;
  }
  std::unique_lock lock(mu);
  done_cv.wait_for(lock, std::chrono::seconds(30), [&] { return outstanding == 0; });
  const double elapsed =
      std::max(std::chrono::duration<double>(Clock::now() - start).count(), o.seconds);
  row.rate = static_cast<double>(good) / elapsed;
  row.p50_ms = Percentile(latencies, 0.50);
  row.p99_ms = Percentile(latencies, 0.99);
  row.errors = errors;
  row.extra.emplace_back("offered_rate", rate);
  row.extra.emplace_back("requests", static_cast<double>(i));
  row.extra.emplace_back("max_send_lag_ms", max_lag_ms);
  char note[160];
  std::snprintf(note, sizeof note,
                "latency from scheduled send; offered %.0f/s; p99 target < 5 ms: %s", rate,
                row.p99_ms < 5.0 ? "met" : "NOT met");
  row.note = note;
  if (errors > 0) row.note += "; first error: " + first_error;
  const bool stuck = outstanding != 0;
  lock.unlock();
  if (stuck) Die(row.name + ": responses still missing 30 s after the last send");
  return row;
}

}  // namespace custos::bench
