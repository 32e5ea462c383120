// Subject key checks with real keys, including weak RSA keys built here: a
// Fermat-factorable modulus (p and q adjacent primes) and a modulus with the
// ROCA structure (primes of the form k*M + (65537^a mod M)).
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include "ca_test_util.h"

namespace custos::service::ca {
namespace {

using namespace testing;  // NOLINT

Profile AnyKeyProfile() {
  Profile p = TlsServerProfile();
  p.key_algorithms = {KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384, KeyAlgorithm::kRsa,
                      KeyAlgorithm::kEd25519};
  return p;
}

void ExpectRule(const Status& s, const std::string& rule) {
  ASSERT_FALSE(s.ok()) << "accepted, expected refusal by " << rule;
  EXPECT_EQ(s.error().rule, rule) << s.error().ToString();
}

// An RSA public key (n, e) as an EVP_PKEY.
UniquePkey RsaPublic(const BIGNUM* n, unsigned long e = 65537) {
  UniqueBn e_bn(BN_new());
  BN_set_word(e_bn.get(), e);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e_bn.get());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    key = nullptr;
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return UniquePkey(key);
}

Bytes ModulusOf(EVP_PKEY* key) {
  BIGNUM* n = nullptr;
  EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n);
  Bytes out(static_cast<size_t>(BN_num_bytes(n)));
  BN_bn2bin(n, out.data());
  BN_free(n);
  return out;
}

// p random 1024-bit prime, q the next prime after p + 2^20: |p - q| is tiny
// next to sqrt(n), so Fermat's method finds them at its first step.
std::pair<UniqueBn, UniqueBn> ClosePrimes() {
  UniqueBn p(BN_new());
  UniqueBn q(BN_new());
  internal::UniqueBnCtx ctx(BN_CTX_new());
  EXPECT_EQ(BN_generate_prime_ex(p.get(), 1024, 0, nullptr, nullptr, nullptr), 1);
  BN_copy(q.get(), p.get());
  BN_add_word(q.get(), 1u << 20);
  BN_set_bit(q.get(), 0);
  while (BN_check_prime(q.get(), ctx.get(), nullptr) != 1) BN_add_word(q.get(), 2);
  return {std::move(p), std::move(q)};
}

