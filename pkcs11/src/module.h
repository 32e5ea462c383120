// The C boundary of the HSM layer: a loaded PKCS#11 module and the helpers
// that every call into it goes through (CK_ULONG conversions, two-call size
// queries, CKR_BUFFER_TOO_SMALL, CKR -> Error). Internal to pkcs11/.
#pragma once

#include <p11-kit/pkcs11.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "custos/pkcs11/result.h"

namespace custos::pkcs11::internal {

// size_t <-> CK_ULONG and friends, refusing values that do not fit.
template <typename To, typename From>
Result<To> CheckedCast(From value) {
  if (!std::in_range<To>(value)) {
    return Error(ErrorKind::kInvalidArgument,
                 "value " + std::to_string(value) + " does not fit the PKCS#11 type");
  }
  return static_cast<To>(value);
}

// Faults after which sessions, the login or object handles can no longer be
// trusted; the pool heals (re-find slot, log in, re-find keys) on these.
bool IsHealable(CK_RV rv);

// Maps a CKR to an Error: "<what>: CKR_NAME". The kind follows the CKR:
// healable faults are kUnavailable, PIN problems kPermission, bad inputs
// kInvalidArgument, everything else kInternal.
Error CkError(CK_RV rv, std::string_view what);

// A dlopen()ed, C_Initialize()d module. Shared by every Token and InitToken
// call on the same path in this process, because PKCS#11 allows one
// C_Initialize per process and module; the last owner finalizes it.
class Module final {
 public:
  static Result<std::shared_ptr<Module>> Load(const std::string& path);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The function list; valid for the lifetime of this object.
  CK_FUNCTION_LIST* fn() const { return fn_; }
  const std::string& path() const { return path_; }

  // C_Finalize + C_Initialize, to make the module rescan its slots (SoftHSM
  // sees a token that came back only after this). The caller guarantees that
  // no other thread is inside the module and that it is the module's only
  // user (see SoleUser).
  Status Reinitialize();
  // True if no other Token or InitToken call shares this module.
  static bool SoleUser(const std::shared_ptr<Module>& module) { return module.use_count() == 1; }

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* fn, bool finalize)
      : path_(std::move(path)), handle_(handle), fn_(fn), finalize_(finalize) {}
  ~Module();
  static void Destroy(Module* module);

  std::string path_;
  void* handle_;
  CK_FUNCTION_LIST* fn_;
  bool finalize_;  // false if someone else in the process initialised it
};

// A session closed on scope exit (logged out first if LoggedIn() was called).
class ScopedSession final {
 public:
  static Result<ScopedSession> Open(CK_FUNCTION_LIST* fn, CK_SLOT_ID slot, bool read_write);
  ScopedSession(ScopedSession&& other) noexcept
      : fn_(other.fn_),
        handle_(std::exchange(other.handle_, CK_INVALID_HANDLE)),
        logged_in_(other.logged_in_) {}
  ScopedSession& operator=(ScopedSession&&) = delete;
  ScopedSession(const ScopedSession&) = delete;
  ~ScopedSession();

  CK_SESSION_HANDLE handle() const { return handle_; }
  void LoggedIn() { logged_in_ = true; }

 private:
  ScopedSession(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE handle) : fn_(fn), handle_(handle) {}
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE handle_;
  bool logged_in_ = false;
};

// C_Login with a PIN held in SecretBytes-like storage.
CK_RV Login(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_USER_TYPE user,
            const std::uint8_t* pin, std::size_t pin_len);

// A fixed-width, blank-padded PKCS#11 text field (CK_TOKEN_INFO::label...)
// without its padding.
std::string TrimPadded(const unsigned char* field, std::size_t size);

// Slot list (two-call query, retried if the count changes in between).
Result<std::vector<CK_SLOT_ID>> GetSlotList(CK_FUNCTION_LIST* fn, bool token_present);

// Reads one attribute's value (two-call size query). kNotFound if the object
// has no such attribute; CKR_ATTRIBUTE_SENSITIVE is reported as an error.
Result<std::vector<std::uint8_t>> GetAttribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                               CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);
Result<bool> GetBoolAttribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                              CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);
Result<CK_ULONG> GetUlongAttribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                   CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);

// C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal over the template.
Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                                  std::span<CK_ATTRIBUTE> templ);

// C_SignInit + C_Sign. `size_hint` is the expected signature length; a
// CKR_BUFFER_TOO_SMALL answer is handled here (once) by growing the buffer.
// On failure *operation_left_active tells whether the session still has an
// active signing operation (then the caller must not reuse the session).
Result<std::vector<std::uint8_t>> SignOnce(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                           CK_OBJECT_HANDLE key, CK_MECHANISM& mechanism,
                                           std::span<const std::uint8_t> data,
                                           std::size_t size_hint, bool* operation_left_active);

}  // namespace custos::pkcs11::internal
