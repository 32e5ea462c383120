#include "custos/service/key_name.h"

#include <gtest/gtest.h>

#include <cctype>
#include <optional>
#include <ostream>
#include <string>

namespace custos::service {
namespace {

struct NameCase {
  std::string text;
  bool valid;
};

// Readable, shell-safe names for ctest (gtest_discover_tests shows the param).
std::string Printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text)
    out += std::isalnum(c) || c == '@' || c == '-' || c == '.' ? static_cast<char>(c) : '_';
  return out.size() > 24 ? out.substr(0, 24) + "..." : out;
}
void PrintTo(const NameCase& c, std::ostream* os) { *os << "\"" << Printable(c.text) << "\""; }

class KeyNameTest : public testing::TestWithParam<NameCase> {};

TEST_P(KeyNameTest, Validates) {
  EXPECT_EQ(IsValidKeyName(GetParam().text), GetParam().valid) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(KeyName, KeyNameTest,
                         testing::Values(NameCase{"release", true}, NameCase{"a", true},
                                         NameCase{"0", true}, NameCase{"release-2024.v1_x", true},
                                         NameCase{std::string(64, 'k'), true},
                                         NameCase{std::string(65, 'k'), false}, NameCase{"", false},
                                         NameCase{"Release", false}, NameCase{"-release", false},
                                         NameCase{".release", false}, NameCase{"_release", false},
                                         NameCase{"rel ease", false}, NameCase{"rel/ease", false},
                                         NameCase{"release@1", false}, NameCase{"rélease", false},
                                         NameCase{std::string("rel\0ease", 8), false}));

struct RefCase {
  std::string text;
  bool ok;
  std::string name;
  std::optional<std::uint32_t> version;
};

void PrintTo(const RefCase& c, std::ostream* os) { *os << "\"" << Printable(c.text) << "\""; }

class KeyReferenceTest : public testing::TestWithParam<RefCase> {};

TEST_P(KeyReferenceTest, Parses) {
  const RefCase& c = GetParam();
  auto r = ParseKeyReference(c.text);
  ASSERT_EQ(r.ok(), c.ok) << c.text;
  if (!c.ok) {
    EXPECT_FALSE(r.error().empty());
    return;
  }
  EXPECT_EQ(r->name, c.name);
  EXPECT_EQ(r->version, c.version);
}

INSTANTIATE_TEST_SUITE_P(
    KeyReference, KeyReferenceTest,
    testing::Values(RefCase{"release", true, "release", std::nullopt},
                    RefCase{"release@1", true, "release", 1u},
                    RefCase{"release@42", true, "release", 42u},
                    RefCase{"release@4294967295", true, "release", 4294967295u},
                    RefCase{"release@4294967296", false, "", std::nullopt},
                    RefCase{"release@0", false, "", std::nullopt},
                    RefCase{"release@01", false, "", std::nullopt},
                    RefCase{"release@", false, "", std::nullopt},
                    RefCase{"release@-1", false, "", std::nullopt},
                    RefCase{"release@1@2", false, "", std::nullopt},
                    RefCase{"release@+1", false, "", std::nullopt},
                    RefCase{"@1", false, "", std::nullopt}, RefCase{"", false, "", std::nullopt},
                    RefCase{"Release@1", false, "", std::nullopt}));

TEST(KeyNameMessageTest, SaysWhatIsWrong) {
  auto r = ParseKeyReference("Release");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(),
            "key name \"Release\" is invalid: use 1-64 of a-z 0-9 . _ - starting with a letter "
            "or digit");
  auto v = ParseKeyReference("release@x");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error(), "key version in \"release@x\" is invalid: use name@N with N >= 1");
}

TEST(TokenLabelTest, Format) { EXPECT_EQ(TokenLabel("release", 3), "custos:release@3"); }

}  // namespace
}  // namespace custos::service
