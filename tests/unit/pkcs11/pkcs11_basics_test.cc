// Tests for the parts of pkcs11/ that need no token: algorithm names, CKR
// names, PKCS#11 URIs (RFC 7512), PIN files and PIN environment variables.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>

#include "custos/pkcs11/algorithms.h"
#include "custos/pkcs11/result.h"
#include "custos/pkcs11/secret.h"
#include "der.h"
#include "uri.h"

namespace custos::pkcs11 {
namespace {

TEST(AlgorithmsTest, NamesRoundTrip) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa2048, KeyType::kRsa3072,
                       KeyType::kRsa4096, KeyType::kEd25519}) {
    auto parsed = ParseKeyType(KeyTypeName(type));
    ASSERT_TRUE(parsed.has_value()) << KeyTypeName(type);
    EXPECT_EQ(*parsed, type);
    for (SignAlgorithm algorithm : AlgorithmsFor(type)) {
      EXPECT_TRUE(AlgorithmFitsKey(algorithm, type));
      auto back = ParseSignAlgorithm(SignAlgorithmName(algorithm));
      ASSERT_TRUE(back.has_value());
      EXPECT_EQ(*back, algorithm);
    }
  }
  EXPECT_FALSE(ParseKeyType("rsa-1024").has_value());
  EXPECT_FALSE(ParseSignAlgorithm("ecdsa-p256-sha1").has_value());
  EXPECT_EQ(AlgorithmsFor(KeyType::kRsa3072).size(), 6u);
  EXPECT_EQ(AlgorithmsFor(KeyType::kEcP384),
            std::vector<SignAlgorithm>{SignAlgorithm::kEcdsaP384Sha384});
  EXPECT_FALSE(AlgorithmFitsKey(SignAlgorithm::kEcdsaP256Sha256, KeyType::kEcP384));
  EXPECT_EQ(DigestLength(HashOf(SignAlgorithm::kRsaPssSha384)), 48u);
  EXPECT_EQ(DigestLength(HashOf(SignAlgorithm::kEd25519)), 0u);
  EXPECT_EQ(HashName(HashOf(SignAlgorithm::kRsaPkcs1Sha512)), "sha512");
}

TEST(ResultTest, CkrNames) {
  EXPECT_EQ(CkrName(0x0), "CKR_OK");
  EXPECT_EQ(CkrName(0xa0), "CKR_PIN_INCORRECT");
  EXPECT_EQ(CkrName(0xb0), "CKR_SESSION_CLOSED");
  EXPECT_EQ(CkrName(0x32), "CKR_DEVICE_REMOVED");
  EXPECT_EQ(CkrName(0x150), "CKR_BUFFER_TOO_SMALL");
  EXPECT_EQ(CkrName(0x200), "CKR_FUNCTION_REJECTED");
  EXPECT_EQ(CkrName(0x7777), "CKR_0x7777");
  EXPECT_EQ(CkrName(0x80000001UL), "CKR_VENDOR_DEFINED+0x1");
  Error error(ErrorKind::kUnavailable, "x", 0xb3);
  EXPECT_EQ(error.ckr_name(), "CKR_SESSION_HANDLE_INVALID");
  EXPECT_TRUE(error.retryable());
  EXPECT_EQ(Error(ErrorKind::kInternal, "y").ckr_name(), "");
}

struct UriCase {
  const char* text;
  bool ok;
  const char* label;   // nullptr: unset
  const char* serial;  // nullptr: unset
  long slot_id;        // -1: unset
  const char* plain;   // label_or_serial, nullptr: unset
};

// Test names (and ctest names) show the URI with only [A-Za-z0-9_-] kept.
void PrintTo(const UriCase& c, std::ostream* os) {
  std::string name;
  for (const char* p = c.text; *p != '\0'; ++p) {
    name += std::isalnum(static_cast<unsigned char>(*p)) || *p == '-' ? *p : '_';
  }
  *os << (name.empty() ? "empty" : name);
}

class UriTest : public ::testing::TestWithParam<UriCase> {};

TEST_P(UriTest, Parses) {
  const UriCase& c = GetParam();
  auto parsed = internal::ParseTokenSelector(c.text);
  ASSERT_EQ(parsed.ok(), c.ok) << c.text << (parsed.ok() ? "" : parsed.error().message());
  if (!c.ok) {
    EXPECT_EQ(parsed.error().kind(), ErrorKind::kInvalidArgument);
    return;
  }
  auto opt = [](const std::optional<std::string>& v) { return v ? v->c_str() : nullptr; };
  auto same = [](const char* a, const char* b) {
    return (a == nullptr && b == nullptr) || (a && b && std::string(a) == b);
  };
  EXPECT_TRUE(same(opt(parsed->label), c.label)) << c.text;
  EXPECT_TRUE(same(opt(parsed->serial), c.serial)) << c.text;
  EXPECT_TRUE(same(opt(parsed->label_or_serial), c.plain)) << c.text;
  EXPECT_EQ(parsed->slot_id ? static_cast<long>(*parsed->slot_id) : -1, c.slot_id) << c.text;
}

