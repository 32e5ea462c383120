// Public keys: SPKI → SSH blob agrees with ssh-keygen, authorized_keys lines
// made by ssh-keygen parse, hostile lines are refused without crashing.
#include <gtest/gtest.h>

#include <random>

#include "ssh_test_util.h"

namespace custos::service::ssh {
namespace {

using testing::NewKey;
using testing::ReadFile;
using testing::RunCommand;
using testing::SpkiOf;
using testing::SshKeygen;
using testing::TempDir;
using testing::ToBytes;
using testing::WriteFile;

std::string FirstTwoWords(const std::string& line) {
  const std::size_t first = line.find(' ');
  const std::size_t second = line.find_first_of(" \n", first + 1);
  return line.substr(0, second);
}

class SpkiTest : public ::testing::TestWithParam<std::pair<std::string, KeyType>> {};

// ssh-keygen -i -m PKCS8 converts a PEM SPKI into an OpenSSH line: ours must
// be byte-identical.
TEST_P(SpkiTest, FromSpkiMatchesSshKeygenImport) {
  const auto& [kind, type] = GetParam();
  TempDir dir;
  auto key = NewKey(kind);
  auto pub = PublicKey::FromSpki(SpkiOf(key.get()));
  ASSERT_TRUE(pub.ok()) << pub.error().ToString();
  EXPECT_EQ(pub->type(), type);

  internal::UniquePkey same(nullptr);
  BIO* bio = BIO_new_file((dir / "pub.pem").c_str(), "w");
  ASSERT_NE(bio, nullptr);
  ASSERT_EQ(PEM_write_bio_PUBKEY(bio, key.get()), 1);
  BIO_free(bio);
  auto [rc, out] = RunCommand("ssh-keygen -i -m PKCS8 -f " + dir / "pub.pem");
  if (type == KeyType::kEd25519 && rc != 0) {
    // OpenSSH 9.2 cannot import Ed25519 PKCS#8; check against the raw key.
    std::uint8_t raw[32];
    std::size_t len = sizeof(raw);
    ASSERT_EQ(EVP_PKEY_get_raw_public_key(key.get(), raw, &len), 1);
    Writer w;
    w.String(std::string_view("ssh-ed25519"));
    w.String(ByteSpan(raw, len));
    EXPECT_EQ(pub->blob(), w.bytes());
  } else {
    ASSERT_EQ(rc, 0) << out;
    EXPECT_EQ(pub->ToLine(), FirstTwoWords(out));
  }

  // Round trip through SPKI and the blob parser.
  auto spki = pub->ToSpki();
  ASSERT_TRUE(spki.ok()) << spki.error().ToString();
  EXPECT_EQ(*spki, SpkiOf(key.get()));
  auto again = PublicKey::FromBlob(pub->blob());
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(*again, *pub);
  auto from_evp = PublicKey::FromEvp(key.get());
  ASSERT_TRUE(from_evp.ok());
  EXPECT_EQ(*from_evp, *pub);
}

INSTANTIATE_TEST_SUITE_P(Types, SpkiTest,
                         ::testing::Values(std::pair{"ED25519", KeyType::kEd25519},
                                           std::pair{"P-256", KeyType::kEcdsaP256},
                                           std::pair{"P-384", KeyType::kEcdsaP384},
                                           std::pair{"RSA-3072", KeyType::kRsa}));

TEST(PublicKey, RefusesUnsupportedSpki) {
  auto p521 = NewKey("P-256");
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
  ASSERT_NE(raw, nullptr);
  internal::UniquePkey k521(raw);
  auto r = PublicKey::FromSpki(SpkiOf(k521.get()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "ssh-key-type");

  raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024));
  ASSERT_NE(raw, nullptr);
  internal::UniquePkey small(raw);
  r = PublicKey::FromSpki(SpkiOf(small.get()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "ssh-key-size");

  Bytes junk = SpkiOf(p521.get());
  junk.push_back(0);
  EXPECT_FALSE(PublicKey::FromSpki(junk).ok()) << "trailing bytes";
  EXPECT_FALSE(PublicKey::FromSpki({}).ok());
}

class AuthorizedKeyTest : public ::testing::TestWithParam<std::pair<std::string, KeyType>> {};

TEST_P(AuthorizedKeyTest, ParsesSshKeygenOutputAndFingerprintMatches) {
  const auto& [args, type] = GetParam();
  TempDir dir;
  const std::string path = SshKeygen(dir, args, "id");
  const std::string line = ReadFile(path + ".pub");
  auto parsed = ParseAuthorizedKey(line);
  ASSERT_TRUE(parsed.ok()) << parsed.error().ToString() << "\n" << line;
  EXPECT_EQ(parsed->key.type(), type);
  EXPECT_EQ(parsed->comment, "test@custos");
  EXPECT_EQ(parsed->key.ToLine("test@custos") + "\n", line);
  auto [rc, out] = RunCommand("ssh-keygen -l -E sha256 -f " + path + ".pub");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(parsed->key.Fingerprint() + " "), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Types, AuthorizedKeyTest,
                         ::testing::Values(std::pair{"ed25519", KeyType::kEd25519},
                                           std::pair{"ecdsa -b 256", KeyType::kEcdsaP256},
                                           std::pair{"ecdsa -b 384", KeyType::kEcdsaP384},
                                           std::pair{"rsa -b 3072", KeyType::kRsa}));

TEST(AuthorizedKey, AcceptsSpacingVariants) {
  auto key = PublicKey::FromSpki(SpkiOf(NewKey("ED25519").get()));
  ASSERT_TRUE(key.ok());
  const std::string b64 = Base64Encode(key->blob());
  for (const std::string& line : {"ssh-ed25519 " + b64, "  ssh-ed25519\t" + b64 + "  \r\n",
                                  "ssh-ed25519 " + b64 + " two words  "}) {
    auto parsed = ParseAuthorizedKey(line);
    ASSERT_TRUE(parsed.ok()) << line << ": " << parsed.error().ToString();
    EXPECT_EQ(parsed->key, *key);
  }
  EXPECT_EQ(ParseAuthorizedKey("ssh-ed25519 " + b64 + " two words  ")->comment, "two words");
}

TEST(AuthorizedKey, RefusesHostileLines) {
  auto ed = PublicKey::FromSpki(SpkiOf(NewKey("ED25519").get()));
  auto ec = PublicKey::FromSpki(SpkiOf(NewKey("P-256").get()));
  ASSERT_TRUE(ed.ok() && ec.ok());
  const std::string b64 = Base64Encode(ed->blob());
  Bytes bad_point = ec->blob();
  bad_point.back() ^= 1;  // off the curve
  Bytes short_ed = ed->blob();
  short_ed.pop_back();
  Bytes long_ed = ed->blob();
  long_ed.push_back(0);
  Writer huge;
  huge.String(std::string_view("ssh-ed25519"));
  huge.U32(0xfffffff0);
  Writer rsa_weak;  // even exponent, tiny modulus
  rsa_weak.String(std::string_view("ssh-rsa"));
  rsa_weak.Mpint(Bytes{0x02});
  rsa_weak.Mpint(Bytes(256, 0xff));
  Writer ec_wrong_curve;
  ec_wrong_curve.String(std::string_view("ecdsa-sha2-nistp256"));
  ec_wrong_curve.String(std::string_view("nistp384"));
  ec_wrong_curve.String(Bytes(65, 4));

  const std::pair<std::string, std::string> cases[] = {
      {"", "ssh-key-line"},
      {"# comment", "ssh-key-line"},
      {"ssh-ed25519", "ssh-key-line"},
      {"ssh-ed25519 " + b64 + "\nssh-ed25519 " + b64, "ssh-key-line"},
      {"ssh-ed25519 " + b64 + std::string(1, '\0'), "ssh-key-line"},
      {"ssh-ed25519 !!!!", "ssh-key-line"},
      {"ssh-ed25519 " + b64.substr(1), "ssh-key-line"},
      {"ecdsa-sha2-nistp256 " + b64, "ssh-key-line"},
      {"ssh-dss " + b64, "ssh-key-type"},
      {"ssh-ed25519-cert-v01@openssh.com " + b64, "ssh-key-type"},
      {"command=\"/bin/sh\" ssh-ed25519 " + b64, "ssh-key-line"},
      {"no-pty,from=\"*\" ssh-ed25519 " + b64, "ssh-key-line"},
      {"ssh-ed25519 " + b64 + " " + std::string(9000, 'x'), "ssh-key-line"},
      {"ssh-ed25519 " + Base64Encode(short_ed), "ssh-key-format"},
      {"ssh-ed25519 " + Base64Encode(long_ed), "ssh-key-format"},
      {"ssh-ed25519 " + Base64Encode(huge.bytes()), "ssh-key-format"},
      {"ecdsa-sha2-nistp256 " + Base64Encode(bad_point), "ssh-key-format"},
      {"ecdsa-sha2-nistp256 " + Base64Encode(ec_wrong_curve.bytes()), "ssh-key-format"},
      {"ssh-rsa " + Base64Encode(rsa_weak.bytes()), "ssh-key-format"},
  };
  for (const auto& [line, rule] : cases) {
    auto parsed = ParseAuthorizedKey(line);
    ASSERT_FALSE(parsed.ok()) << line.substr(0, 120);
    EXPECT_EQ(parsed.error().rule, rule) << line.substr(0, 120) << ": " << parsed.error().message;
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos);
  }
}

// Random corruptions of valid lines and blobs never crash and never yield a
// key whose blob differs from what was parsed.
TEST(AuthorizedKey, SurvivesMutations) {
  std::mt19937 rng(6);
  for (const char* kind : {"ED25519", "P-256", "P-384", "RSA-3072"}) {
    auto key = PublicKey::FromSpki(SpkiOf(NewKey(kind).get()));
    ASSERT_TRUE(key.ok());
    const Bytes blob = key->blob();
    for (int i = 0; i < 400; ++i) {
      Bytes m = blob;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        switch (rng() % 4) {
          case 0:
            m[rng() % m.size()] = static_cast<std::uint8_t>(rng());
            break;
          case 1:
            m.resize(rng() % (m.size() + 1));
            break;
          case 2:
            m.insert(m.begin() + static_cast<long>(rng() % (m.size() + 1)),
                     static_cast<std::uint8_t>(rng()));
            break;
          default:
            if (m.size() >= 4) m[rng() % 4] = 0xff;  // huge type-name length
        }
        if (m.empty()) m.push_back(0);
      }
      auto parsed = PublicKey::FromBlob(m);
      if (parsed.ok()) {
        EXPECT_EQ(parsed->blob(), m);
      }
      auto line =
          ParseAuthorizedKey(std::string(KeyTypeName(key->type())) + " " + Base64Encode(m) + " c");
      if (line.ok()) {
        EXPECT_EQ(line->key.blob(), m);
      }
    }
  }
}

