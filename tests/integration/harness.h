// Integration test harness: a real dev deployment (custos-init), a real
// custosd process on a real SoftHSM token in a temporary directory, the real
// `custos` CLI, and raw TLS connections for protocol abuse.
#pragma once

#include <openssl/ssl.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace custos::testing {

// Paths of the built binaries, from compile definitions set by CMake.
std::string BinPath(const std::string& name);

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv (no shell) with extra environment variables, capturing output.
CommandResult Exec(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env = {},
                   std::chrono::seconds timeout = std::chrono::seconds(120));

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);

// A temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A dev deployment made by `custos-init dev` plus a custosd process.
class Deployment {
 public:
  // Runs custos-init dev in a new temp dir on a free port.
  Deployment();
  ~Deployment();

  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  std::string softhsm_conf() const { return dir_ + "/softhsm2.conf"; }
  std::string user_pin() const;
  std::string client_conf(const std::string& who) const {
    return dir_ + "/clients/" + who + ".conf";
  }

  // Starts custosd with extra flags and environment; waits until it logs that
  // it is listening. Returns false (and keeps the log) if it did not start.
  bool Start(const std::vector<std::string>& extra_flags = {},
             const std::map<std::string, std::string>& env = {});
  // SIGTERM and wait; returns the exit status (or -1 if it had to be killed).
  int Stop();
  // SIGKILL (a crash) and reap; false if it was not running.
  bool Kill();
  bool running();
  // The daemon's process id while it runs (-1 otherwise), e.g. to SIGKILL it.
  pid_t pid() const { return pid_; }
  std::string log() const;

  // Runs the custos CLI as `who` (builder, admin, issuer).
  CommandResult Custos(const std::string& who, const std::vector<std::string>& args) const;
  // Runs custos-officer as officer `who` (alice, bob, carol) with that
  // officer's config (DIR/officers/<who>.conf), or with `config` if given.
  CommandResult Officer(const std::string& who, const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env = {},
                        const std::string& config = "") const;
  std::string officer_conf(const std::string& who) const {
    return dir_ + "/officers/" + who + ".conf";
  }

 private:
  TempDir tmp_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string log_path_;
};

// A raw TLS 1.3 connection to custosd, for speaking bytes the client library
// never would.
class RawTls {
 public:
  struct Options {
    std::string cert;  // empty: present no client certificate
    std::string key;
    std::string ca;
    int max_tls_version = TLS1_3_VERSION;
    int min_tls_version = TLS1_3_VERSION;
    bool alpn = true;
  };
  // Connects and performs the handshake; error() says why if it failed.
  RawTls(int port, const Options& options);
  ~RawTls();

  bool ok() const { return ssl_ != nullptr && error_.empty(); }
  const std::string& error() const { return error_; }

  bool Write(const std::string& bytes);
  // Reads one frame body (after the 4-byte length); nullopt on EOF, error or timeout.
  std::optional<std::string> ReadFrame(std::chrono::milliseconds timeout);
  // True when the peer closes (EOF or reset) within the timeout.
  bool WaitClosed(std::chrono::milliseconds timeout);

 private:
  bool ReadExact(std::string* out, std::size_t n, std::chrono::steady_clock::time_point until);
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string error_;
};

// Frames a body with the 4-byte big-endian length.
std::string Frame(const std::string& body);

}  // namespace custos::testing
