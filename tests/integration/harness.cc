#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace custos::testing {
namespace fs = std::filesystem;

std::string BinPath(const std::string& name) { return std::string(CUSTOS_BIN_DIR) + "/" + name; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path);
}

CommandResult Exec(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env, std::chrono::seconds timeout) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    dprintf(2, "exec %s failed: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  CommandResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  bool killed = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t r = read(fds[i].fd, buf, sizeof buf);
      if (r <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(buf, static_cast<std::size_t>(r));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = (!killed && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  if (killed) result.err += "\n[harness: killed after timeout]";
  return result;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "custos-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (std::getenv("CUSTOS_TEST_KEEP") == nullptr) fs::remove_all(path_, ec);
}

namespace {
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}
}  // namespace

Deployment::Deployment() {
  dir_ = tmp_.path() + "/dev";
  port_ = FreePort();
  log_path_ = tmp_.path() + "/custosd.log";
  CommandResult r =
      Exec({BinPath("custos-init"), "dev", "--dir", dir_, "--port", std::to_string(port_)});
  if (r.exit_code != 0) {
    throw std::runtime_error("custos-init failed: " + r.out + r.err);
  }
}

Deployment::~Deployment() {
  if (pid_ > 0) Stop();
}

std::string Deployment::user_pin() const {
  std::string pin = ReadFile(dir_ + "/secrets/user.pin");
  while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
  return pin;
}

std::string Deployment::log() const { return ReadFile(log_path_); }

bool Deployment::Start(const std::vector<std::string>& extra_flags,
                       const std::map<std::string, std::string>& env) {
  // The log is appended across restarts, so remember where this start began.
  const std::size_t log_start = ReadFile(log_path_).size();
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> argv = {BinPath("custosd"), "--config", dir_ + "/custosd.conf"};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log = ReadFile(log_path_);
    if (log.size() > log_start &&
        log.find("custosd listening on", log_start) != std::string::npos) {
      return true;
    }
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

bool Deployment::running() {
  if (pid_ <= 0) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int Deployment::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

bool Deployment::Kill() {
  if (pid_ <= 0) return false;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return true;
}

CommandResult Deployment::Custos(const std::string& who,
                                 const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {BinPath("custos"), "--config", client_conf(who)};
  argv.insert(argv.end(), args.begin(), args.end());
  return Exec(argv);
}

CommandResult Deployment::Officer(const std::string& who, const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env,
                                  const std::string& config) const {
  std::vector<std::string> argv = {BinPath("custos-officer"), "--config",
                                   config.empty() ? officer_conf(who) : config};
  argv.insert(argv.end(), args.begin(), args.end());
  return Exec(argv, env);
}

std::string Frame(const std::string& body) {
  const auto n = static_cast<std::uint32_t>(body.size());
  std::string out;
  out.push_back(static_cast<char>((n >> 24) & 0xff));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  return out + body;
}

namespace {
std::string OpenSslErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}
}  // namespace

RawTls::RawTls(int port, const Options& options) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error_ = std::string("connect: ") + strerror(errno);
    return;
  }
  timeval tv{10, 0};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx_, options.min_tls_version);
  SSL_CTX_set_max_proto_version(ctx_, options.max_tls_version);
  if (!options.ca.empty()) {
    SSL_CTX_load_verify_locations(ctx_, options.ca.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  if (!options.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, options.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, options.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      error_ = "cannot load client certificate: " + OpenSslErrors();
      return;
    }
  }
  if (options.alpn) {
    static const unsigned char kAlpn[] = {8, 'c', 'u', 's', 't', 'o', 's', '/', '1'};
    SSL_CTX_set_alpn_protos(ctx_, kAlpn, sizeof kAlpn);
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  if (SSL_connect(ssl_) != 1) {
    error_ = "handshake: " + OpenSslErrors();
    return;
  }
  // In TLS 1.3 the server's verdict on our certificate arrives after the
  // client finishes; a zero-byte peek surfaces an alert sent in response.
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, 300) > 0) {
    char c;
    int n = SSL_peek(ssl_, &c, 1);
    if (n <= 0) {
      int err = SSL_get_error(ssl_, n);
      if (err != SSL_ERROR_WANT_READ) error_ = "after handshake: " + OpenSslErrors();
    }
  }
}

RawTls::~RawTls() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  if (fd_ >= 0) close(fd_);
}

bool RawTls::Write(const std::string& bytes) {
  if (ssl_ == nullptr) return false;
  std::size_t done = 0;
  while (done < bytes.size()) {
    int n = SSL_write(ssl_, bytes.data() + done, static_cast<int>(bytes.size() - done));
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool RawTls::ReadExact(std::string* out, std::size_t n,
                       std::chrono::steady_clock::time_point until) {
  out->clear();
  while (out->size() < n) {
    if (SSL_pending(ssl_) == 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    }
    char buf[16384];
    int want = static_cast<int>(std::min(sizeof buf, n - out->size()));
    int r = SSL_read(ssl_, buf, want);
    if (r <= 0) {
      if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_READ) continue;
      return false;
    }
    out->append(buf, static_cast<std::size_t>(r));
  }
  return true;
}

std::optional<std::string> RawTls::ReadFrame(std::chrono::milliseconds timeout) {
  if (ssl_ == nullptr) return std::nullopt;
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::string header;
  if (!ReadExact(&header, 4, until)) return std::nullopt;
  const auto* h = reinterpret_cast<const unsigned char*>(header.data());
  std::size_t len = (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) |
                    (std::size_t{h[2]} << 8) | std::size_t{h[3]};
  if (len > (16u << 20)) return std::nullopt;
  std::string body;
  if (!ReadExact(&body, len, until)) return std::nullopt;
  return body;
}

bool RawTls::WaitClosed(std::chrono::milliseconds timeout) {
  if (ssl_ == nullptr) return true;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (SSL_pending(ssl_) == 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      int pr = poll(&p, 1, static_cast<int>(std::max<long>(1, left.count())));
      if (pr == 0) return false;
    }
    char buf[4096];
    int r = SSL_read(ssl_, buf, sizeof buf);
    if (r <= 0) {
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_WANT_READ) continue;
      return true;  // EOF, close_notify, reset
    }
  }
  return false;
}

}  // namespace custos::testing
