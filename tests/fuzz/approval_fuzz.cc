// Fuzz target: the two strict quorum parsers on arbitrary bytes —
// ParseStatement (approval statements officers sign) and ParsePendingRequest
// (the request encoding whose SHA-256 they sign). Each accepts exactly the
// canonical encoding, so whatever parses must re-encode to the same bytes;
// anything else is a finding (abort).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "custos/policy/approval.h"
#include "custos/policy/pending_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace custos::policy;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  auto statement = ParseStatement(bytes);
  if (const auto* s = std::get_if<ApprovalStatement>(&statement)) {
    const std::optional<std::string> again = CanonicalStatement(*s);
    if (!again || *again != bytes) __builtin_trap();
    if (!IsValidApprovalId(s->request_id) || !IsValidApprovalId(s->officer_id)) __builtin_trap();
  } else {
    const ApprovalError& e = std::get<ApprovalError>(statement);
    if (e.code != ApprovalErrorCode::kMalformedStatement || e.message.empty()) __builtin_trap();
  }

  auto request = ParsePendingRequest(bytes);
  if (const auto* r = std::get_if<PendingRequestText>(&request)) {
    const std::optional<std::string> again = EncodePendingRequest(*r);
    if (!again || *again != bytes) __builtin_trap();
    for (const auto& [name, value] : r->fields) {
      if (r->Get(name) == std::nullopt || r->GetAll(name).empty()) __builtin_trap();
    }
    (void)RequestDigest(bytes);
  } else {
    const std::string& error = std::get<std::string>(request);
    if (error.empty() || error.find('\n') != std::string::npos) __builtin_trap();
  }
  return 0;
}
