// Internal entry points of the Token implementation: the raw signer for the
// OpenSSL bridge, and observation hooks for pkcs11/'s own tests. Nothing
// outside pkcs11/ includes this.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "custos/pkcs11/result.h"
#include "custos/pkcs11/token.h"
#include "raw_mechanism.h"

namespace custos::pkcs11 {

// One raw private-key operation with the key (see RawMechanism), with the
// same session pool, key-handle cache, healing and SPKI check as Token::Sign.
// `token` must come from Token::Open.
Result<std::vector<std::uint8_t>> SignRaw(Token& token, const KeyRef& key, RawMechanism mechanism,
                                          std::span<const std::uint8_t> input);

struct TokenStats {
  std::uint64_t object_searches = 0;  // C_FindObjectsInit calls made
  std::uint64_t heals = 0;            // completed heal attempts (ok or not)
  std::uint64_t generation = 0;       // bumped by every heal
  unsigned long slot_id = 0;          // the slot the token is in now
};

// A snapshot of the token's counters (for tests).
TokenStats StatsForTesting(const Token& token);

}  // namespace custos::pkcs11
