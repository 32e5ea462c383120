// CSR parsing: strict DER, PEM, trailing bytes, signatures, requested
// extensions and SANs; CSR generation.
#include <gtest/gtest.h>

#include <random>

#include "ca_test_util.h"

namespace custos::service::ca {
namespace {

using namespace testing;  // NOLINT

std::string ToPem(const Bytes& der, const char* label = "CERTIFICATE REQUEST") {
  internal::UniqueBio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio(bio.get(), label, "", der.data(), static_cast<long>(der.size()));
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Bytes FromString(const std::string& s) { return Bytes(s.begin(), s.end()); }

void ExpectRule(const Result<Csr>& csr, const std::string& rule) {
  ASSERT_FALSE(csr.ok()) << "parsed, expected refusal by " << rule;
  EXPECT_EQ(csr.error().rule, rule) << csr.error().ToString();
}

class CsrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = GenerateKey("EC", "P-256");
    der_ = MakeCsr(key_.get(), {{{"CN", "api.dev.custos.test"}},
                                "DNS:api.dev.custos.test,IP:127.0.0.1,URI:spiffe://dev.custos.test/"
                                "api,email:ops@custos.test",
                                "serverAuth"});
  }
  UniquePkey key_;
  Bytes der_;
};

TEST_F(CsrTest, ParsesDerAndPemAlike) {
  Result<Csr> der = Csr::Parse(der_);
  ASSERT_TRUE(der.ok()) << der.error().ToString();
  EXPECT_EQ(der->der(), der_);
  EXPECT_EQ(der->spki_der(), Spki(key_.get()));
  EXPECT_EQ(der->subject(), (std::vector<NameAttribute>{{"CN", "api.dev.custos.test"}}));
  const std::vector<San> want = {{San::Type::kDns, "api.dev.custos.test"},
                                 {San::Type::kIp, "127.0.0.1"},
                                 {San::Type::kUri, "spiffe://dev.custos.test/api"},
                                 {San::Type::kEmail, "ops@custos.test"}};
  EXPECT_EQ(der->sans(), want);
  ASSERT_EQ(der->extensions().size(), 2u);
  EXPECT_EQ(der->extensions()[0].oid, "2.5.29.17");
  EXPECT_EQ(der->extensions()[1].oid, "2.5.29.37");

  for (const std::string& pem :
       {ToPem(der_), "\n  " + ToPem(der_) + "\n\n", ToPem(der_, "NEW CERTIFICATE REQUEST")}) {
    Result<Csr> parsed = Csr::Parse(FromString(pem));
    ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
    EXPECT_EQ(parsed->der(), der_);
    EXPECT_EQ(parsed->sans(), want);
  }
}

TEST_F(CsrTest, TrailingBytesAreRefused) {
  Bytes trailing = der_;
  trailing.push_back(0x00);
  ExpectRule(Csr::Parse(trailing), "csr-trailing-bytes");
  ExpectRule(Csr::Parse(FromString(ToPem(der_) + "junk")), "csr-trailing-bytes");
  ExpectRule(Csr::Parse(FromString(ToPem(der_) + ToPem(der_))), "csr-trailing-bytes");
}

TEST_F(CsrTest, MalformedDerIsRefused) {
  ExpectRule(Csr::Parse(Bytes{}), "csr-der");
  ExpectRule(Csr::Parse(Bytes{0x30, 0x03, 0x02, 0x01, 0x00}), "csr-der");
  Bytes truncated(der_.begin(), der_.end() - 10);
  ExpectRule(Csr::Parse(truncated), "csr-der");
  Bytes garbage(300, 0xA5);
  ExpectRule(Csr::Parse(garbage), "csr-der");
  ExpectRule(Csr::Parse(Bytes(70 * 1024, 0x30)), "csr-der");
  // A non-minimal length (BER, not DER) on the outer SEQUENCE.
  ASSERT_EQ(der_[1], 0x82);
  Bytes ber(der_.size() + 1);
  ber[0] = 0x30;
  ber[1] = 0x83;
  ber[2] = 0x00;
  std::copy(der_.begin() + 2, der_.end(), ber.begin() + 3);
  ExpectRule(Csr::Parse(ber), "csr-der");
  ExpectRule(Csr::Parse(FromString(ToPem(der_, "CERTIFICATE"))), "csr-pem");
  ExpectRule(Csr::Parse(FromString("-----BEGIN CERTIFICATE REQUEST-----\n%%%\n")), "csr-pem");
}

TEST_F(CsrTest, BadSignatureIsRefused) {
  // A byte of the signed subject, and the last byte of the signature.
  const std::string cn = "api.dev.custos.test";
  auto at = std::search(der_.begin(), der_.end(), cn.begin(), cn.end());
  ASSERT_NE(at, der_.end());
  Bytes tampered = der_;
  tampered[static_cast<size_t>(at - der_.begin())] ^= 0x01;
  ExpectRule(Csr::Parse(tampered), "csr-signature");
  Bytes bad_sig = der_;
  bad_sig.back() ^= 0x01;
  ExpectRule(Csr::Parse(bad_sig), "csr-signature");
}

TEST_F(CsrTest, UnsupportedSanTypesAndDuplicatesAreRefused) {
  ExpectRule(Csr::Parse(MakeCsr(key_.get(), {{}, "otherName:1.2.3.4;UTF8:x"})), "csr-san");
  // The same extension requested twice (here: two subjectAltNames).
  ExpectRule(
      Csr::Parse(MakeCsr(key_.get(), {{},
                                      "DNS:a.dev.custos.test",
                                      "",
                                      "",
                                      {{"2.5.29.17", "DER:300f820d622e637573746f732e74657374"}}})),
      "csr-duplicate-extension");
}

TEST_F(CsrTest, MultiValuedRdnIsRefused) {
  UniqueReq req(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("a"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("b"),
                             -1, -1, -1);
  X509_REQ_set_pubkey(req.get(), key_.get());
  ASSERT_GT(X509_REQ_sign(req.get(), key_.get(), EVP_sha256()), 0);
  ExpectRule(Csr::Parse(internal::ToDer(req.get(), i2d_X509_REQ)), "subject-multivalued-rdn");
}

TEST_F(CsrTest, OffCurvePublicKeyIsRefused) {
  // Change the last byte of the point's y coordinate: no longer on P-256.
  Bytes spki = Spki(key_.get());
  auto at = std::search(der_.begin(), der_.end(), spki.begin(), spki.end());
  ASSERT_NE(at, der_.end());
  Bytes bad = der_;
  bad[static_cast<size_t>(at - der_.begin()) + spki.size() - 1] ^= 0x01;
  ExpectRule(Csr::Parse(bad), "csr-public-key");
}

// Random corruptions of several CSRs: Parse refuses or accepts, never
// crashes (run under ASan/UBSan in the sanitizer build).
// Under AddressSanitizer each parse costs ~20x more (the CI sanitizer stage spent
// 50 s here); that build tries a third of the mutations, and csr_fuzz explores
// far more than either.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kMutationsPerSeed = 1000;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr int kMutationsPerSeed = 1000;
#else
constexpr int kMutationsPerSeed = 3000;
#endif
#else
constexpr int kMutationsPerSeed = 3000;
#endif

TEST_F(CsrTest, MutatedCsrsNeverCrash) {
  UniquePkey rsa = GenerateKey("RSA", "2048");
  const std::vector<Bytes> seeds = {
      der_, MakeCsr(rsa.get(), {{{"CN", "a"}, {"O", "b"}}, "DNS:a.test,IP:::1", "", "CA:TRUE"}),
      MakeCsr(key_.get(), {{}, "otherName:1.2.3.4;UTF8:x,email:a@b.test"})};
  std::mt19937 rng(5);
  for (const Bytes& seed : seeds) {
    for (int i = 0; i < kMutationsPerSeed; ++i) {
      Bytes m = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng() % m.size();
        switch (rng() % 3) {
          case 0:
            m[at] = static_cast<std::uint8_t>(rng());
            break;
          case 1:
            m[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
            break;
          default:
            m.resize(std::max<size_t>(at, 1));
        }
      }
      Result<Csr> csr = Csr::Parse(m);
      if (!csr.ok()) {
        EXPECT_FALSE(csr.error().rule.empty());
      }
    }
  }
}

TEST(GenerateCsr, RoundTripsForEcRsaAndCaRequests) {
  for (auto [type, param] :
       {std::pair{"EC", "P-256"}, std::pair{"EC", "P-384"}, std::pair{"RSA", "2048"}}) {
    SCOPED_TRACE(type);
    UniquePkey key = GenerateKey(type, param);
    Result<Bytes> der = GenerateCsr("CN=Custos Intermediate,O=Custos Test,C=US", key.get(), true);
    ASSERT_TRUE(der.ok()) << der.error().ToString();
    Result<Csr> csr = Csr::Parse(*der);
    ASSERT_TRUE(csr.ok()) << csr.error().ToString();
    EXPECT_EQ(csr->subject(),
              (std::vector<NameAttribute>{
                  {"C", "US"}, {"O", "Custos Test"}, {"CN", "Custos Intermediate"}}));
    ASSERT_EQ(csr->extensions().size(), 2u);
    EXPECT_EQ(csr->extensions()[0].oid, "2.5.29.19");
    EXPECT_TRUE(csr->extensions()[0].critical);
    // openssl req agrees.
    TempDir dir;
    WriteFile(dir / "csr.der", std::string(der->begin(), der->end()));
    auto [rc, out] =
        RunCommand("openssl req -inform DER -in " + (dir / "csr.der") + " -verify -noout -text");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("CA:TRUE"), std::string::npos) << out;
  }
  UniquePkey key = GenerateKey("EC", "P-256");
  Result<Bytes> leafish = GenerateCsr("CN=x", key.get(), false);
  ASSERT_TRUE(leafish.ok());
  EXPECT_TRUE(Csr::Parse(*leafish)->extensions().empty());
  Result<Bytes> bad = GenerateCsr("CN=x,Q=y", key.get(), false);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().rule, "subject-dn");
}

}  // namespace
}  // namespace custos::service::ca
