// Key names and references (brief §4). A key name is
// [a-z0-9][a-z0-9._-]{0,63}; a reference is "name" (the active version) or
// "name@N" with N a decimal version >= 1 without leading zeros.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "custos/service/result.h"

namespace custos::service {

bool IsValidKeyName(std::string_view name);

struct KeyReference {
  std::string name;
  std::optional<std::uint32_t> version;  // nullopt: the active version
};

// Refuses with a message that says what is wrong, e.g.
// "key name \"Release\" is invalid: use 1-64 of a-z 0-9 . _ - starting with a letter or digit".
Result<KeyReference> ParseKeyReference(std::string_view text);

// The CKA_LABEL of a key version's token objects: "custos:NAME@N".
std::string TokenLabel(std::string_view name, std::uint32_t version);

}  // namespace custos::service
