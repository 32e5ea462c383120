#include "custos/service/server.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>

#include <csignal>

#include <atomic>
#include <boost/asio.hpp>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "custos/client/framing.h"
#include "custos/service/audit_log.h"
#include "custos/service/threads.h"
#include "custos/v1/custos.pb.h"
#include "request_info.h"
#include "tls_socket.h"

namespace custos::service {

namespace asio = boost::asio;
namespace v1 = custos::v1;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

using namespace request_info;

constexpr std::string_view kAlpn = "custos/1";
constexpr std::chrono::milliseconds kTlsShutdownTimeout{1000};

// ALPN (RFC 7301): select "custos/1" when offered, otherwise refuse the
// handshake with a fatal no_application_protocol alert.
int SelectAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int len = in[i];
    if (len == 0 || i + 1 + len > inlen) break;
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == kAlpn) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::string Asn1ToUtf8(const ASN1_STRING* s) {
  unsigned char* out = nullptr;
  const int n = ASN1_STRING_to_UTF8(&out, s);
  if (n < 0) return "";
  std::string text(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
  OPENSSL_free(out);
  // A name with an embedded NUL is not a name we will match on.
  if (text.find('\0') != std::string::npos) return "";
  return text;
}

struct PeerNames {
  std::vector<std::string> uris;
  std::vector<std::string> dns;
  std::string cn;
};

PeerNames NamesOf(X509* cert) {
  PeerNames names;
  if (!cert) return names;
  auto* gens =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (gens) {
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
      if (g->type == GEN_URI) {
        auto s = Asn1ToUtf8(g->d.uniformResourceIdentifier);
        if (!s.empty()) names.uris.push_back(std::move(s));
      } else if (g->type == GEN_DNS) {
        auto s = Asn1ToUtf8(g->d.dNSName);
        if (!s.empty()) names.dns.push_back(std::move(s));
      }
    }
    GENERAL_NAMES_free(gens);
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  const int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx >= 0) {
    names.cn = Asn1ToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
  }
  return names;
}

// Bounds peer-chosen text before it goes into a log line.
std::string_view Bounded(std::string_view s, std::size_t max = 128) { return s.substr(0, max); }

v1::Response ErrorResponse(std::uint64_t id, v1::StatusCode code, std::string message,
                           bool retryable = false) {
  v1::Response r;
  r.set_id(id);
  r.mutable_status()->set_code(code);
  r.mutable_status()->set_message(std::move(message));
  r.mutable_status()->set_retryable(retryable);
  return r;
}

v1::Response AuditRefusal(std::uint64_t id, const std::string& why) {
  return ErrorResponse(id, v1::UNAVAILABLE,
                       "audit log unavailable: " + why + "; refusing to act unrecorded", true);
}

// Each connection is a file descriptor: lift the soft limit on open files to
// the hard limit (the default soft limit, 1024, would cap custosd far below
// max-connections) and say so when even that is below max-connections.
void RaiseOpenFileLimit(std::size_t max_connections, Logger& logger) {
  struct rlimit lim {};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    struct rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  // Besides connections: the listener, the audit log, SQLite, the HSM module.
  constexpr rlim_t kReserved = 64;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < max_connections + kReserved) {
    LogLine(logger, LogLevel::kWarn, "open_file_limit")
        .Unsigned("limit", lim.rlim_cur)
        .Unsigned("max_connections", max_connections)
        .Str("hint", "raise LimitNOFILE (systemd) or ulimit -Hn, or lower limits.max-connections");
  }
}

}  // namespace

class Connection;

struct Server::Impl {
  ServerOptions opts;
  RequestHandler& handler;
  Logger& logger;
  asio::io_context ioc;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> tls{SSL_CTX_new(TLS_server_method()),
                                                        &SSL_CTX_free};
  tcp::acceptor acceptor{ioc};
  asio::signal_set signals{ioc};
  asio::steady_timer drain_timer{ioc};
  asio::steady_timer accept_retry{ioc};
  asio::thread_pool pool;
  const Clock::time_point started = Clock::now();
  std::atomic<bool> draining{false};
  Clock::time_point drain_deadline;
  std::atomic<std::size_t> connections{0};
  std::uint64_t next_conn_id = 1;  // used on the acceptor's handler only

  std::mutex mu;
  std::map<std::uint64_t, std::weak_ptr<Connection>> live;  // GUARDED_BY(mu)

