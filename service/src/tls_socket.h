// A server-side TLS connection driven directly on its socket (SSL_set_fd)
// with Boost.Asio readiness waits, instead of asio::ssl::stream.
//
// Why: asio::ssl::stream keeps two 17 KB buffers per connection and its BIO
// pair two more, about 95 KB per connection in custosd, so 10,000 idle
// connections cost ~950 MB. Here an idle connection holds only OpenSSL's
// session state: SSL_MODE_RELEASE_BUFFERS frees the record buffers between
// records, and the read buffer exists only while bytes are arriving.
// It also saves the copy through the BIO pair on every record.
//
// All calls for one connection must run on its socket's executor (a strand):
// OpenSSL allows SSL_read and SSL_write on one SSL object in turn, not at the
// same time. Completion handlers are never invoked from inside the call that
// starts the operation.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

namespace custos::service {

// The outcome of one TLS operation.
struct TlsResult {
  enum Kind {
    kOk,
    kEof,        // the peer sent close_notify
    kTruncated,  // the peer closed the TCP connection without close_notify
    kAborted,    // the socket was cancelled or closed by us
    kError,      // a TLS or socket error; message says which
  };
  Kind kind = kOk;
  std::string message;

  bool ok() const { return kind == kOk; }
  static TlsResult Error(std::string m) { return {kError, std::move(m)}; }
};

class TlsSocket {
 public:
  using tcp = boost::asio::ip::tcp;