// A ROCA-structured prime of `bits` bits: k*M + (65537^a mod M) with M the
// product of the primes up to 167, as the vulnerable library built them.
UniqueBn RocaPrime(int bits) {
  internal::UniqueBnCtx ctx(BN_CTX_new());
  UniqueBn m(BN_new());
  BN_one(m.get());
  for (unsigned r = 2; r <= 167; ++r) {
    bool prime = true;
    for (unsigned d = 2; d * d <= r; ++d) prime = prime && r % d != 0;
    if (prime) BN_mul_word(m.get(), r);
  }
  UniqueBn g(BN_new()), a(BN_new()), base(BN_new()), k(BN_new()), p(BN_new());
  UniqueBn lo(BN_new()), hi(BN_new()), span(BN_new());
  BN_set_word(base.get(), 65537);
  // k in [3*2^(bits-2) / M, 2^bits / M): p has `bits` bits, the top two set.
  BN_set_bit(lo.get(), bits - 2);
  BN_mul_word(lo.get(), 3);
  BN_div(lo.get(), nullptr, lo.get(), m.get(), ctx.get());
  BN_add_word(lo.get(), 1);
  BN_set_bit(hi.get(), bits);
  BN_div(hi.get(), nullptr, hi.get(), m.get(), ctx.get());
  BN_sub(span.get(), hi.get(), lo.get());
  BN_sub_word(span.get(), 100000);
  while (true) {
    BN_rand(a.get(), 64, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
    BN_mod_exp(g.get(), base.get(), a.get(), m.get(), ctx.get());
    BN_rand_range(k.get(), span.get());
    BN_add(k.get(), k.get(), lo.get());
    for (int i = 0; i < 5000; ++i) {
      BN_mul(p.get(), k.get(), m.get(), ctx.get());
      BN_add(p.get(), p.get(), g.get());
      if (BN_check_prime(p.get(), ctx.get(), nullptr) == 1) return p;
      BN_add_word(k.get(), 1);
    }
  }
}

TEST(KeyCheck, GoodKeysPass) {
  for (auto [type, param] :
       {std::pair{"EC", "P-256"}, std::pair{"EC", "P-384"}, std::pair{"RSA", "2048"},
        std::pair{"RSA", "3072"}, std::pair{"ED25519", ""}}) {
    SCOPED_TRACE(type + std::string(" ") + param);
    UniquePkey key = GenerateKey(type, param);
    Status s = CheckSubjectKey(Spki(key.get()), AnyKeyProfile(), {});
    EXPECT_TRUE(s.ok()) << s.error().ToString();
    if (std::string(type) == "RSA") {
      EXPECT_FALSE(HasRocaFingerprint(ModulusOf(key.get())));
      EXPECT_FALSE(FermatFactors(ModulusOf(key.get()), 100));
    }
  }
}

TEST(KeyCheck, AlgorithmAllowList) {
  Profile p256 = AnyKeyProfile();
  p256.key_algorithms = {KeyAlgorithm::kEcP256};
  UniquePkey p384 = GenerateKey("EC", "P-384");
  ExpectRule(CheckSubjectKey(Spki(p384.get()), p256, {}), "key-algorithm");
  UniquePkey k1 = GenerateKey("EC", "secp256k1");
  ExpectRule(CheckSubjectKey(Spki(k1.get()), AnyKeyProfile(), {}), "key-algorithm");
  UniquePkey ed448 = GenerateKey("ED448");
  ExpectRule(CheckSubjectKey(Spki(ed448.get()), AnyKeyProfile(), {}), "key-algorithm");
  UniquePkey rsa = GenerateKey("RSA", "2048");
  ExpectRule(CheckSubjectKey(Spki(rsa.get()), p256, {}), "key-algorithm");
  ExpectRule(CheckSubjectKey(Bytes{0x30, 0x00}, AnyKeyProfile(), {}), "key-decode");
}

TEST(KeyCheck, RsaSizeAndExponent) {
  UniquePkey rsa1024 = GenerateKey("RSA", "1024");
  ExpectRule(CheckSubjectKey(Spki(rsa1024.get()), AnyKeyProfile(), {}), "rsa-min-bits");
  Profile strict = AnyKeyProfile();
  strict.rsa_min_bits = 3072;
  UniquePkey rsa2048 = GenerateKey("RSA", "2048");
  ExpectRule(CheckSubjectKey(Spki(rsa2048.get()), strict, {}), "rsa-min-bits");
  UniquePkey rsa2052 = GenerateKey("RSA", "2052");
  ExpectRule(CheckSubjectKey(Spki(rsa2052.get()), AnyKeyProfile(), {}), "rsa-modulus-size");

  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* e3 = nullptr;
  UniqueBn three(BN_new());
  BN_set_word(three.get(), 3);
  ASSERT_EQ(EVP_PKEY_keygen_init(ctx), 1);
  EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048);
  EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, three.get());
  ASSERT_EQ(EVP_PKEY_keygen(ctx, &e3), 1);
  EVP_PKEY_CTX_free(ctx);
  UniquePkey e3_key(e3);
  ExpectRule(CheckSubjectKey(Spki(e3_key.get()), AnyKeyProfile(), {}), "rsa-exponent");
}

TEST(KeyCheck, SmallFactorIsRefused) {
  internal::UniqueBnCtx ctx(BN_CTX_new());
  UniqueBn q(BN_new()), n(BN_new());
  do {
    BN_rand(q.get(), 2046, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD);
    BN_mul_word(q.get(), 1);
    BN_copy(n.get(), q.get());
    BN_mul_word(n.get(), 7);
  } while (BN_num_bits(n.get()) != 2048);
  UniquePkey key = RsaPublic(n.get());
  ASSERT_NE(key, nullptr);
  ExpectRule(CheckSubjectKey(Spki(key.get()), AnyKeyProfile(), {}), "rsa-small-factor");
}