  Impl(ServerOptions o, RequestHandler& h, Logger& l)
      : opts(std::move(o)), handler(h), logger(l), pool(opts.workers) {
    NameWorkers();
  }

  // One naming task per worker: each waits for all the others, so no thread
  // takes two.
  void NameWorkers() {
    auto all_named = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(opts.workers));
    for (std::size_t i = 0; i < opts.workers; ++i) {
      asio::post(pool, [all_named] {
        NameCurrentThread("custosd-hsm");
        all_named->arrive_and_wait();
      });
    }
  }

  void SetUpIoThread(std::string_view name) {
    if (auto r = SetUpCurrentThread(name, opts.io_scheduling); !r) {
      LogLine(logger, LogLevel::kWarn, "thread_scheduling").Str("error", r.error());
    }
  }

  Result<void> SetUpTls();
  Result<void> Listen();
  void Accept();
  void BeginDrain();
  void CheckDrain();
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server::Impl& srv, tcp::socket socket, std::uint64_t id, std::string peer)
      : srv_(srv),
        stream_(std::move(socket), srv.tls.get()),
        timer_(stream_.get_executor()),
        shutdown_timer_(stream_.get_executor()),
        decoder_(srv.opts.limits.max_frame_bytes),
        id_(id),
        peer_(std::move(peer)) {}

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoStart(); });
  }
  // Graceful: finish what is in flight, then close.
  void Drain() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoDrain(); });
  }
  void ForceClose() {
    asio::dispatch(stream_.get_executor(),
                   [self = shared_from_this()] { self->Terminate("drain timeout"); });
  }

 private:
  struct Meta {
    std::uint64_t request_id = 0;
    std::string op;
    std::string key;
    std::string trace_id;
    std::string op_sha256;
    // submit_approval: the statement submitted, to find its vote in the answer.
    std::string statement;
    Clock::time_point received;
    // Where the time went, for the request log line (unset: step skipped).
    Clock::time_point started;   // a worker took it
    Clock::time_point recorded;  // its record went to the audit log
    Clock::time_point durable;   // the record was written and fdatasync'ed
  };

  void DoStart() {
    timer_.expires_after(srv_.opts.limits.handshake_timeout);
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->handshake_done_ || self->closed_) return;
      LogLine(self->srv_.logger, LogLevel::kInfo, "handshake_timeout")
          .Unsigned("conn", self->id_)
          .Str("peer", self->peer_);
      self->Terminate("handshake timeout");
    });
    stream_.AsyncHandshake([self = shared_from_this()](TlsResult r) { self->OnHandshake(r); });
  }

  void OnHandshake(const TlsResult& result) {
    if (closed_) return;
    timer_.cancel();
    if (!result.ok()) {
      std::string why = result.message;
      const long verify = SSL_get_verify_result(stream_.native_handle());
      if (verify != X509_V_OK) why += std::string(": ") + X509_verify_cert_error_string(verify);
      LogLine(srv_.logger, LogLevel::kInfo, "handshake_failed")
          .Unsigned("conn", id_)
          .Str("peer", peer_)
          .Str("error", why);
      Terminate("handshake failed");
      return;
    }
    handshake_done_ = true;
    SSL* ssl = stream_.native_handle();
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (std::string_view(reinterpret_cast<const char*>(alpn), alpn ? alpn_len : 0) != kAlpn) {
      LogLine(srv_.logger, LogLevel::kInfo, "handshake_failed")
          .Unsigned("conn", id_)
          .Str("peer", peer_)
          .Str("error", "client did not offer ALPN \"custos/1\"");
      BeginClose("no ALPN custos/1");
      return;
    }
    const PeerNames names = NamesOf(SSL_get0_peer_certificate(ssl));
    principal_ = srv_.opts.principal_of ? srv_.opts.principal_of(names.uris, names.dns, names.cn)
                                        : (names.uris.empty() ? names.cn : names.uris.front());
    LogLine(srv_.logger, LogLevel::kInfo, "connection_open")
        .Unsigned("conn", id_)
        .Str("peer", peer_)
        .Str("principal", principal_)
        .Str("tls", SSL_get_version(ssl));
    if (srv_.draining) {
      DoDrain();
      return;
    }
    ArmIdle();
    ReadMore();
  }

  void ReadMore() {
    if (reading_ || closing_ || read_closed_ || closed_) return;
    if (inflight_ >= srv_.opts.limits.max_inflight_per_connection) return;  // backpressure
    if (buf_off_ < buf_len_) return;  // buffered bytes are processed first
    reading_ = true;
    stream_.AsyncReadSome(buf_, [self = shared_from_this()](const TlsResult& r, std::size_t n) {
      self->OnRead(r, n);
    });
  }

  void OnRead(const TlsResult& result, std::size_t n) {
    reading_ = false;
    if (closed_) return;
    if (closing_) {
      MaybeFinishClose();
      return;
    }
    if (!result.ok()) {
      read_closed_ = true;
      if (decoder_.HasPartialFrame()) {
        LogLine(srv_.logger, LogLevel::kInfo, "protocol_error")
            .Unsigned("conn", id_)
            .Str("peer", peer_)
            .Str("principal", principal_)
            .Str("error", "connection ended inside a frame");
      }
      close_reason_ = result.kind == TlsResult::kEof || result.kind == TlsResult::kTruncated
                          ? "peer closed"
                          : "read error: " + result.message;
      if (inflight_ == 0 && pending_.empty() && !writing_) {
        Terminate(close_reason_);
      } else {
        closing_ = true;  // finish writing what is owed, then close
      }
      return;
    }
    buf_off_ = 0;
    buf_len_ = n;
    ProcessBuffered();
    ReadMore();
  }

  // Decodes buffered bytes into requests while the in-flight bound allows;
  // a complete frame beyond the bound stays in the decoder until a response
  // has been written.
  void ProcessBuffered() {
    const std::size_t max_inflight = srv_.opts.limits.max_inflight_per_connection;
    bool fed_nothing = false;
    while (!closing_ && !closed_) {
      if (inflight_ >= max_inflight) return;
      if (auto frame = decoder_.Next()) {
        fed_nothing = false;
        HandleFrame(std::move(*frame));
        continue;
      }
      if (decoder_.error() != client::FrameError::kNone) {
        FrameError();
        return;
      }
      if (buf_off_ >= buf_len_) return;
      const std::size_t used =
          decoder_.Feed(std::span<const std::uint8_t>(buf_.get() + buf_off_, buf_len_ - buf_off_));
      buf_off_ += used;
      if (used == 0) {
        // The decoder takes no bytes only while a frame waits in it; twice in
        // a row with no frame would loop forever, so drop the connection.
        if (fed_nothing) {
          Terminate("frame decoder stalled");
          return;
        }
        fed_nothing = true;
      }
    }
  }

  void FrameError() {
    std::string message;
    v1::StatusCode code = v1::INVALID_ARGUMENT;
    if (decoder_.error() == client::FrameError::kTooLarge) {
      code = v1::RESOURCE_EXHAUSTED;
      message = "frame of " + std::to_string(decoder_.announced_length()) +
                " bytes exceeds the limit of " + std::to_string(srv_.opts.limits.max_frame_bytes);
    } else {
      message = "zero-length frame: every frame carries one custos.v1.Request";
    }
    SendErrorAndClose(ErrorResponse(0, code, message), "");
  }

  // Answers a frame that carries no usable request (after its audit record,
  // which names no operation) and closes the connection.
  void SendErrorAndClose(v1::Response resp, std::string body_sha256) {
    LogLine(srv_.logger, LogLevel::kInfo, "protocol_error")
        .Unsigned("conn", id_)
        .Str("peer", peer_)
        .Str("principal", principal_)
        .Str("status", v1::StatusCode_Name(resp.status().code()))
        .Str("error", resp.status().message());
    if (srv_.opts.audit == nullptr) {
      Enqueue(client::EncodeFrame(resp), /*completes_request=*/false);
      BeginClose("protocol error");
      return;
    }
    Meta meta;
    meta.op = "";
    meta.op_sha256 = std::move(body_sha256);
    meta.received = Clock::now();
    ++inflight_;  // holds the close until the response is written
    BeginClose("protocol error");
    Finish(std::move(resp), std::move(meta), /*track_id=*/false);
  }

  void HandleFrame(std::string body) {
    disarm_idle();
    auto req = std::make_shared<v1::Request>();
    if (!client::ParseRequest(body, req.get())) {
      SendErrorAndClose(ErrorResponse(0, v1::INVALID_ARGUMENT,
                                      "frame of " + std::to_string(body.size()) +
                                          " bytes is not a valid custos.v1.Request"),
                        Sha256Hex(body));
      return;
    }
    Meta meta;
    meta.request_id = req->id();
    meta.op = std::string(OpName(*req));
    const std::string ca_key = CaKeyOf(*req);
    meta.key = std::string(Bounded(ca_key.empty() ? KeyOf(*req) : std::string_view(ca_key)));
    meta.trace_id = std::string(Bounded(req->trace_id()));
    if (srv_.opts.audit) meta.op_sha256 = OpSha256(*req);
    if (req->op_case() == v1::Request::kSubmitApproval) {
      meta.statement = req->submit_approval().statement();
    }
    meta.received = Clock::now();
    ++inflight_;

    if (req->op_case() == v1::Request::kPing) {
      v1::Response resp;
      resp.set_id(req->id());
      resp.mutable_status()->set_code(v1::OK);
      resp.mutable_ping()->set_server_version(srv_.opts.server_version);
      resp.mutable_ping()->set_uptime_seconds(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - srv_.started).count()));
      Finish(std::move(resp), std::move(meta), /*track_id=*/false);
      return;
    }
    if (srv_.draining || draining_) {
      Finish(ErrorResponse(req->id(), v1::UNAVAILABLE,
                           "custosd is shutting down; retry on a new connection", true),
             std::move(meta), false);
      return;
    }
    if (!ids_.insert(req->id()).second) {
      Finish(ErrorResponse(req->id(), v1::INVALID_ARGUMENT,
                           "request id " + std::to_string(req->id()) +
                               " is already in flight on this connection"),
             std::move(meta), false);
      return;
    }
    const auto budget = req->deadline_ms() != 0 ? std::chrono::milliseconds(req->deadline_ms())
                                                : srv_.opts.limits.request_timeout;
    const auto deadline = meta.received + budget;
    AuditLog* audit = srv_.opts.audit;
    if (audit != nullptr && NeedsIntent(meta.op) && audit->available()) {
      // A state change is recorded as intended before it happens, so that no
      // crash or write failure can leave it done and unrecorded.
      audit::RequestFields intent = RecordFor(v1::Response(), meta);
      intent.kind = "intent";
      intent.outcome = "";
      audit->Append(
          intent, [self = shared_from_this(), req, meta, deadline, budget](const Result<void>& r) {
            if (!r) {
              self->Finish(AuditRefusal(req->id(), r.error()), meta, /*track_id=*/true);
              return;
            }
            asio::post(self->srv_.pool, [self, req, meta, deadline, budget] {
              self->Execute(*req, meta, deadline, budget);
            });
          });
      return;
    }
    asio::post(srv_.pool, [self = shared_from_this(), req, meta, deadline, budget] {
      self->Execute(*req, meta, deadline, budget);
    });
  }

  // On a worker: answers one request (the handler, or here for what the
  // network side answers itself), then Finish()es it.
  void Execute(const v1::Request& req, Meta meta, Clock::time_point deadline,
               std::chrono::milliseconds budget) {
    meta.started = Clock::now();
    v1::Response resp;
    AuditLog* audit = srv_.opts.audit;
    if (Clock::now() > deadline) {
      resp = ErrorResponse(req.id(), v1::DEADLINE_EXCEEDED,
                           "request waited past its deadline of " + std::to_string(budget.count()) +
                               " ms in the queue; it was not executed",
                           true);
    } else if (audit != nullptr && !audit->available()) {
      resp = AuditRefusal(req.id(), audit->unavailable_reason());
    } else if (audit != nullptr && req.op_case() == v1::Request::kAuditCheckpoint) {
      resp = CheckpointResponse(req.id());
    } else {
      try {
        resp = srv_.handler.Handle(principal_, peer_, req);
        resp.set_id(req.id());
      } catch (const std::exception& e) {
        resp = ErrorResponse(req.id(), v1::INTERNAL, std::string("internal error: ") + e.what());
      }
    }
    Finish(std::move(resp), std::move(meta), /*track_id=*/true);
  }

  v1::Response CheckpointResponse(std::uint64_t id) const {
    if (principal_.empty()) {
      return ErrorResponse(id, v1::UNAUTHENTICATED,
                           "the client certificate names no principal (no URI SAN, DNS SAN or CN)");
    }
    auto line = srv_.opts.audit->LatestCheckpoint();
    if (!line) {
      return ErrorResponse(id, v1::UNAVAILABLE,
                           "no audit checkpoint has been signed yet (is there an audit key? see "
                           "custosd's log)",
                           true);
    }
    auto parsed = audit::ParseLine(*line);
    if (!parsed) {
      return ErrorResponse(id, v1::INTERNAL, "latest audit checkpoint: " + parsed.error());
    }
    v1::Response resp;
    resp.set_id(id);
    resp.mutable_status()->set_code(v1::OK);
    auto* cp = resp.mutable_audit_checkpoint();
    cp->set_record(*line);
    cp->set_sequence(parsed->Number("seq").value_or(0));
    cp->set_covers(parsed->Number("covers").value_or(0));
    cp->set_covers_hash(parsed->String("covers_hash").value_or(""));
    cp->set_time(parsed->String("time").value_or(""));
    cp->set_key(parsed->String("key").value_or(""));
    cp->set_algorithm(parsed->String("algorithm").value_or(""));
    if (auto sig = audit::ParseHex(parsed->String("signature").value_or(""))) {
      cp->set_signature(sig->data(), sig->size());
    }
    return resp;
  }

  audit::RequestFields RecordFor(const v1::Response& resp, const Meta& meta) const {
    audit::RequestFields f;
    f.principal = principal_;
    f.peer = peer_;
    f.request_id = meta.request_id;
    f.trace_id = meta.trace_id;
    f.op = meta.op;
    f.key = ResultKey(resp);
    if (f.key.empty()) f.key = meta.key;
    f.op_sha256 = meta.op_sha256;
    f.outcome = v1::StatusCode_Name(resp.status().code());
    if (resp.status().code() != v1::OK) f.error = resp.status().message();
    if (resp.has_pending()) {
      const v1::PendingRequestInfo& p = resp.pending();
      f.quorum_request = p.id();
      // An accepted vote: the evidence to check it offline (docs/quorum.md).
      if (meta.op == "submit_approval" && resp.status().code() == v1::OK) {
        for (const auto& v : p.votes()) {
          if (v.statement() != meta.statement) continue;
          f.approvals.push_back(
              v.officer() + " " + v.decision() + " " + v.time() + " " + p.digest() + " " +
              audit::Hex({reinterpret_cast<const std::uint8_t*>(v.signature().data()),
                          v.signature().size()}));
        }
      }
    }
    return f;
  }

  // Records the request in the audit log and completes it on the
  // connection's strand once the record is durable. From any thread. When
  // the record cannot be written the response becomes UNAVAILABLE; ping is
  // answered regardless (health checks work while the log is down), and
  // unrecorded only then.
  void Finish(v1::Response resp, Meta meta, bool track_id) {
    AuditLog* audit = srv_.opts.audit;
    auto self = shared_from_this();
    if (audit == nullptr || (meta.op == "ping" && !audit->available())) {
      asio::post(stream_.get_executor(),
                 [self, resp = std::move(resp), meta = std::move(meta), track_id]() mutable {
                   self->Complete(std::move(resp), meta, track_id);
                 });
      return;
    }
    meta.recorded = Clock::now();
    const audit::RequestFields record = RecordFor(resp, meta);
    auto held = std::make_shared<std::pair<v1::Response, Meta>>(std::move(resp), std::move(meta));
    audit->Append(record, [self, held, track_id](const Result<void>& r) {
      std::string why = r ? std::string() : r.error();
      held->second.durable = Clock::now();
      asio::post(self->stream_.get_executor(), [self, held, track_id, why = std::move(why)] {
        v1::Response& out = held->first;
        if (!why.empty() && held->second.op != "ping") out = AuditRefusal(out.id(), why);
        self->Complete(std::move(out), held->second, track_id);
      });
    });
  }

  // latency_us split into its steps: waiting for a worker (queued_us), the
  // handler (exec_us), the audit record's write + fdatasync including the wait
  // for its group (audit_us), and the hand-back to this connection (return_us).
  static void AddStepTimes(LogLine& line, const Meta& meta, Clock::time_point now) {
    const auto us = [](Clock::time_point from, Clock::time_point to) {
      return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
    };
    const Clock::time_point unset{};
    if (meta.started != unset) line.Num("queued_us", us(meta.received, meta.started));
    if (meta.started != unset && meta.recorded != unset) {
      line.Num("exec_us", us(meta.started, meta.recorded));
    }
    if (meta.recorded != unset && meta.durable != unset) {
      line.Num("audit_us", us(meta.recorded, meta.durable));
      line.Num("return_us", us(meta.durable, now));
    }
  }

  void Complete(v1::Response resp, const Meta& meta, bool track_id) {
    if (track_id) ids_.erase(meta.request_id);
    const Clock::time_point now = Clock::now();
    const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(now - meta.received);
    const bool ok = resp.status().code() == v1::OK;
    const LogLevel level = meta.op == "ping" && ok ? LogLevel::kDebug : LogLevel::kInfo;
    {
      LogLine line(srv_.logger, level, "request");
      line.Unsigned("conn", id_)
          .Str("peer", peer_)
          .Str("principal", principal_)
          .Unsigned("request_id", meta.request_id)
          .Str("trace_id", meta.trace_id)
          .Str("op", meta.op);
      if (!meta.key.empty()) line.Str("key", meta.key);
      line.Str("status", v1::StatusCode_Name(resp.status().code()))
          .Num("latency_us", latency.count());
      AddStepTimes(line, meta, now);
      if (!ok) {
        line.Str("error", resp.status().message());
        if (!resp.status().policy_rule().empty())
          line.Str("policy_rule", resp.status().policy_rule());
        if (!resp.status().ckr().empty()) line.Str("ckr", resp.status().ckr());
      }
      if (resp.has_sign_batch()) line.Num("items", resp.sign_batch().results_size());
    }
    if (closed_) {
      --inflight_;
      return;
    }
    Enqueue(client::EncodeFrame(resp), /*completes_request=*/true);
  }

  // Writes are deferred by one turn of the strand: the audit writer completes
  // a group of records at once, and the responses it posts for this
  // connection then leave in one SSL_write (one TLS record, one syscall) on
  // both sides, instead of one each.
  void Enqueue(std::string frame, bool completes_request) {
    pending_.push_back(std::move(frame));
    if (completes_request) ++pending_requests_;
    if (flush_posted_ || writing_) return;
    flush_posted_ = true;
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->flush_posted_ = false;
      self->WriteNext();
    });
  }

  void WriteNext() {
    if (writing_ || pending_.empty() || closed_) return;
    // Coalesce every queued frame into one write (and so few TLS records).
    out_.clear();
    for (auto& f : pending_) out_ += f;
    pending_.clear();
    out_requests_ = pending_requests_;
    pending_requests_ = 0;
    writing_ = true;
    stream_.AsyncWrite(out_, [self = shared_from_this()](const TlsResult& r) { self->OnWrite(r); });
  }

  void OnWrite(const TlsResult& result) {
    writing_ = false;
    inflight_ -= out_requests_;
    out_requests_ = 0;
    if (closed_) return;
    if (!result.ok()) {
      Terminate("write error: " + result.message);
      return;
    }
    if (closing_) {
      WriteNext();
      MaybeFinishClose();
      return;
    }
    if (inflight_ == 0 && draining_ && pending_.empty()) {
      BeginClose("shutdown");
      return;
    }
    if (inflight_ == 0) ArmIdle();
    ProcessBuffered();
    ReadMore();
    WriteNext();
  }

  void ArmIdle() {
    if (closed_ || closing_) return;
    const std::uint64_t gen = ++idle_gen_;
    timer_.expires_after(srv_.opts.limits.idle_timeout);
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->idle_gen_ || self->closed_) return;
      if (self->inflight_ != 0) return;
      LogLine(self->srv_.logger, LogLevel::kInfo, "idle_timeout")
          .Unsigned("conn", self->id_)
          .Str("peer", self->peer_)
          .Str("principal", self->principal_);
      self->BeginClose("idle timeout");
    });
  }
  void disarm_idle() {
    ++idle_gen_;
    timer_.cancel();
  }

  void DoDrain() {
    if (closed_) return;
    draining_ = true;
    if (!handshake_done_) {
      Terminate("shutdown");
      return;
    }
    if (inflight_ == 0 && pending_.empty() && !writing_) BeginClose("shutdown");
  }

  // Stops reading, lets queued and in-flight responses go out, then closes
  // the TLS session.
  void BeginClose(std::string reason) {
    if (closing_ || closed_) {
      return;
    }
    closing_ = true;
    close_reason_ = std::move(reason);
    MaybeFinishClose();
  }

  void MaybeFinishClose() {
    if (closed_ || shutting_down_) return;
    if (writing_ || !pending_.empty() || inflight_ != 0) return;
    if (reading_) {
      stream_.Cancel();  // OnRead comes back here
      return;
    }
    shutting_down_ = true;
    ++idle_gen_;
    timer_.cancel();
    if (read_closed_ || !handshake_done_) {
      Terminate(close_reason_);
      return;
    }
    shutdown_timer_.expires_after(kTlsShutdownTimeout);
    shutdown_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->Terminate(self->close_reason_);
    });
    stream_.AsyncShutdown(
        [self = shared_from_this()](const TlsResult&) { self->Terminate(self->close_reason_); });
  }

  void Terminate(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    shutdown_timer_.cancel();
    stream_.Close();
    {
      std::lock_guard<std::mutex> lock(srv_.mu);
      srv_.live.erase(id_);
    }
    srv_.connections.fetch_sub(1);
    LogLine(srv_.logger, LogLevel::kInfo, "connection_closed")
        .Unsigned("conn", id_)
        .Str("peer", peer_)
        .Str("principal", principal_)
        .Str("reason", reason.empty() ? close_reason_ : reason)
        .Unsigned("in_flight", inflight_);
    if (srv_.draining) {
      asio::post(srv_.ioc, [srv = &srv_] { srv->CheckDrain(); });
    }
  }

  Server::Impl& srv_;
  TlsSocket stream_;
  asio::steady_timer timer_;  // handshake, then idle deadline
  asio::steady_timer shutdown_timer_;
  client::FrameDecoder decoder_;
  TlsSocket::ReadBuffer buf_;  // held only while bytes are arriving
  std::size_t buf_off_ = 0;
  std::size_t buf_len_ = 0;
  std::vector<std::string> pending_;  // frames queued for writing
  std::size_t pending_requests_ = 0;  // requests completed by pending_
  std::string out_;                   // the write in progress
  std::size_t out_requests_ = 0;
  std::size_t inflight_ = 0;  // read and not yet written back
  std::set<std::uint64_t> ids_;
  std::uint64_t idle_gen_ = 0;
  bool handshake_done_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;  // a WriteNext() is queued on the strand
  bool read_closed_ = false;
  bool draining_ = false;
  bool closing_ = false;
  bool shutting_down_ = false;
  bool closed_ = false;
  std::string close_reason_;
  const std::uint64_t id_;
  const std::string peer_;
  std::string principal_;
};