  // Takes a connected, accepted socket. SSL_new failures surface on the
  // handshake.
  TlsSocket(tcp::socket socket, SSL_CTX* ctx) : socket_(std::move(socket)), ssl_(SSL_new(ctx)) {
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);
    if (ssl_) {
      SSL_set_fd(ssl_.get(), static_cast<int>(socket_.native_handle()));
      SSL_set_accept_state(ssl_.get());
      SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                   SSL_MODE_RELEASE_BUFFERS);
    }
  }
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  SSL* native_handle() const { return ssl_.get(); }
  tcp::socket::executor_type get_executor() { return socket_.get_executor(); }

  // Completes the server handshake; handler(TlsResult).
  template <class Handler>
  void AsyncHandshake(Handler handler) {
    if (!ssl_) {
      Post(std::move(handler), TlsResult::Error("cannot create a TLS connection (SSL_new)"));
      return;
    }
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_.get());
    if (r == 1) {
      Post(std::move(handler), TlsResult{});
      return;
    }
    WaitThen(SSL_get_error(ssl_.get(), r), std::move(handler),
             [this](Handler h) { AsyncHandshake(std::move(h)); });
  }

  static constexpr std::size_t kReadBufferSize = 16384;
  using ReadBuffer = std::unique_ptr<std::uint8_t[]>;

  // Reads what is available into `buffer` (kReadBufferSize bytes, allocated
  // here when bytes come and it is null); handler(TlsResult, bytes). While it
  // waits for the peer the buffer is released, so an idle connection holds
  // none: the caller must not keep pointers into it across reads.
  template <class Handler>
  void AsyncReadSome(ReadBuffer& buffer, Handler handler) {
    ReadNow(buffer, std::move(handler));
  }

  // Writes all of `data` (which must stay valid until the handler runs);
  // handler(TlsResult).
  template <class Handler>
  void AsyncWrite(const std::string& data, Handler handler) {
    WriteFrom(data, 0, std::move(handler));
  }

  // Sends close_notify (not waiting for the peer's); handler(TlsResult).
  template <class Handler>
  void AsyncShutdown(Handler handler) {
    ERR_clear_error();
    const int r = SSL_shutdown(ssl_.get());
    if (r >= 0) {
      Post(std::move(handler), TlsResult{});
      return;
    }
    WaitThen(SSL_get_error(ssl_.get(), r), std::move(handler),
             [this](Handler h) { AsyncShutdown(std::move(h)); });
  }

  // Cancels pending waits (their handlers see kAborted).
  void Cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
  void Close() {
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };

  static TlsResult Aborted(const boost::system::error_code& ec) {
    return {TlsResult::kAborted, ec.message()};
  }

  // The error of a failed SSL_* call that is not a retry, in words.
  static TlsResult Failure(int ssl_error) {
    if (ssl_error == SSL_ERROR_ZERO_RETURN) return {TlsResult::kEof, "peer closed"};
    const unsigned long e = ERR_peek_error();
    if (ssl_error == SSL_ERROR_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      return {TlsResult::kTruncated, "connection closed without close_notify"};
    }
    if (ssl_error == SSL_ERROR_SYSCALL && e == 0) {
      const int err = errno;
      ERR_clear_error();
      if (err == 0 || err == ECONNRESET || err == EPIPE) {
        return {TlsResult::kTruncated, "connection closed without close_notify"};
      }
      return TlsResult::Error(std::strerror(err));
    }
    char text[256] = "TLS error";
    if (e != 0) ERR_error_string_n(e, text, sizeof text);
    ERR_clear_error();
    return TlsResult::Error(text);
  }

  template <class Handler, class... Args>
  void Post(Handler handler, Args... args) {
    boost::asio::post(socket_.get_executor(),
                      [h = std::move(handler), args...]() mutable { h(std::move(args)...); });
  }
  template <class Handler>
  void Finish(Handler handler, TlsResult result, std::size_t n) {
    Post(std::move(handler), std::move(result), n);
  }

  // After WANT_READ / WANT_WRITE: waits for the socket, then `retry(handler)`;
  // any other error completes the handler with it.
  template <class Handler, class Retry>
  void WaitThen(int ssl_error, Handler handler, Retry retry) {
    if (ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE) {
      Post(std::move(handler), Failure(ssl_error));
      return;
    }
    const auto what =
        ssl_error == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write;
    socket_.async_wait(what, [h = std::move(handler),
                              retry = std::move(retry)](boost::system::error_code ec) mutable {
      if (ec) {
        h(Aborted(ec));
        return;
      }
      retry(std::move(h));
    });
  }

  // Waits until the socket is readable (or writable: `what`), then reads.
  template <class Handler>
  void WaitThenRead(tcp::socket::wait_type what, ReadBuffer& buffer, Handler handler) {
    socket_.async_wait(
        what, [this, &buffer, h = std::move(handler)](boost::system::error_code ec) mutable {
          if (ec) {
            Finish(std::move(h), Aborted(ec), 0);
            return;
          }
          ReadNow(buffer, std::move(h));
        });
  }

  template <class Handler>
  void ReadNow(ReadBuffer& buffer, Handler handler) {
    // Without a buffer, read onto the stack and keep a heap copy only when
    // bytes came: an attempt that finds nothing is also what makes OpenSSL
    // release its own read buffer (SSL_MODE_RELEASE_BUFFERS).
    std::uint8_t scratch[kReadBufferSize];
    std::uint8_t* into = buffer ? buffer.get() : scratch;
    std::size_t n = 0;
    ERR_clear_error();
    const int r = SSL_read_ex(ssl_.get(), into, kReadBufferSize, &n);
    if (r == 1) {
      if (!buffer) {
        // Not zeroed: n bytes are copied in, the rest is never read.
        buffer.reset(new std::uint8_t[kReadBufferSize]);
        std::memcpy(buffer.get(), scratch, n);
      }
      Finish(std::move(handler), TlsResult{}, n);
      return;
    }
    const int ssl_error = SSL_get_error(ssl_.get(), r);
    if (ssl_error == SSL_ERROR_WANT_READ) {
      buffer.reset();  // nothing to read: wait without holding 16 KB
      WaitThenRead(tcp::socket::wait_read, buffer, std::move(handler));
    } else if (ssl_error == SSL_ERROR_WANT_WRITE) {
      WaitThenRead(tcp::socket::wait_write, buffer, std::move(handler));
    } else {
      Finish(std::move(handler), Failure(ssl_error), 0);
    }
  }

  template <class Handler>
  void WriteFrom(const std::string& data, std::size_t offset, Handler handler) {
    while (offset < data.size()) {
      std::size_t n = 0;
      ERR_clear_error();
      const int r = SSL_write_ex(ssl_.get(), data.data() + offset, data.size() - offset, &n);
      if (r == 1) {
        offset += n;
        continue;
      }
      WaitThen(SSL_get_error(ssl_.get(), r), std::move(handler),
               [this, &data, offset](Handler h) { WriteFrom(data, offset, std::move(h)); });
      return;
    }
    Post(std::move(handler), TlsResult{});
  }

  tcp::socket socket_;
  std::unique_ptr<SSL, SslFree> ssl_;
};

}  // namespace custos::service
