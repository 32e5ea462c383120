// custos-bench: many idle mutual-TLS connections. One thread opens N full
// TLS 1.3 handshakes (client certificate, ALPN custos/1, no resumption) with
// a bounded number in progress at once, on non-blocking sockets driven by
// Boost.Asio readiness waits and OpenSSL directly (a custos::client::Client
// per connection would cost a thread each). It records the new-connection
// rate and handshake latency, then, with all of them open and idle, the
// resident memory of custosd.
#include <sys/resource.h>

// Before Boost.Asio, whose awaitable.hpp uses std::exchange without it.
#include <utility>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <boost/asio.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "bench.h"

namespace custos::bench {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr unsigned char kAlpn[] = {8, 'c', 'u', 's', 't', 'o', 's', '/', '1'};
constexpr std::string_view kAlpnName = "custos/1";
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using UniqueSslCtx = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// The same TLS settings as the client library (client/src/client.cc).
UniqueSslCtx MakeContext(const client::ClientConfig& c) {
  UniqueSslCtx ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) Die("SSL_CTX_new: " + OpenSslError());
  SSL_CTX* p = ctx.get();
  if (SSL_CTX_set_min_proto_version(p, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_alpn_protos(p, kAlpn, sizeof kAlpn) != 0) {
    Die("cannot set TLS 1.3 / ALPN: " + OpenSslError());
  }
  if (SSL_CTX_use_certificate_chain_file(p, c.cert.c_str()) != 1)
    Die("cannot load client certificate " + c.cert + ": " + OpenSslError());
  if (SSL_CTX_use_PrivateKey_file(p, c.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(p) != 1)
    Die("cannot load client key " + c.key + ": " + OpenSslError());
  if (SSL_CTX_load_verify_locations(p, c.ca.c_str(), nullptr) != 1)
    Die("cannot load CA " + c.ca + ": " + OpenSslError());
  SSL_CTX_set_verify(p, SSL_VERIFY_PEER, nullptr);
  // Every handshake is a full one: no client session cache, no resumption.
  SSL_CTX_set_session_cache_mode(p, SSL_SESS_CACHE_OFF);
  // Idle connections keep no read/write buffers on our side.
  SSL_CTX_set_mode(p, SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

class IdleConnections {
 public:
  enum class State { kNew, kConnecting, kHandshaking, kOpen, kFailed, kDropped };
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io) {}
    ~Conn() {
      if (ssl != nullptr) SSL_free(ssl);
    }
    tcp::socket socket;
    SSL* ssl = nullptr;
    State state = State::kNew;
    bool timed_out = false;
    Clock::time_point t0;
  };

  IdleConnections(const client::ClientConfig& config, tcp::endpoint endpoint, int n,
                  int concurrency)
      : ctx_(MakeContext(config)),
        endpoint_(endpoint),
        n_(n),
        concurrency_(std::max(1, concurrency)),
        timer_(io_) {
    auto address = client::ParseServerAddress(config.server);
    if (!address.ok()) Die(address.error().message());
    name_ = config.server_name.empty() ? address->host : config.server_name;
    boost::system::error_code ec;
    asio::ip::make_address(name_, ec);
    name_is_ip_ = !ec;
    latencies_.reserve(static_cast<std::size_t>(n));
  }

  // Opens all N; returns when every handshake has finished or failed.
  void OpenAll() {
    if (n_ <= 0) return;
    conns_.reserve(static_cast<std::size_t>(n_));
    for (int i = 0; i < n_; ++i) conns_.push_back(std::make_unique<Conn>(io_));
    start_ = Clock::now();
    for (int i = 0; i < std::min(concurrency_, n_); ++i) StartNext();
    ArmTimer();
    io_.run();
    io_.restart();
  }

  // Keeps the connections open and watched for `d` (drops are counted).
  void Hold(std::chrono::milliseconds d) {
    io_.run_for(d);
    io_.restart();
  }

  void CloseAll() {
    closing_ = true;
    for (auto& c : conns_) {
      boost::system::error_code ignored;
      c->socket.close(ignored);
    }
    io_.poll();
    conns_.clear();
  }

  double handshake_seconds() const { return std::chrono::duration<double>(done_ - start_).count(); }
  long established() const { return established_; }
  long failed() const { return failed_; }
  long dropped() const { return dropped_; }
  long open() const { return established_ - dropped_; }
  std::vector<double>& latencies() { return latencies_; }
  const std::string& first_error() const { return first_error_; }

 private:
  void StartNext() {
    if (next_ >= n_) return;
    Conn* c = conns_[static_cast<std::size_t>(next_++)].get();
    ++in_progress_;
    c->state = State::kConnecting;
    c->t0 = Clock::now();
    c->socket.async_connect(endpoint_, [this, c](const boost::system::error_code& ec) {
      if (ec) return Fail(c, c->timed_out ? "connect timed out" : "connect: " + ec.message());
      boost::system::error_code ignored;
      c->socket.set_option(tcp::no_delay(true), ignored);
      c->socket.non_blocking(true, ignored);
      c->ssl = SSL_new(ctx_.get());
      if (c->ssl == nullptr || SSL_set_fd(c->ssl, c->socket.native_handle()) != 1)
        return Fail(c, "SSL_new: " + OpenSslError());
      X509_VERIFY_PARAM* param = SSL_get0_param(c->ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      const int set_ok = name_is_ip_
                             ? X509_VERIFY_PARAM_set1_ip_asc(param, name_.c_str())
                             : (X509_VERIFY_PARAM_set1_host(param, name_.c_str(), name_.size()) &&
                                SSL_set_tlsext_host_name(c->ssl, name_.c_str()));
      if (set_ok != 1) return Fail(c, "cannot verify the server as '" + name_ + "'");
      SSL_set_connect_state(c->ssl);
      c->state = State::kHandshaking;
      Drive(c);
    });
  }

  void Drive(Conn* c) {
    ERR_clear_error();
    const int r = SSL_do_handshake(c->ssl);
    if (r == 1) return Established(c);
    const int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      c->socket.async_wait(
          e == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write,
          [this, c](const boost::system::error_code& ec) {
            if (ec) return Fail(c, c->timed_out ? "handshake timed out" : ec.message());
            Drive(c);
          });
      return;
    }
    std::string why = "TLS handshake failed: " + TlsError(c, e);
    const long verify = SSL_get_verify_result(c->ssl);
    if (verify != X509_V_OK) why += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
    Fail(c, why);
  }

  std::string TlsError(Conn* c, int e) {
    std::string text = OpenSslError();
    if (!text.empty()) return text;
    if (e == SSL_ERROR_ZERO_RETURN) return "closed by the server (close_notify)";
    if (e == SSL_ERROR_SYSCALL) return errno != 0 ? std::strerror(errno) : "EOF from the server";
    (void)c;
    return "SSL error " + std::to_string(e);
  }

  void Established(Conn* c) {
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn == nullptr ||
        std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != kAlpnName) {
      return Fail(c, "the server did not select ALPN custos/1");
    }
    latencies_.push_back(std::chrono::duration<double, std::milli>(Clock::now() - c->t0).count());
    c->state = State::kOpen;
    ++established_;
    Watch(c);
    Finished();
  }

  // An idle connection must stay silent. In TLS 1.3 the server checks our
  // certificate after our side of the handshake is done; a refusal, a close
  // or an idle timeout arrives here as an alert or EOF. Session tickets are
  // read and dropped.
  void Watch(Conn* c) {
    c->socket.async_wait(tcp::socket::wait_read, [this, c](const boost::system::error_code& ec) {
      if (ec || closing_) return;
      char byte;
      ERR_clear_error();
      errno = 0;
      const int r = SSL_read(c->ssl, &byte, 1);
      if (r > 0) return Drop(c, "the server sent data on an idle connection");
      const int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return Watch(c);
      Drop(c, "an idle connection was closed: " + TlsError(c, e));
    });
  }

  void Drop(Conn* c, const std::string& why) {
    c->state = State::kDropped;
    ++dropped_;
    if (first_error_.empty()) first_error_ = why;
    boost::system::error_code ignored;
    c->socket.close(ignored);
  }

  void Fail(Conn* c, const std::string& why) {
    c->state = State::kFailed;
    ++failed_;
    if (first_error_.empty()) first_error_ = why;
    boost::system::error_code ignored;
    c->socket.close(ignored);
    Finished();
  }

  // One handshake is over (either way): start the next, or end the phase.
  void Finished() {
    --in_progress_;
    if (next_ < n_) {
      StartNext();
    } else if (in_progress_ == 0) {
      done_ = Clock::now();
      timer_.cancel();
      io_.stop();
    }
  }

  void ArmTimer() {
    timer_.expires_after(std::chrono::milliseconds(250));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      const auto now = Clock::now();
      for (auto& c : conns_) {
        if ((c->state == State::kConnecting || c->state == State::kHandshaking) &&
            now - c->t0 > kHandshakeTimeout && !c->timed_out) {
          c->timed_out = true;
          boost::system::error_code ignored;
          c->socket.cancel(ignored);
        }
      }
      ArmTimer();
    });
  }

  asio::io_context io_;
  UniqueSslCtx ctx_;
  tcp::endpoint endpoint_;
  int n_;
  int concurrency_;
  asio::steady_timer timer_;
  std::string name_;
  bool name_is_ip_ = false;
  std::vector<std::unique_ptr<Conn>> conns_;
  int next_ = 0;
  int in_progress_ = 0;
  long established_ = 0, failed_ = 0, dropped_ = 0;
  bool closing_ = false;
  std::vector<double> latencies_;
  std::string first_error_;
  Clock::time_point start_, done_;
};

}  // namespace

