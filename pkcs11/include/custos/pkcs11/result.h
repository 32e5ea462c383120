// Errors as values for the HSM layer. Nothing here is a CK_ type: the CKR
// value travels as an unsigned long with its name, so an operator can search
// for "CKR_PIN_INCORRECT" and callers above pkcs11/ never include pkcs11.h.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace custos::pkcs11 {

enum class ErrorKind {
  kInvalidArgument,  // the caller asked for something malformed
  kNotFound,         // no such token, key or object
  kPermission,       // PIN file has unsafe permissions, key lacks attributes
  kUnavailable,      // HSM fault that may clear (session lost, device removed)
  kTimeout,          // the HSM did not answer in time
  kInternal,         // anything else the HSM or module reported
};

class Error {
 public:
  Error(ErrorKind kind, std::string message, unsigned long ckr = 0)
      : kind_(kind), message_(std::move(message)), ckr_(ckr) {}

  ErrorKind kind() const { return kind_; }
  // Human-readable, includes the CKR name when there is one.
  const std::string& message() const { return message_; }
  // The raw CK_RV, 0 (CKR_OK) when the error did not come from the module.
  unsigned long ckr() const { return ckr_; }
  // "CKR_..." or empty.
  std::string ckr_name() const;
  // True for faults the session pool may heal by itself.
  bool retryable() const {
    return kind_ == ErrorKind::kUnavailable || kind_ == ErrorKind::kTimeout;
  }

 private:
  ErrorKind kind_;
  std::string message_;
  unsigned long ckr_;
};

// Maps a CK_RV value to its name ("CKR_SESSION_CLOSED"); "CKR_0x..." if unknown.
std::string CkrName(unsigned long ckr);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{ErrorKind::kInternal, ""};
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace custos::pkcs11
