#include "custos/client/client.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "custos/client/framing.h"

namespace custos::client {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

constexpr unsigned char kAlpn[] = {8, 'c', 'u', 's', 't', 'o', 's', '/', '1'};
constexpr std::string_view kAlpnName = "custos/1";

bool IsIpLiteral(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// "certificate verify failed (unable to get local issuer certificate)".
std::string TlsErrorText(const boost::system::error_code& ec, SSL* ssl) {
  std::string text;
  if (ec.category() == asio::error::get_ssl_category()) {
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    text = reason != nullptr ? reason : ec.message();
  } else if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    text = "connection closed by the server (is this client certificate accepted?)";
  } else {
    text = ec.message();
  }
  if (ssl != nullptr) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      text += " (";
      text += X509_verify_cert_error_string(verify);
      text += ")";
    }
  }
  return text;
}

std::string OpenSslErrorText() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "unknown OpenSSL error";
}

Status CheckReadable(const std::string& what, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Error(ErrorCode::kInvalidConfig, what + " " + path + " is not a readable file");
  }
  return Status();
}

std::string RandomIdempotencyKey() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    std::random_device rd;
    for (auto& b : bytes) b = static_cast<unsigned char>(rd());
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

}  // namespace

// The io_context and the thread that runs it. Clients hold it; the last owner
// to let go joins the thread, after the Clients' last handlers have run.
struct IoThread::Runtime {
  Runtime() : work(asio::make_work_guard(io)), thread([this] { io.run(); }) {}
  ~Runtime() {
    work.reset();
    if (thread.get_id() == std::this_thread::get_id()) {
      // Only a Client destroyed inside one of its own callbacks gets here.
      std::fputs("custos client: a Client was destroyed on its own I/O thread\n", stderr);
      std::abort();
    }
    thread.join();
  }
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;
};

IoThread::IoThread() : runtime_(std::make_shared<Runtime>()) {}
IoThread::~IoThread() = default;

// Every handler the Impl hands to Asio holds a reference to it (`self`), so
// that Clients sharing an IoThread can go while their last handlers are
// still queued.
class Client::Impl : public std::enable_shared_from_this<Client::Impl> {
 public:
  Impl(ClientConfig config, ServerAddress address, asio::io_context& io)
      : config_(std::move(config)),
        address_(std::move(address)),
        io_(io),
        ctx_(ssl::context::tls_client) {}

  // Fails pending calls with kCancelled and closes the connection; returns
  // once that has happened on the I/O thread.
  void Close() {
    if (io_.get_executor().running_in_this_thread()) {
      Shutdown();
      return;
    }
    std::promise<void> closed;
    auto done = closed.get_future();
    asio::post(io_, [self = shared_from_this(), &closed] {
      self->Shutdown();
      closed.set_value();
    });
    done.wait();
  }