Result<void> Server::Impl::SetUpTls() {
  SSL_CTX* ctx = tls.get();
  if (ctx == nullptr) return Error{"cannot create the TLS context: " + OpenSslError()};
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return Error{"cannot restrict TLS to version 1.3: " + OpenSslError()};
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Idle connections give their record buffers back (see tls_socket.h).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, opts.tls.cert.c_str()) != 1) {
    return Error{"cannot load TLS certificate chain " + opts.tls.cert + ": " + OpenSslError()};
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, opts.tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Error{"cannot load TLS private key " + opts.tls.key + ": " + OpenSslError()};
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Error{"TLS private key " + opts.tls.key + " does not match certificate " +
                 opts.tls.cert};
  }
  if (SSL_CTX_load_verify_locations(ctx, opts.tls.client_ca.c_str(), nullptr) != 1) {
    return Error{"cannot load client CA " + opts.tls.client_ca + ": " + OpenSslError()};
  }
  if (STACK_OF(X509_NAME)* cas = SSL_load_client_CA_file(opts.tls.client_ca.c_str())) {
    SSL_CTX_set_client_CA_list(ctx, cas);
  }
  ERR_clear_error();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  if (!opts.tls.crl.empty()) {
    BIO* bio = BIO_new_file(opts.tls.crl.c_str(), "r");
    if (!bio) return Error{"cannot read CRL " + opts.tls.crl + ": " + OpenSslError()};
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr)) {
      const int added = X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
      if (added != 1) {
        BIO_free(bio);
        return Error{"cannot add CRL from " + opts.tls.crl + ": " + OpenSslError()};
      }
      ++count;
    }
    BIO_free(bio);
    ERR_clear_error();
    if (count == 0) return Error{"CRL file " + opts.tls.crl + " holds no PEM X509 CRL"};
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return {};
}

