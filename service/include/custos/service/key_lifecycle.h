// The key lifecycle state machine (brief §4, NIST SP 800-57 states): which
// state changes an operator may make to a key version, which version a
// reference without "@N" means, and whether a version may sign. Pure logic:
// no store, no token, no clock (the caller passes `now`).
//
// Transitions (docs/operations.md, "Key lifecycle"):
//   disable           active -> deactivated
//   enable            pre-activation | deactivated -> active, only if the
//                     version has not expired and no other version is active
//   mark-compromised  pre-activation | active | deactivated -> compromised
//   destroy           any state but destroyed -> destroyed (final)
//   rotate            makes version n+1 (n = the highest version) active; the
//                     version active before, if any, becomes deactivated
// Every other request is refused with a message naming the version's state.
// Invariant kept by these rules: a key has at most one active version.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "custos/service/key_store.h"
#include "custos/service/result.h"

namespace custos::service {

enum class KeyAction { kDisable, kEnable, kMarkCompromised, kDestroy };
// "disable", "enable", "mark-compromised", "destroy".
std::string_view KeyActionName(KeyAction action);

struct VersionState {
  std::uint32_t version = 1;
  KeyState state = KeyState::kActive;
  std::int64_t expires_at = 0;  // 0: no expiry
};

// True when the version has an expiry and `now` (seconds since the epoch) is
// at or past it.
bool IsExpired(const VersionState& v, std::int64_t now);

// The active version, or 0 when none is active.
std::uint32_t ActiveVersion(std::span<const VersionState> versions);
// What "name" without "@N" refers to: the active version, else the highest
// version; 0 when the key has no versions.
std::uint32_t CurrentVersion(std::span<const VersionState> versions);

// Whether `action` may be applied to version `target` of key `name` (whose
// versions are `versions`, ascending) at time `now`. Returns the version's new
// state, or a one-line refusal for FAILED_PRECONDITION, e.g.
//   "key release@1 is already destroyed".
// `target` must be one of `versions`.
Result<KeyState> NextState(KeyAction action, std::string_view name,
                           std::span<const VersionState> versions, std::uint32_t target,
                           std::int64_t now);

// Why version `target` of key `name` may not sign at `now`, or nullopt when
// it may (active and not expired). `named` says whether the caller named the
// version ("name@N") or asked for the active one; `target` 0 means no version
// is active. E.g.
//   "key release@1 is deactivated (verify only); the active version is release@2"
//   "key release@1 expired at 2026-01-02T03:04:05Z; rotate to make a new version"
std::optional<std::string> SignRefusal(std::string_view name,
                                       std::span<const VersionState> versions, std::uint32_t target,
                                       std::int64_t now);

// "2026-01-02T03:04:05Z".
std::string FormatUtcSeconds(std::int64_t seconds);

}  // namespace custos::service
