// Shared by the audit integration tests: signing load through the client
// library with one trace id per request, and reading the audit log.
#pragma once

#include <openssl/evp.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/v1/custos.pb.h"
#include "harness.h"

namespace custos::testing {

inline std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xF]);
  }
  return out;
}

// The value of a string field in one audit log line ("" if absent).
inline std::string Field(const std::string& line, const std::string& name) {
  const std::string key = "\"" + name + "\":\"";
  const auto at = line.find(key);
  if (at == std::string::npos) return "";
  const auto end = line.find('"', at + key.size());
  return line.substr(at + key.size(), end - at - key.size());
}

inline std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

inline void WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : lines) out << l << '\n';
}

// A signature the client received: its trace id and the SHA-256 of the
// SignRequest it sent (what the audit record's op_sha256 holds).
struct Received {
  std::string trace_id;
  std::string op_sha256;
};

// Signs with `key` from `threads` connections, `window` requests in flight
// each, until `stop`; every OK response goes into `received`, every other
// outcome (status name or client error) is counted in `failures`.
class SignLoad {
 public:
  SignLoad(const Deployment& d, std::string key, std::string tag, int threads = 3, int window = 8)
      : d_(d), key_(std::move(key)), tag_(std::move(tag)) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t, window] { Run(t, window); });
    }
  }
  ~SignLoad() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  std::vector<Received> received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  std::size_t received_count() {
    std::lock_guard lock(mu_);
    return received_.size();
  }
  std::map<std::string, int> failures() {
    std::lock_guard lock(mu_);
    return failures_;
  }

 private:
  void Run(int t, int window) {
    auto config = client::LoadClientConfig(d_.client_conf("builder"));
    if (!config.ok()) return;
    config->retries = 0;
    config->connect_timeout = std::chrono::milliseconds(500);
    config->request_timeout = std::chrono::milliseconds(3000);
    std::uint64_t n = 0;
    while (!stop_) {
      auto c = client::Client::Connect(*config);
      if (!c.ok()) {
        Count("connect: " + c.error().message().substr(0, 40));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      bool broken = false;
      while (!stop_ && !broken) {
        std::vector<std::pair<Received, std::future<client::Result<v1::Response>>>> inflight;
        for (int i = 0; i < window; ++i) {
          v1::Request req;
          const std::string trace = tag_ + "-" + std::to_string(t) + "-" + std::to_string(n++);
          req.set_trace_id(trace);
          auto* s = req.mutable_sign();
          s->set_key(key_);
          s->set_algorithm("ecdsa-p256-sha256");
          s->set_digest(std::string(32, static_cast<char>(n & 0xFF)));
          Received r{trace, Sha256Hex(s->SerializeAsString())};
          inflight.emplace_back(r, (*c)->Send(req));
        }
        for (auto& [r, f] : inflight) {
          auto resp = f.get();
          if (!resp.ok()) {
            Count("client: " + resp.error().message().substr(0, 40));
            broken = true;
          } else if (resp->status().code() == v1::OK && !resp->sign().signature().empty()) {
            std::lock_guard lock(mu_);
            received_.push_back(r);
          } else {
            Count(v1::StatusCode_Name(resp->status().code()));
          }
        }
      }
    }
  }
  void Count(const std::string& what) {
    std::lock_guard lock(mu_);
    ++failures_[what];
  }

  const Deployment& d_;
  const std::string key_, tag_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Received> received_;
  std::map<std::string, int> failures_;
  std::vector<std::thread> threads_;
};

}  // namespace custos::testing