  Status InitTls() {
    SSL_CTX* ctx = ctx_.native_handle();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
      return Error(ErrorCode::kTlsFailed, "cannot require TLS 1.3: " + OpenSslErrorText());
    }
    if (SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn) != 0) {
      return Error(ErrorCode::kTlsFailed, "cannot set ALPN: " + OpenSslErrorText());
    }
    for (const auto& [what, path] :
         {std::pair<std::string, std::string>{"client certificate", config_.cert},
          {"client private key", config_.key},
          {"CA certificate", config_.ca}}) {
      Status s = CheckReadable(what, path);
      if (!s.ok()) return s;
    }
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, config_.cert.c_str()) != 1) {
      return Error(ErrorCode::kInvalidConfig,
                   "cannot load client certificate " + config_.cert + ": " + OpenSslErrorText());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, config_.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Error(ErrorCode::kInvalidConfig,
                   "cannot load client private key " + config_.key + ": " + OpenSslErrorText());
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return Error(ErrorCode::kInvalidConfig, "client private key " + config_.key +
                                                  " does not match certificate " + config_.cert);
    }
    if (SSL_CTX_load_verify_locations(ctx, config_.ca.c_str(), nullptr) != 1) {
      return Error(ErrorCode::kInvalidConfig,
                   "cannot load CA certificate " + config_.ca + ": " + OpenSslErrorText());
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    return Status();
  }

  // Blocks until the first connection is up or has failed.
  Status ConnectBlocking() {
    std::promise<Status> promise;
    auto future = promise.get_future();
    asio::post(io_, [this, &promise] {
      connect_waiters_.push_back([&promise](const Status& s) { promise.set_value(s); });
      if (state_ == State::kDisconnected) StartConnect();
      if (state_ == State::kConnected) NotifyConnectWaiters(Status());
    });
    return future.get();
  }

  void Send(v1::Request request, Callback done, CallOptions options) {
    std::chrono::milliseconds deadline = options.deadline;
    if (deadline.count() <= 0) {
      deadline = request.deadline_ms() != 0 ? std::chrono::milliseconds(request.deadline_ms())
                                            : config_.request_timeout;
    }
    const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
    request.set_id(id);
    request.set_deadline_ms(static_cast<std::uint32_t>(
        std::min<std::int64_t>(deadline.count(), std::numeric_limits<std::uint32_t>::max())));
    std::string frame = EncodeFrame(request);
    pending_.fetch_add(1, std::memory_order_relaxed);
    asio::post(io_, [this, self = shared_from_this(), id, deadline, frame = std::move(frame),
                     done = std::move(done)]() mutable {
      Enqueue(id, deadline, std::move(frame), std::move(done));
    });
  }

  std::size_t pending() const { return pending_.load(std::memory_order_relaxed); }
  const ClientConfig& config() const { return config_; }

 private:
  enum class State { kDisconnected, kConnecting, kConnected };

  struct Connection {
    Connection(asio::io_context& io, ssl::context& ctx)
        : stream(io, ctx), resolver(io), connect_timer(io) {}
    ssl::stream<tcp::socket> stream;
    tcp::resolver resolver;
    asio::steady_timer connect_timer;
    bool timed_out = false;
    bool dead = false;
    FrameDecoder decoder;
    std::array<std::uint8_t, 16384> read_buf;
    std::deque<std::string> out;
    std::string write_buf;
    bool writing = false;
  };

  struct Call {
    Callback done;
    std::unique_ptr<asio::steady_timer> timer;
    std::string frame;  // emptied once written to a connection
    bool on_wire = false;
  };

  // --- everything below runs on the I/O thread ---

  void Enqueue(std::uint64_t id, std::chrono::milliseconds deadline, std::string frame,
               Callback done) {
    if (shut_down_) {
      Complete(std::move(done), Error(ErrorCode::kCancelled, "client is shutting down"));
      return;
    }
    Call call;
    call.done = std::move(done);
    call.frame = std::move(frame);
    call.timer = std::make_unique<asio::steady_timer>(io_, deadline);
    call.timer->async_wait(
        [this, self = shared_from_this(), id, deadline](const boost::system::error_code& ec) {
          if (!ec) OnDeadline(id, deadline);
        });
    calls_.emplace(id, std::move(call));
    waiting_.push_back(id);
    if (state_ == State::kDisconnected) StartConnect();
    Pump();
  }

  void Complete(Callback done, Result<v1::Response> result) {
    pending_.fetch_sub(1, std::memory_order_relaxed);
    done(std::move(result));
  }

  void Finish(std::uint64_t id, Result<v1::Response> result) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    Call call = std::move(it->second);
    calls_.erase(it);
    call.timer->cancel();
    Complete(std::move(call.done), std::move(result));
  }

  void OnDeadline(std::uint64_t id, std::chrono::milliseconds deadline) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    // A request already on the wire still occupies a slot until its (late)
    // response arrives or the connection goes.
    if (it->second.on_wire) orphans_.insert(id);
    Finish(id,
           Error(ErrorCode::kDeadlineExceeded, "no response from " + config_.server + " within " +
                                                   std::to_string(deadline.count()) + " ms"));
  }

  // Moves waiting requests onto the wire while there is room.
  void Pump() {
    if (state_ != State::kConnected) return;
    while (!waiting_.empty() && in_flight_ < config_.max_in_flight) {
      const std::uint64_t id = waiting_.front();
      waiting_.pop_front();
      auto it = calls_.find(id);
      if (it == calls_.end()) continue;  // deadline already passed
      it->second.on_wire = true;
      ++in_flight_;
      conn_->out.push_back(std::move(it->second.frame));
      it->second.frame.clear();
    }
    StartWrite();
  }

  void StartWrite() {
    auto conn = conn_;
    if (!conn || conn->writing || conn->out.empty()) return;
    conn->write_buf.clear();
    while (!conn->out.empty() && conn->write_buf.size() < 256 * 1024) {
      conn->write_buf += conn->out.front();
      conn->out.pop_front();
    }
    conn->writing = true;
    asio::async_write(
        conn->stream, asio::buffer(conn->write_buf),
        [this, self = shared_from_this(), conn](const boost::system::error_code& ec, std::size_t) {
          conn->writing = false;
          if (conn->dead) return;
          if (ec) {
            ConnectionLost(
                conn, Error(ErrorCode::kUnavailable, "connection to " + config_.server +
                                                         " lost while sending: " + ec.message()));
            return;
          }
          StartWrite();
        });
  }

  void StartConnect() {
    state_ = State::kConnecting;
    auto conn = std::make_shared<Connection>(io_, ctx_);
    conn_ = conn;
    SSL* ssl = conn->stream.native_handle();
    const std::string& name = config_.server_name.empty() ? address_.host : config_.server_name;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int set_ok;
    if (IsIpLiteral(name)) {
      set_ok = X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      set_ok = X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
      if (set_ok == 1) set_ok = SSL_set_tlsext_host_name(ssl, name.c_str());
    }
    if (set_ok != 1) {
      ConnectFailed(conn, Error(ErrorCode::kInvalidConfig,
                                "cannot use '" + name + "' as the server name to verify"));
      return;
    }
    conn->connect_timer.expires_after(config_.connect_timeout);
    conn->connect_timer.async_wait([conn](const boost::system::error_code& ec) {
      if (ec || conn->dead) return;
      conn->timed_out = true;
      conn->resolver.cancel();
      boost::system::error_code ignored;
      conn->stream.lowest_layer().close(ignored);
    });
    conn->resolver.async_resolve(
        address_.host, address_.port,
        [this, self = shared_from_this(), conn](const boost::system::error_code& ec,
                                                tcp::resolver::results_type results) {
          if (conn->dead) return;
          if (ec) {
            ConnectFailed(conn, TimedOutOr(conn, Error(ErrorCode::kConnectFailed,
                                                       "cannot resolve " + address_.host + ": " +
                                                           ec.message())));
            return;
          }
          asio::async_connect(
              conn->stream.lowest_layer(), results,
              [this, self = shared_from_this(), conn](const boost::system::error_code& ec,
                                                      const tcp::endpoint&) {
                if (conn->dead) return;
                if (ec) {
                  ConnectFailed(conn, TimedOutOr(conn, Error(ErrorCode::kConnectFailed,
                                                             "cannot connect to " + config_.server +
                                                                 ": " + ec.message())));
                  return;
                }
                boost::system::error_code ignored;
                conn->stream.lowest_layer().set_option(tcp::no_delay(true), ignored);
                conn->stream.async_handshake(
                    ssl::stream_base::client,
                    [this, self = shared_from_this(), conn](const boost::system::error_code& ec) {
                      OnHandshake(conn, ec);
                    });
              });
        });
  }

  Error TimedOutOr(const std::shared_ptr<Connection>& conn, Error error) {
    if (!conn->timed_out) return error;
    return Error(ErrorCode::kConnectFailed,
                 "connecting to " + config_.server + " timed out after " +
                     std::to_string(config_.connect_timeout.count()) + " ms");
  }

  void OnHandshake(const std::shared_ptr<Connection>& conn, const boost::system::error_code& ec) {
    if (conn->dead) return;
    if (ec) {
      if (conn->timed_out) {
        ConnectFailed(conn, TimedOutOr(conn, Error(ErrorCode::kTlsFailed, "")));
        return;
      }
      ConnectFailed(conn, Error(ErrorCode::kTlsFailed,
                                "TLS handshake with " + config_.server +
                                    " failed: " + TlsErrorText(ec, conn->stream.native_handle())));
      return;
    }
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(conn->stream.native_handle(), &alpn, &alpn_len);
    if (alpn == nullptr ||
        std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != kAlpnName) {
      ConnectFailed(conn, Error(ErrorCode::kTlsFailed,
                                "server " + config_.server +
                                    " did not select ALPN protocol custos/1 (is it custosd?)"));
      return;
    }
    conn->connect_timer.cancel();
    state_ = State::kConnected;
    in_flight_ = 0;
    orphans_.clear();
    NotifyConnectWaiters(Status());
    StartRead(conn);
    Pump();
  }

  void ConnectFailed(const std::shared_ptr<Connection>& conn, Error error) {
    Kill(conn);
    state_ = State::kDisconnected;
    NotifyConnectWaiters(error);
    // Requests waiting for this connection cannot be sent.
    std::deque<std::uint64_t> waiting;
    waiting.swap(waiting_);
    for (std::uint64_t id : waiting) Finish(id, error);
  }

  void NotifyConnectWaiters(const Status& status) {
    auto waiters = std::move(connect_waiters_);
    connect_waiters_.clear();
    for (auto& w : waiters) w(status);
  }

  void Kill(const std::shared_ptr<Connection>& conn) {
    conn->dead = true;
    conn->connect_timer.cancel();
    conn->resolver.cancel();
    boost::system::error_code ignored;
    conn->stream.lowest_layer().close(ignored);
    if (conn_ == conn) conn_.reset();
  }

  void StartRead(const std::shared_ptr<Connection>& conn) {
    conn->stream.async_read_some(
        asio::buffer(conn->read_buf), [this, self = shared_from_this(), conn](
                                          const boost::system::error_code& ec, std::size_t n) {
          if (conn->dead) return;
          if (ec) {
            std::string why = (ec == asio::error::eof || ec == ssl::error::stream_truncated)
                                  ? "connection closed by " + config_.server
                                  : "connection to " + config_.server + " lost: " + ec.message();
            ConnectionLost(conn, Error(ErrorCode::kUnavailable, why));
            return;
          }
          std::span<const std::uint8_t> bytes(conn->read_buf.data(), n);
          while (true) {
            const std::size_t used = conn->decoder.Feed(bytes);
            bytes = bytes.subspan(used);
            if (conn->decoder.error() != FrameError::kNone) {
              ConnectionLost(conn, Error(ErrorCode::kProtocolError,
                                         "server " + config_.server + " sent a bad frame: " +
                                             std::string(FrameErrorText(conn->decoder.error()))));
              return;
            }
            auto body = conn->decoder.Next();
            if (!body) break;
            v1::Response response;
            if (!ParseResponse(*body, &response)) {
              ConnectionLost(conn,
                             Error(ErrorCode::kProtocolError,
                                   "server " + config_.server + " sent an undecodable response"));
              return;
            }
            OnResponse(std::move(response));
            if (conn->dead) return;
          }
          Pump();
          StartRead(conn);
        });
  }

  void OnResponse(v1::Response response) {
    const std::uint64_t id = response.id();
    if (orphans_.erase(id) > 0) {
      --in_flight_;
      return;
    }
    auto it = calls_.find(id);
    if (it == calls_.end() || !it->second.on_wire) return;  // unknown id: ignore
    --in_flight_;
    Finish(id, std::move(response));
  }

  // The connection is gone: calls on the wire fail; calls still waiting get a
  // fresh connection.
  void ConnectionLost(const std::shared_ptr<Connection>& conn, const Error& error) {
    Kill(conn);
    state_ = State::kDisconnected;
    in_flight_ = 0;
    orphans_.clear();
    std::vector<std::uint64_t> on_wire;
    for (const auto& [id, call] : calls_) {
      if (call.on_wire) on_wire.push_back(id);
    }
    std::sort(on_wire.begin(), on_wire.end());
    for (std::uint64_t id : on_wire) Finish(id, error);
    if (!waiting_.empty() && !shut_down_) StartConnect();
  }

  void Shutdown() {
    shut_down_ = true;
    if (conn_) Kill(conn_);
    state_ = State::kDisconnected;
    NotifyConnectWaiters(Error(ErrorCode::kCancelled, "client is shutting down"));
    std::vector<std::uint64_t> ids;
    for (const auto& [id, call] : calls_) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    for (std::uint64_t id : ids) {
      Finish(id, Error(ErrorCode::kCancelled, "client shut down before a response came"));
    }
    waiting_.clear();
  }

  const ClientConfig config_;
  const ServerAddress address_;
  asio::io_context& io_;
  ssl::context ctx_;
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<std::size_t> pending_{0};

  // Owned by the I/O thread.
  State state_ = State::kDisconnected;
  bool shut_down_ = false;
  std::shared_ptr<Connection> conn_;
  std::unordered_map<std::uint64_t, Call> calls_;
  std::deque<std::uint64_t> waiting_;
  std::unordered_set<std::uint64_t> orphans_;
  std::size_t in_flight_ = 0;
  std::vector<std::function<void(const Status&)>> connect_waiters_;
};

