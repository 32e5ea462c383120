// The key lifecycle state machine (key_lifecycle.h): every transition, every
// refusal, which version an unnamed reference means, and when a version signs.
#include "custos/service/key_lifecycle.h"

#include <gtest/gtest.h>

#include <ostream>
#include <vector>

namespace custos::service {
namespace {

constexpr std::int64_t kNow = 1800000000;  // 2027-01-15T08:00:00Z

VersionState V(std::uint32_t version, KeyState state, std::int64_t expires_at = 0) {
  return VersionState{version, state, expires_at};
}

struct Case {
  const char* name;
  KeyAction action;
  KeyState from;
  // nullopt: refused, with `message` in the refusal.
  std::optional<KeyState> to;
  const char* message;
};

// The test name already says the case; print just that (not the raw bytes).
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class TransitionTest : public testing::TestWithParam<Case> {};

TEST_P(TransitionTest, FromEachState) {
  const Case& c = GetParam();
  const std::vector<VersionState> versions = {V(1, c.from)};
  auto next = NextState(c.action, "release", versions, 1, kNow);
  if (c.to) {
    ASSERT_TRUE(next.ok()) << next.error();
    EXPECT_EQ(*next, *c.to);
  } else {
    ASSERT_FALSE(next.ok()) << "allowed " << KeyActionName(c.action) << " from "
                            << KeyStateName(c.from);
    EXPECT_NE(next.error().find(c.message), std::string::npos) << next.error();
    EXPECT_NE(next.error().find("release@1"), std::string::npos) << next.error();
  }
}

using S = KeyState;
using A = KeyAction;
INSTANTIATE_TEST_SUITE_P(
    AllStates, TransitionTest,
    testing::Values(
        Case{"DisableActive", A::kDisable, S::kActive, S::kDeactivated, ""},
        Case{"DisableDeactivated", A::kDisable, S::kDeactivated, std::nullopt,
             "already deactivated"},
        Case{"DisablePreActivation", A::kDisable, S::kPreActivation, std::nullopt,
             "is pre-activation; only an active version can be disabled"},
        Case{"DisableCompromised", A::kDisable, S::kCompromised, std::nullopt, "is compromised"},
        Case{"DisableDestroyed", A::kDisable, S::kDestroyed, std::nullopt, "is destroyed"},
        Case{"EnableDeactivated", A::kEnable, S::kDeactivated, S::kActive, ""},
        Case{"EnablePreActivation", A::kEnable, S::kPreActivation, S::kActive, ""},
        Case{"EnableActive", A::kEnable, S::kActive, std::nullopt, "already active"},
        Case{"EnableCompromised", A::kEnable, S::kCompromised, std::nullopt,
             "can never be active again"},
        Case{"EnableDestroyed", A::kEnable, S::kDestroyed, std::nullopt,
             "can never be active again"},
        Case{"CompromiseActive", A::kMarkCompromised, S::kActive, S::kCompromised, ""},
        Case{"CompromiseDeactivated", A::kMarkCompromised, S::kDeactivated, S::kCompromised, ""},
        Case{"CompromisePreActivation", A::kMarkCompromised, S::kPreActivation, S::kCompromised,
             ""},
        Case{"CompromiseCompromised", A::kMarkCompromised, S::kCompromised, std::nullopt,
             "already compromised"},
        Case{"CompromiseDestroyed", A::kMarkCompromised, S::kDestroyed, std::nullopt,
             "destroyed is final"},
        Case{"DestroyActive", A::kDestroy, S::kActive, S::kDestroyed, ""},
        Case{"DestroyDeactivated", A::kDestroy, S::kDeactivated, S::kDestroyed, ""},
        Case{"DestroyPreActivation", A::kDestroy, S::kPreActivation, S::kDestroyed, ""},
        Case{"DestroyCompromised", A::kDestroy, S::kCompromised, S::kDestroyed, ""},
        Case{"DestroyDestroyed", A::kDestroy, S::kDestroyed, std::nullopt, "already destroyed"}),
    [](const testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(KeyLifecycle, EnableRefusesASecondActiveVersion) {
  const std::vector<VersionState> versions = {V(1, S::kDeactivated), V(2, S::kActive)};
  auto next = NextState(A::kEnable, "release", versions, 1, kNow);
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.error().find("release@2 is active"), std::string::npos) << next.error();
  EXPECT_NE(next.error().find("disable release@2 first"), std::string::npos) << next.error();
}

TEST(KeyLifecycle, EnableRefusesAnExpiredVersion) {
  const std::vector<VersionState> versions = {V(1, S::kDeactivated, kNow - 1)};
  auto next = NextState(A::kEnable, "release", versions, 1, kNow);
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.error().find("release@1 expired at 2027-01-15T07:59:59Z"), std::string::npos)
      << next.error();
  // Not yet expired: allowed.
  const std::vector<VersionState> later = {V(1, S::kDeactivated, kNow + 60)};
  EXPECT_TRUE(NextState(A::kEnable, "release", later, 1, kNow).ok());
}

TEST(KeyLifecycle, UnknownVersionIsRefused) {
  const std::vector<VersionState> versions = {V(1, S::kActive)};
  auto next = NextState(A::kDisable, "release", versions, 3, kNow);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error(), "key release has no version 3");
}

TEST(KeyLifecycle, ActiveAndCurrentVersion) {
  EXPECT_EQ(ActiveVersion({}), 0u);
  EXPECT_EQ(CurrentVersion({}), 0u);
  const std::vector<VersionState> rotated = {V(1, S::kDeactivated), V(2, S::kActive),
                                             V(3, S::kCompromised)};
  EXPECT_EQ(ActiveVersion(rotated), 2u);
  EXPECT_EQ(CurrentVersion(rotated), 2u);  // the active one, not the highest
  const std::vector<VersionState> none = {V(1, S::kDeactivated), V(2, S::kDestroyed)};
  EXPECT_EQ(ActiveVersion(none), 0u);
  EXPECT_EQ(CurrentVersion(none), 2u);  // the highest
}

TEST(KeyLifecycle, ExpiryIsInclusiveAndZeroMeansNever) {
  EXPECT_FALSE(IsExpired(V(1, S::kActive, 0), kNow));
  EXPECT_FALSE(IsExpired(V(1, S::kActive, kNow + 1), kNow));
  EXPECT_TRUE(IsExpired(V(1, S::kActive, kNow), kNow));
  EXPECT_TRUE(IsExpired(V(1, S::kActive, kNow - 1), kNow));
}

TEST(KeyLifecycle, SignRefusals) {
  const std::vector<VersionState> versions = {V(1, S::kDeactivated), V(2, S::kActive),
                                              V(3, S::kDestroyed), V(4, S::kCompromised)};
  EXPECT_EQ(SignRefusal("release", versions, 2, kNow), std::nullopt);
  EXPECT_EQ(SignRefusal("release", versions, 1, kNow),
            "key release@1 is deactivated (verify only); the active version is release@2");
  EXPECT_EQ(SignRefusal("release", versions, 3, kNow),
            "key release@3 is destroyed; the active version is release@2");
  EXPECT_EQ(SignRefusal("release", versions, 4, kNow),
            "key release@4 is compromised; the active version is release@2");
  EXPECT_EQ(SignRefusal("release", versions, 9, kNow), "key release has no version 9");

  const std::vector<VersionState> expired = {V(1, S::kActive, kNow - 3600)};
  EXPECT_EQ(SignRefusal("release", expired, 1, kNow),
            "key release@1 expired at 2027-01-15T07:00:00Z; rotate to make a new version");

  const std::vector<VersionState> none = {V(1, S::kDeactivated)};
  EXPECT_EQ(SignRefusal("release", none, 0, kNow),
            "key release has no active version (release@1 is deactivated): enable a version or "
            "rotate");
  EXPECT_EQ(SignRefusal("release", none, 1, kNow),
            "key release@1 is deactivated (verify only); release has no active version");
}

TEST(KeyLifecycle, Names) {
  EXPECT_EQ(KeyActionName(A::kDisable), "disable");
  EXPECT_EQ(KeyActionName(A::kEnable), "enable");
  EXPECT_EQ(KeyActionName(A::kMarkCompromised), "mark-compromised");
  EXPECT_EQ(KeyActionName(A::kDestroy), "destroy");
  EXPECT_EQ(FormatUtcSeconds(0), "1970-01-01T00:00:00Z");
}

}  // namespace
}  // namespace custos::service
