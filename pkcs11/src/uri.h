// Which token a TokenConfig::token names: a plain label or serial, or an
// RFC 7512 PKCS#11 URI. Internal to pkcs11/ (exposed to its tests).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "custos/pkcs11/result.h"

namespace custos::pkcs11::internal {

struct TokenSelector {
  // For a plain string: matches a token whose label or serial equals it.
  std::optional<std::string> label_or_serial;
  // From a URI; each set field must match.
  std::optional<std::string> label;         // token=
  std::optional<std::string> serial;        // serial=
  std::optional<std::string> manufacturer;  // manufacturer=
  std::optional<std::string> model;         // model=
  std::optional<unsigned long> slot_id;     // slot-id=

  // Whether a token with these properties is selected.
  bool Matches(unsigned long slot, std::string_view token_label, std::string_view token_serial,
               std::string_view token_manufacturer, std::string_view token_model) const;
};

// Parses "custos-dev", "1a2b3c" or "pkcs11:token=custos%20dev;serial=1a2b".
// Percent-encoding is decoded; attributes Custos does not use (object=, id=,
// library-*, module-*) are ignored; pin-value= and pin-source= are refused,
// because PINs never travel in URIs or configuration; a repeated attribute or
// a malformed escape is refused.
Result<TokenSelector> ParseTokenSelector(std::string_view text);

}  // namespace custos::pkcs11::internal