TEST(KeyCheck, FermatFactorableKeyIsRefused) {
  auto [p, q] = ClosePrimes();
  UniquePkey key = RsaFromPrimes(p.get(), q.get());
  ASSERT_NE(key, nullptr);
  ASSERT_EQ(EVP_PKEY_get_bits(key.get()), 2048);
  EXPECT_TRUE(FermatFactors(ModulusOf(key.get()), 100));
  ExpectRule(CheckSubjectKey(Spki(key.get()), AnyKeyProfile(), {}), "rsa-fermat");

  // Through issuance: the CSR is signed by the weak key itself.
  SoftwareHierarchy h;
  const Bytes csr = MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"});
  Result<IssuedCertificate> r = Issue(*h.inter, TlsServerProfile(), ParsedCsr(csr), {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "rsa-fermat") << r.error().ToString();
}

TEST(KeyCheck, RocaFingerprintIsRefused) {
  UniqueBn p = RocaPrime(1024);
  UniqueBn q = RocaPrime(1024);
  internal::UniqueBnCtx ctx(BN_CTX_new());
  UniqueBn n(BN_new());
  BN_mul(n.get(), p.get(), q.get(), ctx.get());
  ASSERT_EQ(BN_num_bits(n.get()), 2048);
  Bytes modulus(static_cast<size_t>(BN_num_bytes(n.get())));
  BN_bn2bin(n.get(), modulus.data());
  EXPECT_TRUE(HasRocaFingerprint(modulus));
  EXPECT_FALSE(FermatFactors(modulus, 100));

  UniquePkey key = RsaFromPrimes(p.get(), q.get());
  ASSERT_NE(key, nullptr);
  ExpectRule(CheckSubjectKey(Spki(key.get()), AnyKeyProfile(), {}), "rsa-roca");

  SoftwareHierarchy h;
  const Bytes csr = MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"});
  Result<IssuedCertificate> r = Issue(*h.inter, TlsServerProfile(), ParsedCsr(csr), {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "rsa-roca") << r.error().ToString();

  // One prime with the structure is not enough for the fingerprint.
  UniqueBn fair(BN_new());
  ASSERT_EQ(BN_generate_prime_ex(fair.get(), 1024, 0, nullptr, nullptr, nullptr), 1);
  BN_mul(n.get(), p.get(), fair.get(), ctx.get());
  modulus.resize(static_cast<size_t>(BN_num_bytes(n.get())));
  BN_bn2bin(n.get(), modulus.data());
  EXPECT_FALSE(HasRocaFingerprint(modulus));
}

TEST(KeyCheck, CustosHeldKeysAreRecognisedInAnyEncoding) {
  UniquePkey ours = GenerateKey("EC", "P-256");
  const Bytes our_spki = Spki(ours.get());
  KeyCheckHooks hooks;
  hooks.key_is_custos_held = [&](std::span<const std::uint8_t> spki) {
    return Bytes(spki.begin(), spki.end()) == our_spki;
  };
  ExpectRule(CheckSubjectKey(our_spki, AnyKeyProfile(), hooks), "key-held-by-custos");
  // The same key with a compressed point is still ours.
  UniquePkey compressed(EVP_PKEY_dup(ours.get()));
  ASSERT_EQ(
      EVP_PKEY_set_utf8_string_param(compressed.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                     OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_COMPRESSED),
      1);
  const Bytes compressed_spki = Spki(compressed.get());
  ASSERT_NE(compressed_spki, our_spki);
  ExpectRule(CheckSubjectKey(compressed_spki, AnyKeyProfile(), hooks), "key-held-by-custos");
  UniquePkey theirs = GenerateKey("EC", "P-256");
  EXPECT_TRUE(CheckSubjectKey(Spki(theirs.get()), AnyKeyProfile(), hooks).ok());
}

TEST(KeyCheck, OffCurvePointIsRefused) {
  UniquePkey key = GenerateKey("EC", "P-256");
  Bytes spki = Spki(key.get());
  spki.back() ^= 0x01;
  const Status s = CheckSubjectKey(spki, AnyKeyProfile(), {});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.error().rule == "key-decode" || s.error().rule == "ec-point")
      << s.error().ToString();
}

}  // namespace
}  // namespace custos::service::ca