TEST(Signatures, EvpSignerOutputVerifies) {
  for (const char* kind : {"ED25519", "P-256", "P-384", "RSA-3072"}) {
    auto key = NewKey(kind);
    auto pub = PublicKey::FromEvp(key.get());
    ASSERT_TRUE(pub.ok());
    auto signer = EvpSigner(key.get());
    ASSERT_TRUE(signer.ok()) << signer.error().ToString();
    const Bytes data = ToBytes("data to sign");
    auto raw = (*signer)(data);
    ASSERT_TRUE(raw.ok()) << raw.error().ToString();
    Writer blob;
    blob.String(SignatureAlgorithm(pub->type()));
    blob.String(*raw);
    auto ok = VerifySignatureBlob(*pub, data, blob.bytes());
    ASSERT_TRUE(ok.ok()) << ok.error().ToString();
    EXPECT_TRUE(*ok) << kind;
    ok = VerifySignatureBlob(*pub, ToBytes("other data"), blob.bytes());
    ASSERT_TRUE(ok.ok());
    EXPECT_FALSE(*ok) << kind;
    Writer wrong_alg;
    wrong_alg.String(std::string_view("ssh-dss"));
    wrong_alg.String(*raw);
    EXPECT_FALSE(VerifySignatureBlob(*pub, data, wrong_alg.bytes()).ok());
  }
}

}  // namespace
}  // namespace custos::service::ssh
