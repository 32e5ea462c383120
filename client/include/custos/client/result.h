// Errors as values for the client library: Error, Status and Result<T>.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace custos::client {

// What went wrong on the client's side of a call. A refusal by the server is
// not an Error: it arrives as a Response whose status is not OK.
enum class ErrorCode {
  kInvalidConfig,     // bad configuration or arguments; fix and retry
  kConnectFailed,     // TCP connection could not be made (retryable)
  kTlsFailed,         // TLS handshake or ALPN negotiation failed
  kUnavailable,       // connection lost before the response came (retryable)
  kDeadlineExceeded,  // no response within the request's deadline
  kProtocolError,     // the server sent bytes that break the protocol
  kCancelled,         // the client was shut down with the call pending
};

// Name such as "UNAVAILABLE", for messages.
const char* ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  ErrorCode code() const { return code_; }
  // One line an operator can act on, e.g. "TLS handshake with 127.0.0.1:7443
  // failed: certificate verify failed (unable to get local issuer certificate)".
  const std::string& message() const { return message_; }
  // True when the same call may succeed if made again later.
  bool retryable() const {
    return code_ == ErrorCode::kConnectFailed || code_ == ErrorCode::kUnavailable;
  }

 private:
  ErrorCode code_;
  std::string message_;
};

// Success or an Error.
class Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design
  bool ok() const { return ok_; }
  // Requires !ok().
  const Error& error() const { return error_; }

 private:
  Error error_{ErrorCode::kInvalidConfig, ""};
  bool ok_ = true;
};

// A value or an Error. Accessing the wrong alternative is a programming error.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design
  bool ok() const { return v_.index() == 0; }
  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace custos::client