INSTANTIATE_TEST_SUITE_P(
    Table, UriTest,
    ::testing::Values(
        UriCase{"custos-dev", true, nullptr, nullptr, -1, "custos-dev"},
        UriCase{"1a2b3c4d", true, nullptr, nullptr, -1, "1a2b3c4d"},
        UriCase{"pkcs11:token=custos-dev", true, "custos-dev", nullptr, -1, nullptr},
        UriCase{"PKCS11:token=a", true, "a", nullptr, -1, nullptr},
        UriCase{"pkcs11:token=My%20Token;serial=1a2b", true, "My Token", "1a2b", -1, nullptr},
        UriCase{"pkcs11:token=a%3bb", true, "a;b", nullptr, -1, nullptr},
        UriCase{"pkcs11:slot-id=42", true, nullptr, nullptr, 42, nullptr},
        UriCase{"pkcs11:token=t;object=key;type=private;id=%01%02", true, "t", nullptr, -1,
                nullptr},
        UriCase{"pkcs11:token=t?module-path=/usr/lib/x.so", true, "t", nullptr, -1, nullptr},
        UriCase{"pkcs11:", true, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:token=t?pin-value=1234", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:pin-value=1234;token=t", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:token=t?pin-source=file:/x", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:token=a;token=b", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:token=%zz", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:token=%4", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:slot-id=x1", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:slot-id=99999999999999999999999", false, nullptr, nullptr, -1, nullptr},
        UriCase{"pkcs11:token", false, nullptr, nullptr, -1, nullptr},
        UriCase{"", false, nullptr, nullptr, -1, nullptr}));

TEST(UriTest, MatchesTokens) {
  auto sel = internal::ParseTokenSelector("pkcs11:token=a;serial=s1");
  ASSERT_TRUE(sel.ok());
  EXPECT_TRUE(sel->Matches(1, "a", "s1", "SoftHSM project", "SoftHSM v2"));
  EXPECT_FALSE(sel->Matches(1, "a", "s2", "", ""));
  auto plain = internal::ParseTokenSelector("s2");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->Matches(7, "a", "s2", "", ""));
  EXPECT_TRUE(plain->Matches(7, "s2", "zz", "", ""));
  EXPECT_FALSE(plain->Matches(7, "a", "s1", "", ""));
}

TEST(DerTest, EcdsaRawToDerAndDigestInfo) {
  std::vector<std::uint8_t> raw(64, 0);
  raw[31] = 1;     // r = 1
  raw[32] = 0x80;  // s has its top bit set: needs a 0x00 pad in DER
  auto der = internal::EcdsaRawToDer(raw);
  ASSERT_TRUE(der.ok());
  EXPECT_EQ((*der)[0], 0x30);
  EXPECT_EQ((*der)[2], 0x02);
  EXPECT_EQ((*der)[3], 0x01);
  EXPECT_EQ((*der)[4], 0x01);
  EXPECT_EQ((*der)[5], 0x02);
  EXPECT_EQ((*der)[6], 33);
  EXPECT_EQ((*der)[7], 0x00);
  EXPECT_FALSE(internal::EcdsaRawToDer(std::vector<std::uint8_t>(63, 1)).ok());
  EXPECT_EQ(internal::DigestInfoPrefix(HashAlgorithm::kSha256).size() + 32, 51u);
  EXPECT_EQ(internal::DigestInfoPrefix(HashAlgorithm::kSha384).size() + 48, 67u);
  EXPECT_EQ(internal::DigestInfoPrefix(HashAlgorithm::kSha512).size() + 64, 83u);
}

class PinFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-pin-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content, mode_t mode) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << content;
    ::chmod(path.c_str(), mode);
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(PinFileTest, Reads0600AndDropsTrailingNewline) {
  auto pin = ReadPinFile(Write("pin", "1234\n", 0600));
  ASSERT_TRUE(pin.ok()) << pin.error().message();
  ASSERT_EQ(pin->size(), 4u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(pin->data()), pin->size()), "1234");
  auto crlf = ReadPinFile(Write("pin2", "ab cd\r\n", 0400));
  ASSERT_TRUE(crlf.ok());
  EXPECT_EQ(crlf->size(), 5u);
}

TEST_F(PinFileTest, Refuses0644WithChmodHint) {
  std::string path = Write("pin", "1234\n", 0644);
  auto pin = ReadPinFile(path);
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.error().kind(), ErrorKind::kPermission);
  EXPECT_NE(pin.error().message().find("chmod 600 " + path), std::string::npos)
      << pin.error().message();
  EXPECT_EQ(pin.error().message().find("1234"), std::string::npos);
  EXPECT_FALSE(ReadPinFile(Write("pin3", "1234", 0620)).ok());
  EXPECT_FALSE(ReadPinFile(Write("pin4", "1234", 0601)).ok());
}

TEST_F(PinFileTest, RefusesDirectoryMissingAndEmpty) {
  ::chmod(dir_.c_str(), 0700);
  auto dir = ReadPinFile(dir_.string());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().kind(), ErrorKind::kPermission);
  EXPECT_NE(dir.error().message().find("not a regular file"), std::string::npos);
  EXPECT_EQ(ReadPinFile((dir_ / "absent").string()).error().kind(), ErrorKind::kNotFound);
  EXPECT_FALSE(ReadPinFile(Write("empty", "\n", 0600)).ok());
}

TEST(PinEnvTest, ReadsAndRefusesUnset) {
  ::setenv("CUSTOS_TEST_PIN", "9876", 1);
  auto pin = ReadPinEnv("CUSTOS_TEST_PIN");
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(pin->size(), 4u);
  ::unsetenv("CUSTOS_TEST_PIN");
  EXPECT_FALSE(ReadPinEnv("CUSTOS_TEST_PIN").ok());
  ::setenv("CUSTOS_TEST_PIN", "", 1);
  EXPECT_FALSE(ReadPinEnv("CUSTOS_TEST_PIN").ok());
}

TEST(SecretBytesTest, MoveEmptiesSourceAndCloneCopies) {
  SecretBytes a("secret");
  SecretBytes b = a.Clone();
  EXPECT_EQ(b.size(), 6u);
  SecretBytes c(std::move(a));
  EXPECT_EQ(c.size(), 6u);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  b = std::move(c);
  EXPECT_EQ(b.size(), 6u);
}

}  // namespace
}  // namespace custos::pkcs11
