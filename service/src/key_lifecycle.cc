#include "custos/service/key_lifecycle.h"

#include <algorithm>
#include <ctime>

namespace custos::service {

namespace {

std::string At(std::string_view name, std::uint32_t version) {
  return std::string(name) + "@" + std::to_string(version);
}

const VersionState* FindVersion(std::span<const VersionState> versions, std::uint32_t version) {
  for (const auto& v : versions) {
    if (v.version == version) return &v;
  }
  return nullptr;
}

}  // namespace

std::string_view KeyActionName(KeyAction action) {
  switch (action) {
    case KeyAction::kDisable:
      return "disable";
    case KeyAction::kEnable:
      return "enable";
    case KeyAction::kMarkCompromised:
      return "mark-compromised";
    case KeyAction::kDestroy:
      return "destroy";
  }
  return "destroy";
}

bool IsExpired(const VersionState& v, std::int64_t now) {
  return v.expires_at != 0 && now >= v.expires_at;
}

std::uint32_t ActiveVersion(std::span<const VersionState> versions) {
  for (const auto& v : versions) {
    if (v.state == KeyState::kActive) return v.version;
  }
  return 0;
}

std::uint32_t CurrentVersion(std::span<const VersionState> versions) {
  if (const std::uint32_t active = ActiveVersion(versions); active != 0) return active;
  std::uint32_t highest = 0;
  for (const auto& v : versions) highest = std::max(highest, v.version);
  return highest;
}

std::string FormatUtcSeconds(std::int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(seconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<KeyState> NextState(KeyAction action, std::string_view name,
                           std::span<const VersionState> versions, std::uint32_t target,
                           std::int64_t now) {
  const VersionState* v = FindVersion(versions, target);
  if (v == nullptr)
    return Error{"key " + std::string(name) + " has no version " + std::to_string(target)};
  const std::string key = At(name, target);
  const std::string state(KeyStateName(v->state));
  switch (action) {
    case KeyAction::kDisable:
      if (v->state == KeyState::kActive) return KeyState::kDeactivated;
      if (v->state == KeyState::kDeactivated)
        return Error{"key " + key + " is already deactivated"};
      return Error{"key " + key + " is " + state + "; only an active version can be disabled"};
    case KeyAction::kEnable: {
      if (v->state == KeyState::kActive) return Error{"key " + key + " is already active"};
      if (v->state == KeyState::kCompromised || v->state == KeyState::kDestroyed) {
        return Error{"key " + key + " is " + state +
                     " and can never be active again; rotate to make a new version"};
      }
      if (IsExpired(*v, now)) {
        return Error{"key " + key + " expired at " + FormatUtcSeconds(v->expires_at) +
                     "; rotate to make a new version"};
      }
      if (const std::uint32_t active = ActiveVersion(versions); active != 0) {
        return Error{"key " + At(name, active) + " is active and a key has one active version: " +
                     "disable " + At(name, active) + " first"};
      }
      return KeyState::kActive;
    }
    case KeyAction::kMarkCompromised:
      if (v->state == KeyState::kCompromised)
        return Error{"key " + key + " is already compromised"};
      if (v->state == KeyState::kDestroyed) {
        return Error{"key " + key + " is destroyed; destroyed is final"};
      }
      return KeyState::kCompromised;
    case KeyAction::kDestroy:
      if (v->state == KeyState::kDestroyed) return Error{"key " + key + " is already destroyed"};
      return KeyState::kDestroyed;
  }
  return Error{"unknown key action"};
}

std::optional<std::string> SignRefusal(std::string_view name,
                                       std::span<const VersionState> versions, std::uint32_t target,
                                       std::int64_t now) {
  const std::uint32_t active = ActiveVersion(versions);
  if (target == 0) {
    const std::uint32_t current = CurrentVersion(versions);
    std::string msg = "key " + std::string(name) + " has no active version";
    if (const VersionState* v = FindVersion(versions, current)) {
      msg += " (" + At(name, current) + " is " + std::string(KeyStateName(v->state)) + ")";
    }
    return msg + ": enable a version or rotate";
  }
  const VersionState* v = FindVersion(versions, target);
  if (v == nullptr) return "key " + std::string(name) + " has no version " + std::to_string(target);
  const std::string key = At(name, target);
  if (v->state != KeyState::kActive) {
    std::string msg = "key " + key + " is " + std::string(KeyStateName(v->state));
    if (v->state == KeyState::kDeactivated) msg += " (verify only)";
    msg += active != 0 ? "; the active version is " + At(name, active)
                       : "; " + std::string(name) + " has no active version";
    return msg;
  }
  if (IsExpired(*v, now)) {
    return "key " + key + " expired at " + FormatUtcSeconds(v->expires_at) +
           "; rotate to make a new version";
  }
  return std::nullopt;
}

}  // namespace custos::service
