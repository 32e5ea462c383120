#include "module.h"

#include <dlfcn.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>

namespace custos::pkcs11::internal {
namespace {

// Guards the registry and every C_Initialize/C_Finalize of a module, so a
// module being finalized is never initialised again half-way.
std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}

std::map<std::string, std::weak_ptr<Module>>& Registry() {
  static auto* registry = new std::map<std::string, std::weak_ptr<Module>>();
  return *registry;
}

CK_RV InitializeModule(CK_FUNCTION_LIST* fn) {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  return fn->C_Initialize(&args);
}

}  // namespace

bool IsHealable(CK_RV rv) {
  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_COUNT:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_SLOT_ID_INVALID:
    // SoftHSM answers this when the login vanishes in the middle of a call
    // (its private-key attributes can no longer be decrypted); a real HSM
    // may too after a reset. Healing and one retry is the right response.
    case CKR_GENERAL_ERROR:
    // A handle cached before a logout or re-initialisation: look it up again.
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
      return true;
    default:
      return false;
  }
}

Error CkError(CK_RV rv, std::string_view what) {
  ErrorKind kind = ErrorKind::kInternal;
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_ATTRIBUTE_SENSITIVE:
    case CKR_TOKEN_WRITE_PROTECTED:
      kind = ErrorKind::kPermission;
      break;
    case CKR_ARGUMENTS_BAD:
    case CKR_DATA_INVALID:
    case CKR_DATA_LEN_RANGE:
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_SIZE_RANGE:
    case CKR_TEMPLATE_INCONSISTENT:
    case CKR_TEMPLATE_INCOMPLETE:
    case CKR_ATTRIBUTE_VALUE_INVALID:
    case CKR_CURVE_NOT_SUPPORTED:
    case CKR_DOMAIN_PARAMS_INVALID:
      kind = ErrorKind::kInvalidArgument;
      break;
    default:
      if (IsHealable(rv)) kind = ErrorKind::kUnavailable;
      break;
  }
  std::string message(what);
  message += ": ";
  message += CkrName(rv);
  return Error(kind, std::move(message), rv);
}

Result<std::shared_ptr<Module>> Module::Load(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) {
    return Error(ErrorKind::kNotFound, "PKCS#11 module " + path + " does not exist");
  }
  std::string key(resolved);
  ::free(resolved);

  std::lock_guard<std::mutex> lock(RegistryMutex());
  if (std::shared_ptr<Module> existing = Registry()[key].lock()) return existing;

  // RTLD_NODELETE: dlclose() in ~Module drops our reference but leaves the
  // code mapped. Modules (SoftHSM among them) register OpenSSL and atexit
  // handlers that would otherwise point into unmapped memory at exit, and
  // leak reports would lose their module name. C_Finalize still runs.
  void* handle = ::dlopen(key.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return Error(ErrorKind::kInternal,
                 "cannot load PKCS#11 module " + path + ": " + (why ? why : "dlopen failed"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* fn = nullptr;
  if (get_list == nullptr || get_list(&fn) != CKR_OK || fn == nullptr) {
    ::dlclose(handle);
    return Error(ErrorKind::kInternal,
                 path + " is not a PKCS#11 module (no usable C_GetFunctionList)");
  }
  CK_RV rv = InitializeModule(fn);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    ::dlclose(handle);
    return CkError(rv, "C_Initialize of " + path);
  }
  std::shared_ptr<Module> module(new Module(key, handle, fn, rv == CKR_OK), &Module::Destroy);
  Registry()[key] = module;
  return module;
}

void Module::Destroy(Module* module) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  delete module;
}

Module::~Module() {
  // Called with RegistryMutex held (Destroy).
  if (finalize_) fn_->C_Finalize(nullptr);
  ::dlclose(handle_);
}

Status Module::Reinitialize() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  if (finalize_) fn_->C_Finalize(nullptr);
  CK_RV rv = InitializeModule(fn_);
  if (rv == CKR_OK) {
    finalize_ = true;
    return {};
  }
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    finalize_ = false;
    return {};
  }
  return CkError(rv, "C_Initialize of " + path_);
}

Result<ScopedSession> ScopedSession::Open(CK_FUNCTION_LIST* fn, CK_SLOT_ID slot, bool read_write) {
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
  CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
  CK_RV rv = fn->C_OpenSession(slot, flags, nullptr, nullptr, &handle);
  if (rv != CKR_OK) return CkError(rv, "C_OpenSession");
  return ScopedSession(fn, handle);
}

ScopedSession::~ScopedSession() {
  if (handle_ == CK_INVALID_HANDLE) return;
  if (logged_in_) fn_->C_Logout(handle_);
  fn_->C_CloseSession(handle_);
}

CK_RV Login(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_USER_TYPE user,
            const std::uint8_t* pin, std::size_t pin_len) {
  if (!std::in_range<CK_ULONG>(pin_len)) return CKR_PIN_LEN_RANGE;
  // PKCS#11 2.40 declares the PIN as CK_UTF8CHAR_PTR (non-const); modules do
  // not write through it.
  return fn->C_Login(session, user, const_cast<CK_UTF8CHAR*>(pin), static_cast<CK_ULONG>(pin_len));
}

std::string TrimPadded(const unsigned char* field, std::size_t size) {
  std::size_t len = size;
  while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0')) --len;
  return std::string(reinterpret_cast<const char*>(field), len);
}