Result<void> Server::Impl::Listen() {
  error_code ec;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(opts.listen_host, std::to_string(opts.listen_port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return Error{"cannot resolve listen host " + opts.listen_host + ": " + ec.message()};
  }
  const tcp::endpoint ep = results.begin()->endpoint();
  const std::string where = opts.listen_host + ":" + std::to_string(opts.listen_port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{"cannot listen on " + where + ": " + ec.message()};
  return {};
}

void Server::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
    if (draining || !acceptor.is_open()) return;
    if (ec) {
      LogLine(logger, LogLevel::kWarn, "accept_failed").Str("error", ec.message());
      // Out of descriptors and the like: back off instead of spinning.
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](error_code e) {
        if (!e) Accept();
      });
      return;
    }
    error_code pe;
    const auto remote = socket.remote_endpoint(pe);
    std::string peer =
        pe ? "unknown" : remote.address().to_string() + ":" + std::to_string(remote.port());
    if (remote.address().is_v6() && !pe) {
      peer = "[" + remote.address().to_string() + "]:" + std::to_string(remote.port());
    }
    if (connections.load() >= opts.limits.max_connections) {
      LogLine(logger, LogLevel::kWarn, "connection_refused")
          .Str("peer", peer)
          .Str("reason",
               "max-connections (" + std::to_string(opts.limits.max_connections) + ") reached");
      error_code ignored;
      socket.close(ignored);
    } else {
      const std::uint64_t id = next_conn_id++;
      socket.set_option(tcp::no_delay(true), pe);
      connections.fetch_add(1);
      auto conn = std::make_shared<Connection>(*this, std::move(socket), id, peer);
      {
        std::lock_guard<std::mutex> lock(mu);
        live.emplace(id, conn);
      }
      conn->Start();
    }
    Accept();
  });
}

