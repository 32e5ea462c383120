// custos-bench: the p11-kit peer row. p11-kit forwards PKCS#11 over a Unix
// socket (`p11-kit server` in front of SoftHSM, p11-kit-client.so in this
// process) with no TLS, no policy and no audit: what a plain key-forwarding
// service costs, on the same token and key as custosd.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "bench.h"
#include "custos/pkcs11/secret.h"

namespace custos::bench {
namespace fs = std::filesystem;

namespace {

// The p11-kit server process and its socket directory; stops and removes
// both when it goes out of scope.
class P11KitServer {
 public:
  ~P11KitServer() { Stop(); }

  // Returns an empty string on success, else why it could not start.
  std::string Start(const Options& o) {
    char tmpl[] = "/tmp/custos-bench-p11kit-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return "cannot make a socket directory in /tmp";
    dir_ = tmpl;
    socket_ = dir_ + "/socket";
    log_ = o.dir + "/custos-bench-p11kit.log";
    std::vector<std::string> args = {o.p11kit, "server", "--provider", o.module,
                                     "-f",     "-n",     socket_,      o.token};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string softhsm_conf = o.dir + "/softhsm2.conf";
    pid_ = fork();
    if (pid_ < 0) return "cannot fork";
    if (pid_ == 0) {
      if (std::freopen(log_.c_str(), "a", stderr) == nullptr || dup2(fileno(stderr), 1) < 0)
        _exit(126);
      ::setenv("SOFTHSM2_CONF", softhsm_conf.c_str(), 1);
      execvp(argv[0], argv.data());
      std::fprintf(stderr, "custos-bench: cannot run %s\n", argv[0]);
      _exit(127);
    }
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < until) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "`" + o.p11kit + " server` exited at start (" +
               (WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                                  : "signal " + std::to_string(WTERMSIG(status))) +
               "); see " + log_;
      }
      struct stat st;
      if (::stat(socket_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "`" + o.p11kit + " server` made no socket " + socket_ + " within 10 s; see " + log_;
  }

  std::string address() const { return "unix:path=" + socket_; }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      const auto until = Clock::now() + std::chrono::seconds(5);
      while (waitpid(pid_, nullptr, WNOHANG) == 0) {
        if (Clock::now() > until) {
          kill(pid_, SIGKILL);
          waitpid(pid_, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      pid_ = -1;
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      fs::remove_all(dir_, ignored);
      dir_.clear();
    }
  }

 private:
  pid_t pid_ = -1;
  std::string dir_, socket_, log_;
};

}  // namespace

Row RunP11KitPeer(const Options& o, const BenchKey& key) {
  Row row;
  row.algorithm = key.algorithm;
  row.mode = "p11kit-peer";
  row.name = "p11-kit peer " + AlgorithmLabel(key.key_type) + ", " + std::to_string(o.connections) +
             " threads (= single row's conns)";
  if (::access(o.p11kit_client.c_str(), R_OK) != 0) {
    row.note = "not run: no p11-kit client module at " + o.p11kit_client + " (--p11kit-client)";
    return row;
  }
  P11KitServer server;
  if (std::string why = server.Start(o); !why.empty()) {
    row.note = "not run: " + why;
    return row;
  }
  // p11-kit-client.so finds the server through this variable when the module
  // is initialised.
  ::setenv("P11_KIT_SERVER_ADDRESS", server.address().c_str(), 1);
  {
    pkcs11::TokenConfig config;
    config.module_path = o.p11kit_client;
    config.token = o.token;
    auto pin = pkcs11::ReadPinFile(o.dir + "/secrets/user.pin");
    if (!pin.ok()) Die(pin.error().message());
    config.pin = std::move(pin.value());
    config.max_sessions = static_cast<std::size_t>(o.connections);
    auto token = pkcs11::Token::Open(std::move(config));
    if (!token.ok()) {
      row.note = "not run: cannot open " + o.token + " through " + o.p11kit_client + ": " +
                 token.error().message();
    } else if (auto ref = (*token)->FindKey(key.token_label, key.token_id); !ref.ok()) {
      row.note =
          "not run: cannot find " + key.token_label + " through p11-kit: " + ref.error().message();
    } else if (ref->spki_der != key.spki) {
      row.note = "not run: the key found through p11-kit differs from custosd's public key";
    } else {
      const Measurement m = SignOnToken(o, **token, ref.value(), key.algorithm, o.connections);
      row.rate = m.rate;
      row.p50_ms = m.p50_ms;
      row.p99_ms = m.p99_ms;
      row.errors = m.errors;
      if (m.errors > 0) row.note = "first error: " + m.first_error;
    }
  }  // the token (and its sessions over the socket) closes before the server stops
  ::unsetenv("P11_KIT_SERVER_ADDRESS");
  server.Stop();
  return row;
}

}  // namespace custos::bench