Result<std::unique_ptr<Client>> Client::Connect(const ClientConfig& config) {
  return Connect(config, IoThread());
}

Result<std::unique_ptr<Client>> Client::Connect(const ClientConfig& config,
                                                const IoThread& io_thread) {
  Status valid = ValidateClientConfig(config);
  if (!valid.ok()) return valid.error();
  auto address = ParseServerAddress(config.server);
  if (!address.ok()) return address.error();
  std::shared_ptr<IoThread::Runtime> runtime = io_thread.runtime_;
  auto impl = std::make_shared<Impl>(config, std::move(address).value(), runtime->io);
  Status tls = impl->InitTls();
  if (!tls.ok()) return tls.error();
  Status connected = impl->ConnectBlocking();
  if (!connected.ok()) {
    impl->Close();
    return connected.error();
  }
  return std::unique_ptr<Client>(new Client(std::move(runtime), std::move(impl)));
}

Client::Client(std::shared_ptr<IoThread::Runtime> runtime, std::shared_ptr<Impl> impl)
    : runtime_(std::move(runtime)), impl_(std::move(impl)) {}

Client::~Client() {
  impl_->Close();
  impl_.reset();
  runtime_.reset();  // joins the thread if this Client was its last user
}

void Client::Send(v1::Request request, Callback done, CallOptions options) {
  impl_->Send(std::move(request), std::move(done), options);
}

