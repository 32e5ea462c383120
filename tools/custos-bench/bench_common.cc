// custos-bench: helpers, the bench keys and the spawned custosd.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "bench.h"

namespace custos::bench {
namespace fs = std::filesystem;

void Die(const std::string& message) {
  std::cerr << "custos-bench: " << message << "\n";
  std::exit(1);
}

void Progress(const Options& o, const std::string& message) {
  if (o.suite == "full") std::cerr << "custos-bench: " << message << "\n";
}

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

std::size_t InputSize(const std::string& algorithm) {
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

std::string AlgorithmLabel(const std::string& key_type) {
  if (key_type == "ec-p256") return "P-256";
  if (key_type == "ec-p384") return "P-384";
  if (key_type == "ed25519") return "Ed25519";
  if (key_type.rfind("rsa-", 0) == 0) return "RSA-" + key_type.substr(4);
  return key_type;
}

client::ClientConfig LoadConfig(const Options& o, const std::string& who, std::size_t in_flight) {
  auto config = client::LoadClientConfig(o.dir + "/clients/" + who + ".conf");
  if (!config.ok()) Die(config.error().message());
  config->max_in_flight = in_flight;
  return config.value();
}

namespace {

v1::Response MustCall(client::Client& client, v1::Request request) {
  auto r = client.Call(std::move(request));
  if (!r.ok()) Die(r.error().message());
  return r.value();
}

std::vector<std::uint8_t> FromHex(const std::string& hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

}  // namespace

BenchKey EnsureKey(const Options& o, const std::string& key_type) {
  auto admin = client::Client::Connect(LoadConfig(o, "admin", 8));
  if (!admin.ok()) Die(admin.error().message());
  BenchKey key;
  key.name = "bench-" + key_type;
  key.key_type = key_type;
  key.algorithm =
      key_type == o.key_type && !o.algorithm.empty() ? o.algorithm : DefaultAlgorithm(key_type);
  v1::Request create;
  create.mutable_create_key()->set_name(key.name);
  create.mutable_create_key()->set_key_type(key_type);
  create.mutable_create_key()->set_usage("code-signing");
  auto created = MustCall(**admin, create);
  if (created.status().code() != v1::OK && created.status().code() != v1::ALREADY_EXISTS) {
    Die("cannot create " + key.name + ": " + created.status().message());
  }
  v1::Request get;
  get.mutable_get_key()->set_key(key.name);
  auto info = MustCall(**admin, get);
  if (info.status().code() != v1::OK) Die(info.status().message());
  for (const auto& v : info.get_key().versions()) {
    if (v.version() == info.get_key().active_version()) {
      key.token_label = v.token_label();
      key.token_id = FromHex(v.token_id());
    }
  }
  v1::Request pub;
  pub.mutable_get_public_key()->set_key(key.name);
  auto p = MustCall(**admin, pub);
  if (p.status().code() != v1::OK) Die(p.status().message());
  key.spki.assign(p.get_public_key().spki_der().begin(), p.get_public_key().spki_der().end());
  return key;
}

Daemon SpawnDaemon(const Options& o, const std::vector<std::string>& extra) {
  const std::string custosd = (fs::path(o.self).parent_path() / "custosd").string();
  const std::string log = o.dir + "/custos-bench-custosd.log";
  std::vector<std::string> args = {custosd, "--config", o.dir + "/custosd.conf", "--server.workers",
                                   std::to_string(o.threads)};
  args.insert(args.end(), o.custosd_flags.begin(), o.custosd_flags.end());
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) Die("cannot fork custosd");
  if (pid == 0) {
    // The daemon's output goes to a log beside the deployment, not into the table.
    if (std::freopen(log.c_str(), "a", stderr) == nullptr || dup2(fileno(stderr), 1) < 0)
      _exit(126);
    execv(custosd.c_str(), argv.data());
    _exit(127);
  }
  // Wait until it answers a ping.
  const auto until = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < until) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      Die("custosd exited at start (status " + std::to_string(status) + "); see " + log);
    }
    auto c = client::Client::Connect(LoadConfig(o, "builder", 8));
    if (c.ok()) {
      v1::Request ping;
      ping.mutable_ping();
      auto r = (*c)->Send(ping).get();
      if (r.ok()) return Daemon{pid};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  Die("custosd did not start within 30 s; see " + log);
}

void StopDaemon(Daemon* d) {
  if (d->pid <= 0) return;
  kill(d->pid, SIGTERM);
  int status;
  waitpid(d->pid, &status, 0);
  d->pid = -1;
}

std::optional<double> ResidentMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      // "VmRSS:     12345 kB"
      return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
    }
  }
  return std::nullopt;
}

}  // namespace custos::bench
