// Helpers shared by the audit integration tests: concurrent signing load
// through the real client library, and reading the audit log as text.
#pragma once

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "custos/client/client.h"
#include "custos/v1/custos.pb.h"

namespace custos::testing {

inline std::string Sha256Hex(const std::string& data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

// The value of a string field in a log line ("" when absent).
inline std::string Field(const std::string& line, const std::string& name) {
  const std::string key = "\"" + name + "\":\"";
  const auto at = line.find(key);
  if (at == std::string::npos) return "";
  const auto start = at + key.size();
  return line.substr(start, line.find('"', start) - start);
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// op_sha256 -> outcome, for the "request" records of a log.
inline std::map<std::string, std::string> OutcomesByDigest(const std::string& log) {
  std::map<std::string, std::string> out;
  for (const auto& line : Lines(log)) {
    if (Field(line, "kind") != "request") continue;
    out[Field(line, "op_sha256")] = Field(line, "outcome");
  }
  return out;
}

// Signs random digests with `key` from `threads` connections, `window`
// requests in flight each, until Stop(). Remembers the operation digest
// (SHA-256 of the SignRequest) of every signature received.
class SignLoad {
 public:
  SignLoad(std::string client_conf, std::string key, int threads, int window)
      : conf_(std::move(client_conf)), key_(std::move(key)), threads_(threads), window_(window) {}
  ~SignLoad() { Stop(); }

  void Start() {
    stop_ = false;
    for (int i = 0; i < threads_; ++i) workers_.emplace_back([this] { Run(); });
  }
  void Stop() {
    stop_ = true;
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::string> signed_digests() const {
    std::lock_guard lock(mu_);
    return signed_;
  }
  std::size_t unavailable() const { return unavailable_; }
  std::size_t other_refusals() const { return other_; }
  std::string last_refusal() const {
    std::lock_guard lock(mu_);
    return last_refusal_;
  }

 private:
  void Run() {
    while (!stop_) {
      auto config = client::LoadClientConfig(conf_);
      if (!config.ok()) return;
      config.value().retries = 0;
      config.value().connect_timeout = std::chrono::milliseconds(2000);
      config.value().request_timeout = std::chrono::milliseconds(5000);
      auto c = client::Client::Connect(config.value());
      if (!c.ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      bool lost = false;
      while (!stop_ && !lost) {
        std::vector<std::pair<std::string, std::future<client::Result<v1::Response>>>> calls;
        for (int i = 0; i < window_; ++i) {
          v1::Request req;
          unsigned char digest[32];
          RAND_bytes(digest, sizeof digest);
          req.mutable_sign()->set_key(key_);
          req.mutable_sign()->set_algorithm("ecdsa-p256-sha256");
          req.mutable_sign()->set_digest(digest, sizeof digest);
          const std::string op = Sha256Hex(req.sign().SerializeAsString());
          calls.emplace_back(op, c.value()->Send(std::move(req)));
        }
        for (auto& [op, f] : calls) {
          auto r = f.get();
          if (!r.ok()) {
            lost = true;
            continue;
          }
          const auto code = r.value().status().code();
          std::lock_guard lock(mu_);
          if (code == v1::OK && !r.value().sign().signature().empty()) {
            signed_.push_back(op);
          } else if (code == v1::UNAVAILABLE) {
            ++unavailable_;
            last_refusal_ = r.value().status().message();
          } else {
            ++other_;
            last_refusal_ = r.value().status().message();
          }
        }
      }
    }
  }

  const std::string conf_;
  const std::string key_;
  const int threads_;
  const int window_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> workers_;
  mutable std::mutex mu_;
  std::vector<std::string> signed_;
  std::atomic<std::size_t> unavailable_{0};
  std::atomic<std::size_t> other_{0};
  std::string last_refusal_;
};

}  // namespace custos::testing