std::future<Result<v1::Response>> Client::Send(v1::Request request, CallOptions options) {
  auto promise = std::make_shared<std::promise<Result<v1::Response>>>();
  auto future = promise->get_future();
  impl_->Send(
      std::move(request),
      [promise](Result<v1::Response> result) { promise->set_value(std::move(result)); }, options);
  return future;
}

Result<v1::Response> Client::Call(v1::Request request, CallOptions options) {
  if (request.idempotency_key().empty() &&
      (request.has_sign() || request.has_sign_batch() || request.has_create_key())) {
    request.set_idempotency_key(RandomIdempotencyKey());
  }
  std::mt19937_64 rng(std::random_device{}());
  const int retries = std::max(0, impl_->config().retries);
  for (int attempt = 0;; ++attempt) {
    Result<v1::Response> result = Send(request, options).get();
    const bool retry =
        result.ok() ? (result->status().code() == v1::UNAVAILABLE && result->status().retryable())
                    : result.error().retryable();
    if (!retry || attempt >= retries) return result;
    const auto& cfg = impl_->config();
    const std::int64_t cap = std::min<std::int64_t>(
        cfg.backoff_max.count(), cfg.backoff_initial.count() << std::min(attempt, 20));
    std::uniform_int_distribution<std::int64_t> jitter(0, std::max<std::int64_t>(cap, 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(jitter(rng)));
  }
}

std::size_t Client::pending() const { return impl_->pending(); }

const ClientConfig& Client::config() const { return impl_->config(); }

}  // namespace custos::client