void Server::Impl::BeginDrain() {
  if (draining.exchange(true)) return;
  error_code ignored;
  acceptor.close(ignored);
  signals.cancel(ignored);
  accept_retry.cancel();
  LogLine(logger, LogLevel::kInfo, "draining")
      .Unsigned("connections", connections.load())
      .Num("drain_timeout_ms", opts.drain_timeout.count());
  drain_deadline = Clock::now() + opts.drain_timeout;
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [id, weak] : live) {
      if (auto c = weak.lock()) conns.push_back(std::move(c));
    }
  }
  for (auto& c : conns) c->Drain();
  drain_timer.expires_at(drain_deadline);
  drain_timer.async_wait([this](error_code ec) {
    if (ec) return;
    std::vector<std::shared_ptr<Connection>> left;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (auto& [id, weak] : live) {
        if (auto c = weak.lock()) left.push_back(std::move(c));
      }
    }
    LogLine(logger, LogLevel::kWarn, "drain_timeout").Unsigned("connections", left.size());
    for (auto& c : left) c->ForceClose();
    asio::post(ioc, [this] { ioc.stop(); });
  });
  CheckDrain();
}

void Server::Impl::CheckDrain() {
  if (connections.load() == 0) {
    drain_timer.cancel();
  }
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (!impl_) return;
  impl_->ioc.stop();
  impl_->pool.join();
}