Row RunIdleConnections(const Options& o, const Daemon& daemon) {
  Row row;
  row.algorithm = "tls1.3-mtls";
  row.mode = "idle-connections";
  int n = o.idle_connections;
  std::string limit_note;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < static_cast<rlim_t>(n) + 256) {
    n = std::max(0, static_cast<int>(rl.rlim_cur) - 256);
    limit_note = "; only " + std::to_string(n) + " of " + std::to_string(o.idle_connections) +
                 ": RLIMIT_NOFILE is " + std::to_string(rl.rlim_cur);
  }
  row.name = std::to_string(n) + " idle mTLS conns: handshakes/s, then custosd RSS";
  const client::ClientConfig config = LoadConfig(o, "builder", 1);
  auto address = client::ParseServerAddress(config.server);
  if (!address.ok()) Die(address.error().message());
  boost::asio::io_context resolver_io;
  tcp::resolver resolver(resolver_io);
  boost::system::error_code ec;
  auto results = resolver.resolve(address->host, address->port, ec);
  if (ec || results.empty()) Die("cannot resolve " + config.server + ": " + ec.message());

  const std::optional<double> rss_before = ResidentMiB(daemon.pid);
  IdleConnections idle(config, results.begin()->endpoint(), n, o.handshake_concurrency);
  idle.OpenAll();
  // Let refusals, closes and session tickets arrive before counting.
  idle.Hold(std::chrono::milliseconds(2000));
  const std::optional<double> rss_after = ResidentMiB(daemon.pid);
  const long open = idle.open();

  const double secs = idle.handshake_seconds();
  row.rate = secs > 0 ? static_cast<double>(idle.established()) / secs : 0;
  row.p50_ms = Percentile(idle.latencies(), 0.50);
  row.p99_ms = Percentile(idle.latencies(), 0.99);
  row.errors = idle.failed() + idle.dropped();
  row.extra.emplace_back("connections", n);
  row.extra.emplace_back("established", static_cast<double>(idle.established()));
  row.extra.emplace_back("open_at_rss", static_cast<double>(open));
  row.extra.emplace_back("handshake_concurrency", o.handshake_concurrency);
  char note[256];
  if (rss_before && rss_after) {
    const double per_conn_kb = open > 0 ? (*rss_after - *rss_before) * 1024.0 / open : 0;
    row.extra.emplace_back("rss_before_mb", *rss_before);
    row.extra.emplace_back("rss_mb", *rss_after);
    row.extra.emplace_back("rss_per_conn_kb", per_conn_kb);
    std::snprintf(note, sizeof note,
                  "custosd RSS %.1f -> %.1f MB with %ld open (%.1f KB/conn); target < 200 MB: %s",
                  *rss_before, *rss_after, open, per_conn_kb,
                  *rss_after < 200.0 && open == n ? "met" : "NOT met");
    row.note = note;
  } else {
    row.note = "cannot read VmRSS of custosd (pid " + std::to_string(daemon.pid) + ")";
  }
  row.note += limit_note;
  if (row.errors > 0) {
    row.note += "; " + std::to_string(idle.failed()) + " failed, " +
                std::to_string(idle.dropped()) + " dropped, first: " + idle.first_error();
  }
  idle.CloseAll();
  return row;
}

}  // namespace custos::bench
