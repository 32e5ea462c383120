// InitToken: C_InitToken + C_InitPIN on the first free slot (development and
// tests; production tokens are initialised with the vendor's tools).
#include <cstring>
#include <utility>

#include "custos/pkcs11/token.h"
#include "module.h"

namespace custos::pkcs11 {

Status InitToken(const std::string& module_path, std::string_view label, const SecretBytes& so_pin,
                 const SecretBytes& user_pin) {
  // CK_TOKEN_INFO::label is 32 bytes, blank padded (PKCS#11 2.40 3.2).
  if (label.empty() || label.size() > 32) {
    return Error(ErrorKind::kInvalidArgument, "token label must be 1 to 32 bytes");
  }
  if (so_pin.empty() || user_pin.empty()) {
    return Error(ErrorKind::kInvalidArgument,
                 "token initialisation needs an SO PIN and a user PIN");
  }
  if (!std::in_range<CK_ULONG>(so_pin.size()) || !std::in_range<CK_ULONG>(user_pin.size())) {
    return Error(ErrorKind::kInvalidArgument, "PIN is too long");
  }
  Result<std::shared_ptr<internal::Module>> module = internal::Module::Load(module_path);
  if (!module.ok()) return module.error();
  CK_FUNCTION_LIST* fn = (*module)->fn();

  Result<std::vector<CK_SLOT_ID>> slots = internal::GetSlotList(fn, true);
  if (!slots.ok()) return slots.error();
  std::optional<CK_SLOT_ID> free_slot;
  for (CK_SLOT_ID slot : *slots) {
    CK_TOKEN_INFO info{};
    if (fn->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      free_slot = slot;
      break;
    }
  }
  if (!free_slot) {
    return Error(ErrorKind::kNotFound, "no slot with an uninitialised token in " + module_path +
                                           " (SoftHSM offers a new one after the module is "
                                           "reloaded)");
  }
  unsigned char padded[32];
  std::memset(padded, ' ', sizeof(padded));
  std::memcpy(padded, label.data(), label.size());
  CK_RV rv = fn->C_InitToken(*free_slot, const_cast<CK_UTF8CHAR*>(so_pin.data()),
                             static_cast<CK_ULONG>(so_pin.size()), padded);
  if (rv != CKR_OK) return internal::CkError(rv, "C_InitToken");

  Result<internal::ScopedSession> session =
      internal::ScopedSession::Open(fn, *free_slot, /*read_write=*/true);
  if (!session.ok()) return session.error();
  rv = internal::Login(fn, session->handle(), CKU_SO, so_pin.data(), so_pin.size());
  if (rv != CKR_OK) return internal::CkError(rv, "C_Login as SO");
  session->LoggedIn();
  rv = fn->C_InitPIN(session->handle(), const_cast<CK_UTF8CHAR*>(user_pin.data()),
                     static_cast<CK_ULONG>(user_pin.size()));
  if (rv != CKR_OK) return internal::CkError(rv, "C_InitPIN");
  return {};
}

}  // namespace custos::pkcs11