Result<std::unique_ptr<Server>> Server::Create(ServerOptions options, RequestHandler& handler,
                                               Logger& logger) {
  if (options.workers == 0 || options.io_threads == 0) {
    return Error{"server needs at least one worker and one I/O thread"};
  }
  // OpenSSL writes to the sockets itself (tls_socket.h), without MSG_NOSIGNAL:
  // a peer that closes mid-write must give EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  RaiseOpenFileLimit(options.limits.max_connections, logger);
  auto impl = std::make_unique<Impl>(std::move(options), handler, logger);
  if (auto r = impl->SetUpTls(); !r) return Error{r.error()};
  if (auto r = impl->Listen(); !r) return Error{r.error()};
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::uint16_t Server::port() const {
  error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

std::string Server::address() const {
  error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  if (ec) return impl_->opts.listen_host + ":" + std::to_string(impl_->opts.listen_port);
  const auto addr = ep.address();
  return (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
         std::to_string(ep.port());
}

void Server::Stop() {
  asio::post(impl_->ioc, [impl = impl_.get()] { impl->BeginDrain(); });
}

void Server::Run() {
  Impl& d = *impl_;
  if (d.opts.handle_signals) {
    d.signals.add(SIGTERM);
    d.signals.add(SIGINT);
    d.signals.async_wait([&d](error_code ec, int signo) {
      if (ec) return;
      LogLine(d.logger, LogLevel::kInfo, "signal").Num("signal", signo);
      d.BeginDrain();
    });
  }
  d.Accept();
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < d.opts.io_threads; ++i) {
    threads.emplace_back([&d] {
      d.SetUpIoThread("custosd-io");
      d.ioc.run();
    });
  }
  d.SetUpIoThread("");  // the caller's thread keeps its name
  d.ioc.run();
  for (auto& t : threads) t.join();
  // Requests still with the workers finish (their responses have nowhere to
  // go); the token's own timeouts bound them.
  d.pool.join();
  LogLine(d.logger, LogLevel::kInfo, "stopped");
}

}  // namespace custos::service