Result<std::vector<CK_SLOT_ID>> GetSlotList(CK_FUNCTION_LIST* fn, bool token_present) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    CK_ULONG count = 0;
    CK_RV rv = fn->C_GetSlotList(token_present ? CK_TRUE : CK_FALSE, nullptr, &count);
    if (rv != CKR_OK) return CkError(rv, "C_GetSlotList");
    std::vector<CK_SLOT_ID> slots(count);
    rv = fn->C_GetSlotList(token_present ? CK_TRUE : CK_FALSE, slots.data(), &count);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;  // a slot appeared in between
    if (rv != CKR_OK) return CkError(rv, "C_GetSlotList");
    slots.resize(count);
    return slots;
  }
  return Error(ErrorKind::kUnavailable, "C_GetSlotList: slot list keeps changing",
               CKR_BUFFER_TOO_SMALL);
}

Result<std::vector<std::uint8_t>> GetAttribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                               CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE attr{type, nullptr, 0};
  CK_RV rv = fn->C_GetAttributeValue(session, object, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID ||
      (rv == CKR_OK && attr.ulValueLen == CK_UNAVAILABLE_INFORMATION)) {
    return Error(
        ErrorKind::kNotFound,
        "object has no attribute 0x" +
            [&] {
              char buf[24];
              std::snprintf(buf, sizeof(buf), "%lx", type);
              return std::string(buf);
            }(),
        rv);
  }
  if (rv != CKR_OK) return CkError(rv, "C_GetAttributeValue");
  std::vector<std::uint8_t> value(attr.ulValueLen);
  attr.pValue = value.data();
  rv = fn->C_GetAttributeValue(session, object, &attr, 1);
  if (rv != CKR_OK) return CkError(rv, "C_GetAttributeValue");
  value.resize(attr.ulValueLen);
  return value;
}

Result<bool> GetBoolAttribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                              CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  Result<std::vector<std::uint8_t>> value = GetAttribute(fn, session, object, type);
  if (!value.ok()) return value.error();
  if (value->size() != sizeof(CK_BBOOL)) {
    return Error(ErrorKind::kInternal, "module returned a malformed CK_BBOOL attribute");
  }
  return (*value)[0] != CK_FALSE;
}

Result<CK_ULONG> GetUlongAttribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                   CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ULONG out = 0;
  CK_ATTRIBUTE attr{type, &out, sizeof(out)};
  CK_RV rv = fn->C_GetAttributeValue(session, object, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
    return Error(ErrorKind::kNotFound, "object lacks a CK_ULONG attribute", rv);
  }
  if (rv != CKR_OK) return CkError(rv, "C_GetAttributeValue");
  if (attr.ulValueLen != sizeof(out)) {
    return Error(ErrorKind::kInternal, "module returned a malformed CK_ULONG attribute");
  }
  return out;
}

Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                                  std::span<CK_ATTRIBUTE> templ) {
  Result<CK_ULONG> count = CheckedCast<CK_ULONG>(templ.size());
  if (!count.ok()) return count.error();
  CK_RV rv = fn->C_FindObjectsInit(session, templ.data(), *count);
  if (rv != CKR_OK) return CkError(rv, "C_FindObjectsInit");
  std::vector<CK_OBJECT_HANDLE> found;
  CK_OBJECT_HANDLE batch[32];
  for (;;) {
    CK_ULONG got = 0;
    rv = fn->C_FindObjects(session, batch, 32, &got);
    if (rv != CKR_OK || got == 0) break;
    found.insert(found.end(), batch, batch + std::min<CK_ULONG>(got, 32));
  }
  CK_RV final_rv = fn->C_FindObjectsFinal(session);
  if (rv != CKR_OK) return CkError(rv, "C_FindObjects");
  if (final_rv != CKR_OK) return CkError(final_rv, "C_FindObjectsFinal");
  return found;
}

Result<std::vector<std::uint8_t>> SignOnce(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                           CK_OBJECT_HANDLE key, CK_MECHANISM& mechanism,
                                           std::span<const std::uint8_t> data,
                                           std::size_t size_hint, bool* operation_left_active) {
  *operation_left_active = false;
  Result<CK_ULONG> data_len = CheckedCast<CK_ULONG>(data.size());
  if (!data_len.ok()) return data_len.error();
  Result<CK_ULONG> hint = CheckedCast<CK_ULONG>(size_hint);
  if (!hint.ok()) return hint.error();

  CK_RV rv = fn->C_SignInit(session, &mechanism, key);
  if (rv != CKR_OK) return CkError(rv, "C_SignInit");
  // PKCS#11 2.40 section 5.2: C_Sign with too small a buffer returns
  // CKR_BUFFER_TOO_SMALL and the required length, and the operation stays
  // active; any other outcome ends it.
  std::vector<std::uint8_t> out(*hint);
  CK_ULONG out_len = *hint;
  // An empty message (Ed25519) still gets a valid pointer.
  static CK_BYTE empty_input = 0;
  CK_BYTE_PTR in = data.empty() ? &empty_input : const_cast<CK_BYTE_PTR>(data.data());
  rv = fn->C_Sign(session, in, *data_len, out.data(), &out_len);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    if (out_len <= out.size() || out_len > (1u << 16)) {
      *operation_left_active = true;
      return CkError(rv, "C_Sign (module reported an unusable signature length)");
    }
    out.resize(out_len);
    rv = fn->C_Sign(session, in, *data_len, out.data(), &out_len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
      *operation_left_active = true;
      return CkError(rv, "C_Sign");
    }
  }
  if (rv != CKR_OK) return CkError(rv, "C_Sign");
  if (out_len > out.size()) return Error(ErrorKind::kInternal, "C_Sign: length out of bounds");
  out.resize(out_len);
  return out;
}

}  // namespace custos::pkcs11::internal
