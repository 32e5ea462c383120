// Fuzz target: Policy::Parse on arbitrary text. A parsed policy is then
// exercised through Check and RolesOf, and the input's halves through
// GlobMatch, so that every entry point of policy/ sees hostile bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "custos/policy/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace custos::policy;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto result = Policy::Parse(text);
  if (const auto* error = std::get_if<ParseError>(&result)) {
    // Positions are 1-based or absent; a message always says something.
    if (error->line < 0 || error->column < 0 || error->message.empty()) __builtin_trap();
    (void)error->ToString("fuzz.txtpb");
  } else {
    const Policy& policy = std::get<Policy>(result);
    for (const auto* principal : {"spiffe://dev.custos.test/builder", "x", "*"}) {
      (void)policy.RolesOf(principal);
      for (auto op : {Operation::kSign, Operation::kCreate, Operation::kRead}) {
        const Decision d = policy.Check(
            KeyRequest{principal, op, "release-1", "code-signing", "ecdsa-p256-sha256"});
        if (d.rule.empty() || d.reason.empty()) __builtin_trap();
      }
    }
  }

  const std::size_t half = size / 2;
  (void)GlobMatch(text.substr(0, half), text.substr(half));
  return 0;
}
