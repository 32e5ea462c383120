// Issuance under profiles with software keys: a root -> intermediate -> leaf
// chain checked field by field and by real verifiers (openssl verify
// -x509_strict, GnuTLS certtool), and one refusal test per rule.
#include <gtest/gtest.h>

#include <set>

#include "ca_test_util.h"

namespace custos::service::ca {
namespace {

using namespace testing;  // NOLINT
using std::chrono::days;
using std::chrono::hours;
using std::chrono::seconds;

class IssueTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { hierarchy_ = new SoftwareHierarchy(); }
  static void TearDownTestSuite() {
    delete hierarchy_;
    hierarchy_ = nullptr;
  }

  const CertificateAuthority& ca() { return *hierarchy_->inter; }

  Result<IssuedCertificate> IssueFor(const Profile& profile, const Bytes& csr_der,
                                     const IssueRequest& request = {},
                                     const IssueHooks& hooks = {}) {
    Result<Csr> csr = Csr::Parse(csr_der);
    if (!csr.ok()) return csr.error();
    return Issue(ca(), profile, *csr, request, hooks);
  }

  static void ExpectRefused(const Result<IssuedCertificate>& r, const std::string& rule) {
    ASSERT_FALSE(r.ok()) << "issued, expected refusal by " << rule;
    EXPECT_EQ(r.error().rule, rule) << r.error().ToString();
    EXPECT_FALSE(r.error().message.empty());
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
  }

  static SoftwareHierarchy* hierarchy_;
  TempDir dir_;
};

SoftwareHierarchy* IssueTest::hierarchy_ = nullptr;

TEST_F(IssueTest, TlsServerLeafVerifiesWithOpensslAndGnutls) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr =
      MakeCsr(key.get(), {{{"CN", "api.dev.custos.test"}},
                          "DNS:api.dev.custos.test,DNS:www.dev.custos.test,IP:127.0.0.1"});
  const Time now = std::chrono::floor<seconds>(Clock::now());
  IssueHooks hooks;
  hooks.now = now;
  Result<IssuedCertificate> leaf = IssueFor(TlsServerProfile(), csr, {}, hooks);
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  EXPECT_EQ(
      VerifyWithTools(dir_, hierarchy_->root_der, hierarchy_->inter_der, leaf->der, "sslserver"),
      "");
  EXPECT_TRUE(LintCertificate(leaf->der, hierarchy_->inter_der, {}).ok());

  // Serial: 20 octets, positive, from the CSPRNG.
  ASSERT_EQ(leaf->serial.size(), 20u);
  EXPECT_EQ(leaf->serial[0] & 0x80, 0);
  EXPECT_NE(leaf->serial[0], 0);
  // Validity: backdated one minute, the profile default, inclusive.
  EXPECT_EQ(leaf->not_before, now - seconds(60));
  EXPECT_EQ(leaf->not_after - leaf->not_before + seconds(1), days(30));
  EXPECT_EQ(leaf->subject, "CN=api.dev.custos.test");
  ASSERT_EQ(leaf->sans.size(), 3u);
  EXPECT_EQ(leaf->sans[2], (San{San::Type::kIp, "127.0.0.1"}));

  UniqueX509 x = ParseCert(leaf->der);
  UniqueX509 inter = ParseCert(hierarchy_->inter_der);
  // Issuer byte-identical to the CA subject; AKI = CA SKI.
  EXPECT_EQ(internal::ToDer(X509_get_issuer_name(x.get()), i2d_X509_NAME),
            internal::ToDer(X509_get_subject_name(inter.get()), i2d_X509_NAME));
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(x.get());
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(inter.get());
  ASSERT_NE(aki, nullptr);
  ASSERT_NE(ski, nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(aki, ski), 0);
  // SKI is SHA-1 over the subject key (method 1), as OpenSSL computes "hash".
  EXPECT_EQ(internal::KeyIdentifier(X509_get_X509_PUBKEY(x.get())),
            Bytes(ASN1_STRING_get0_data(X509_get0_subject_key_id(x.get())),
                  ASN1_STRING_get0_data(X509_get0_subject_key_id(x.get())) + 20));
  // KU critical digitalSignature only; EKU serverAuth; BC CA:FALSE critical.
  EXPECT_EQ(X509_get_key_usage(x.get()), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(x.get()), static_cast<uint32_t>(XKU_SSL_SERVER));
  EXPECT_EQ(X509_check_ca(x.get()), 0);
  // CRL DP and AIA from the profile.
  auto [rc, text] = RunCommand("openssl x509 -noout -text -in " + (dir_ / "leaf.pem"));
  ASSERT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("URI:http://ca.dev.custos.test/dev-intermediate.crl"), std::string::npos);
  EXPECT_NE(text.find("OCSP - URI:http://ocsp.dev.custos.test/"), std::string::npos);
  EXPECT_NE(text.find("CA Issuers - URI:http://ca.dev.custos.test/dev-intermediate.crt"),
            std::string::npos);
  EXPECT_NE(text.find("ecdsa-with-SHA256"), std::string::npos);
}

TEST_F(IssueTest, RsaAndP384LeavesVerify) {
  for (auto [type, param] : {std::pair{"RSA", "2048"}, std::pair{"EC", "P-384"}}) {
    SCOPED_TRACE(type);
    UniquePkey key = GenerateKey(type, param);
    const Bytes csr =
        MakeCsr(key.get(), {{{"CN", "db.dev.custos.test"}}, "DNS:db.dev.custos.test"});
    Result<IssuedCertificate> leaf = IssueFor(TlsServerProfile(), csr);
    ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
    EXPECT_EQ(VerifyWithTools(dir_, hierarchy_->root_der, hierarchy_->inter_der, leaf->der), "");
  }
}

TEST_F(IssueTest, SpiffeSvidHasEmptySubjectAndCriticalUriSan) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr =
      MakeCsr(key.get(), {{{"CN", "ignored"}}, "URI:spiffe://dev.custos.test/ci/release"});
  Result<IssuedCertificate> svid = IssueFor(SpiffeProfile(), csr);
  ASSERT_TRUE(svid.ok()) << svid.error().ToString();
  EXPECT_EQ(svid->subject, "");
  EXPECT_EQ(
      VerifyWithTools(dir_, hierarchy_->root_der, hierarchy_->inter_der, svid->der, "sslclient"),
      "");
  UniqueX509 x = ParseCert(svid->der);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(x.get())), 0);
  const int idx = X509_get_ext_by_NID(x.get(), NID_subject_alt_name, -1);
  ASSERT_GE(idx, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(x.get(), idx)), 1);
  EXPECT_EQ(svid->not_after - svid->not_before + seconds(1), hours(1));
  EXPECT_EQ(X509_get_extended_key_usage(x.get()),
            static_cast<uint32_t>(XKU_SSL_CLIENT | XKU_SSL_SERVER));

  // X.509-SVID: exactly one URI SAN.
  const Bytes two =
      MakeCsr(key.get(), {{}, "URI:spiffe://dev.custos.test/a,URI:spiffe://dev.custos.test/b"});
  ExpectRefused(IssueFor(SpiffeProfile(), two), "san-count");
  // Outside the trust domain, or escaping it.
  for (const char* uri :
       {"URI:spiffe://other.test/a", "URI:spiffe://dev.custos.test.evil/a",
        "URI:spiffe://dev.custos.test/../x", "URI:spiffe://dev.custos.test/a%2e%2e",
        "URI:spiffe://dev.custos.test/"}) {
    SCOPED_TRACE(uri);
    ExpectRefused(IssueFor(SpiffeProfile(), MakeCsr(key.get(), {{}, uri})), "san-uri-prefix");
  }
}

TEST_F(IssueTest, SubCaProfileMakesAVerifyingSubordinate) {
  // A sub-CA under the root (path length 1 allows one more level).
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr =
      MakeCsr(key.get(), {{{"CN", "Team CA"}, {"O", "Custos Test"}}, "", "", "critical,CA:TRUE"});
  Result<Csr> parsed = Csr::Parse(csr);
  ASSERT_TRUE(parsed.ok());
  Result<IssuedCertificate> sub = Issue(*hierarchy_->root, SubCaProfile(), *parsed, {}, {});
  ASSERT_TRUE(sub.ok()) << sub.error().ToString();
  UniqueX509 x = ParseCert(sub->der);
  EXPECT_EQ(X509_check_ca(x.get()), 1);
  EXPECT_EQ(X509_get_pathlen(x.get()), 0);
  WriteCertsPem(dir_ / "root.pem", {hierarchy_->root_der});
  WriteCertsPem(dir_ / "sub.pem", {sub->der});
  auto [rc, out] = RunCommand("openssl verify -x509_strict -CAfile " + (dir_ / "root.pem") + " " +
                              (dir_ / "sub.pem"));
  EXPECT_EQ(rc, 0) << out;
  // Under the intermediate (path length 0) a sub-CA is refused.
  ExpectRefused(Issue(ca(), SubCaProfile(), *parsed, {}, {}), "ca-path-len");
}

TEST_F(IssueTest, CsrExtensionsAreNotCopiedUnlessAllowListed) {
  UniquePkey key = GenerateKey("EC", "P-256");
  // 1.3.6.1.4.1.99999.1: a private extension; OCTET STRING "hi".
  const Bytes csr = MakeCsr(key.get(), {{{"CN", "a.dev.custos.test"}},
                                        "DNS:a.dev.custos.test",
                                        "codeSigning",
                                        "critical,CA:TRUE",
                                        {{"1.3.6.1.4.1.99999.1", "DER:04026869"}}});
  Result<IssuedCertificate> leaf = IssueFor(TlsServerProfile(), csr);
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  UniqueX509 x = ParseCert(leaf->der);
  EXPECT_EQ(X509_check_ca(x.get()), 0) << "CA:TRUE was copied from the CSR";
  EXPECT_EQ(X509_get_extended_key_usage(x.get()), static_cast<uint32_t>(XKU_SSL_SERVER))
      << "codeSigning was copied from the CSR";
  EXPECT_LT(X509_get_ext_by_OBJ(x.get(), internal::ParseOid("1.3.6.1.4.1.99999.1").get(), -1), 0);
  const std::set<std::string> dropped(leaf->dropped_csr_extensions.begin(),
                                      leaf->dropped_csr_extensions.end());
  EXPECT_EQ(dropped, (std::set<std::string>{"2.5.29.37", "2.5.29.19", "1.3.6.1.4.1.99999.1"}));

  Profile allow = TlsServerProfile();
  allow.csr_extension_allowlist = {"1.3.6.1.4.1.99999.1"};
  Result<IssuedCertificate> copied = IssueFor(allow, csr);
  ASSERT_TRUE(copied.ok()) << copied.error().ToString();
  UniqueX509 y = ParseCert(copied->der);
  const int idx = X509_get_ext_by_OBJ(y.get(), internal::ParseOid("1.3.6.1.4.1.99999.1").get(), -1);
  ASSERT_GE(idx, 0);
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(y.get(), idx));
  EXPECT_EQ(
      Bytes(ASN1_STRING_get0_data(data), ASN1_STRING_get0_data(data) + ASN1_STRING_length(data)),
      (Bytes{0x04, 0x02, 0x68, 0x69}));
  EXPECT_EQ(X509_check_ca(y.get()), 0);

  // A profile may not allow-list an extension it builds itself.
  allow.csr_extension_allowlist = {"2.5.29.19"};
  ExpectRefused(IssueFor(allow, csr), "profile-invalid");
}

TEST_F(IssueTest, EkuSubsetMayBeRequestedButNothingElse) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr = MakeCsr(key.get(), {{}, "URI:spiffe://dev.custos.test/w"});
  IssueRequest only_client;
  only_client.ext_key_usages = {kEkuClientAuth};
  Result<IssuedCertificate> svid = IssueFor(SpiffeProfile(), csr, only_client);
  ASSERT_TRUE(svid.ok()) << svid.error().ToString();
  EXPECT_EQ(X509_get_extended_key_usage(ParseCert(svid->der).get()),
            static_cast<uint32_t>(XKU_SSL_CLIENT));
  IssueRequest code_signing;
  code_signing.ext_key_usages = {kEkuCodeSigning};
  ExpectRefused(IssueFor(SpiffeProfile(), csr, code_signing), "eku-not-allowed");
}

TEST_F(IssueTest, SansOutsideTheProfileAreRefused) {
  UniquePkey key = GenerateKey("EC", "P-256");
  struct Case {
    const char* san;
    const char* rule;
  };
  for (const Case& c : {Case{"DNS:www.example.com", "san-dns-suffix"},
                        Case{"DNS:dev.custos.test", "san-dns-suffix"},
                        Case{"DNS:a.dev.custos.test.evil.test", "san-dns-suffix"},
                        Case{"DNS:*.dev.custos.test", "san-wildcard"},
                        Case{"IP:10.1.2.3", "san-ip-range"}, Case{"IP:fe80::1", "san-ip-range"},
                        Case{"URI:https://a.dev.custos.test/", "san-uri-prefix"},
                        Case{"email:ops@custos.test", "san-email-domain"},
                        Case{"DNS:a.dev.custos.test,DNS:a.dev.custos.test", "san-duplicate"}}) {
    SCOPED_TRACE(c.san);
    ExpectRefused(IssueFor(TlsServerProfile(), MakeCsr(key.get(), {{}, c.san})), c.rule);
  }
  // No SAN at all.
  ExpectRefused(IssueFor(TlsServerProfile(), MakeCsr(key.get(), {{{"CN", "a.dev.custos.test"}}})),
                "san-missing");
  // Wildcards when the profile allows them, within the suffix.
  Profile wild = TlsServerProfile();
  wild.sans.allow_wildcards = true;
  Result<IssuedCertificate> ok =
      IssueFor(wild, MakeCsr(key.get(), {{}, "DNS:*.svc.dev.custos.test"}));
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  EXPECT_EQ(VerifyWithTools(dir_, hierarchy_->root_der, hierarchy_->inter_der, ok->der), "");
  // Too many SANs.
  Profile few = TlsServerProfile();
  few.sans.max_count = 1;
  ExpectRefused(
      IssueFor(few, MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test,DNS:b.dev.custos.test"})),
      "san-count");
}

TEST_F(IssueTest, RequestedSansReplaceTheCsrsAndAreChecked) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr = MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"});
  IssueRequest request;
  request.sans = {*ParseSan("dns:b.dev.custos.test")};
  Result<IssuedCertificate> leaf = IssueFor(TlsServerProfile(), csr, request);
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  EXPECT_EQ(leaf->sans, request.sans);
  EXPECT_EQ(leaf->subject, "");  // empty subject: SAN critical
  request.sans = {*ParseSan("dns:b.example.com")};
  ExpectRefused(IssueFor(TlsServerProfile(), csr, request), "san-dns-suffix");
}

TEST_F(IssueTest, SubjectRules) {
  UniquePkey key = GenerateKey("EC", "P-256");
  // CN must be one of the SANs.
  ExpectRefused(IssueFor(TlsServerProfile(), MakeCsr(key.get(), {{{"CN", "b.dev.custos.test"}},
                                                                 "DNS:a.dev.custos.test"})),
                "cn-not-in-sans");
  // Attributes the profile does not allow from the CSR.
  ExpectRefused(IssueFor(TlsServerProfile(),
                         MakeCsr(key.get(), {{{"O", "Evil Corp"}, {"CN", "a.dev.custos.test"}},
                                             "DNS:a.dev.custos.test"})),
                "subject-attribute");
  // Two CNs.
  ExpectRefused(
      IssueFor(TlsServerProfile(),
               MakeCsr(key.get(), {{{"CN", "a.dev.custos.test"}, {"CN", "a.dev.custos.test"}},
                                   "DNS:a.dev.custos.test"})),
      "subject-multiple-cn");
  // Fixed RDNs come first; a CSR may repeat them only with the same value.
  Profile fixed = TlsServerProfile();
  fixed.subject.fixed_rdns = {{"C", "US"}, {"O", "Custos Test"}};
  Result<IssuedCertificate> leaf =
      IssueFor(fixed, MakeCsr(key.get(), {{{"O", "Custos Test"}, {"CN", "a.dev.custos.test"}},
                                          "DNS:a.dev.custos.test"}));
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  EXPECT_EQ(leaf->subject, "CN=a.dev.custos.test,O=Custos Test,C=US");
  ExpectRefused(IssueFor(fixed, MakeCsr(key.get(), {{{"O", "Other"}}, "DNS:a.dev.custos.test"})),
                "subject-fixed-mismatch");
}

TEST_F(IssueTest, ValidityCaps) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr = MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"});
  IssueRequest request;
  request.validity = days(91);
  ExpectRefused(IssueFor(TlsServerProfile(), csr, request), "validity-cap");
  request.validity = days(90);
  Result<IssuedCertificate> max = IssueFor(TlsServerProfile(), csr, request);
  ASSERT_TRUE(max.ok()) << max.error().ToString();
  EXPECT_EQ(max->not_after - max->not_before + seconds(1), days(90));
  request.validity = seconds(0);
  ExpectRefused(IssueFor(TlsServerProfile(), csr, request), "validity-invalid");

  // Capped by the CA's own notAfter.
  Profile long_lived = TlsServerProfile();
  long_lived.max_validity = days(20000);
  request.validity = days(20000);
  Result<IssuedCertificate> capped = IssueFor(long_lived, csr, request);
  ASSERT_TRUE(capped.ok()) << capped.error().ToString();
  EXPECT_EQ(capped->not_after, ca().not_after());
  // An expired CA issues nothing.
  IssueHooks later;
  later.now = ca().not_after() + seconds(1);
  ExpectRefused(IssueFor(TlsServerProfile(), csr, {}, later), "ca-expired");
  // Nor one whose certificate is not valid yet (notBefore never after now).
  IssueHooks earlier;
  earlier.now = ca().not_before() - hours(1);
  ExpectRefused(IssueFor(TlsServerProfile(), csr, {}, earlier), "ca-not-yet-valid");
}

TEST_F(IssueTest, CabForumScheduleForPublicTlsProfiles) {
  EXPECT_EQ(CabForumMaxValidity(Clock::from_time_t(1773532799)),
            days(398));  // 2026-03-14T23:59:59Z
  EXPECT_EQ(CabForumMaxValidity(Clock::from_time_t(1773532800)), days(200));  // 2026-03-15
  EXPECT_EQ(CabForumMaxValidity(Clock::from_time_t(1805068800)), days(100));  // 2027-03-15
  EXPECT_EQ(CabForumMaxValidity(Clock::from_time_t(1868227200)), days(47));   // 2029-03-15

  // A hierarchy made in 2026 so that the dates can be chosen.
  const Time april_2026 = Clock::from_time_t(1775001600);  // 2026-04-01T00:00:00Z
  SoftwareHierarchy h(april_2026 - days(30));
  Profile pub = TlsServerProfile();
  pub.public_tls = true;
  pub.max_validity = days(398);
  pub.default_validity = days(398);
  UniquePkey key = GenerateKey("EC", "P-256");
  Result<Csr> csr = Csr::Parse(MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"}));
  ASSERT_TRUE(csr.ok());
  IssueHooks hooks;
  hooks.now = april_2026;
  // The default is capped to 200 days.
  Result<IssuedCertificate> leaf = Issue(*h.inter, pub, *csr, {}, hooks);
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  EXPECT_EQ(leaf->not_after - leaf->not_before + seconds(1), days(200));
  // An explicit request above the cap is refused.
  IssueRequest request;
  request.validity = days(201);
  ExpectRefused(Issue(*h.inter, pub, *csr, request, hooks), "validity-cab-forum");
  // From 2027-03-15: 100 days.
  hooks.now = Clock::from_time_t(1805068800) + hours(1);
  Result<IssuedCertificate> later = Issue(*h.inter, pub, *csr, {}, hooks);
  ASSERT_TRUE(later.ok()) << later.error().ToString();
  EXPECT_EQ(later->not_after - later->not_before + seconds(1), days(100));
}

TEST_F(IssueTest, SerialUniquenessCallback) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr = MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"});
  std::set<Bytes> issued;
  int calls = 0;
  IssueHooks hooks;
  hooks.serial_is_unused = [&](std::span<const std::uint8_t> serial) {
    ++calls;
    // The first candidate is "taken".
    return calls > 1 && issued.count(Bytes(serial.begin(), serial.end())) == 0;
  };
  Result<IssuedCertificate> leaf = IssueFor(TlsServerProfile(), csr, {}, hooks);
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  EXPECT_EQ(calls, 2);
  hooks.serial_is_unused = [](std::span<const std::uint8_t>) { return false; };
  ExpectRefused(IssueFor(TlsServerProfile(), csr, {}, hooks), "serial-unique");
}

TEST_F(IssueTest, CustosHeldKeysAreRefused) {
  // The issuing CA's own key.
  const Bytes own = MakeCsr(hierarchy_->inter_key.get(), {{}, "DNS:a.dev.custos.test"});
  ExpectRefused(IssueFor(TlsServerProfile(), own), "key-held-by-custos");
  // Any key the callback says Custos holds (the root's, here).
  const Bytes root_spki = Spki(hierarchy_->root_key.get());
  IssueHooks hooks;
  hooks.keys.key_is_custos_held = [&](std::span<const std::uint8_t> spki) {
    return Bytes(spki.begin(), spki.end()) == root_spki;
  };
  const Bytes csr =
      MakeCsr(hierarchy_->root_key.get(), {{}, "DNS:a.dev.custos.test"}, EVP_sha384());
  ExpectRefused(IssueFor(TlsServerProfile(), csr, {}, hooks), "key-held-by-custos");
}

TEST_F(IssueTest, KeyRulesApplyOnIssue) {
  UniquePkey rsa1024 = GenerateKey("RSA", "1024");
  ExpectRefused(IssueFor(TlsServerProfile(), MakeCsr(rsa1024.get(), {{}, "DNS:a.dev.custos.test"})),
                "rsa-min-bits");
  Profile p256_only = TlsServerProfile();
  p256_only.key_algorithms = {KeyAlgorithm::kEcP256};
  UniquePkey p384 = GenerateKey("EC", "P-384");
  ExpectRefused(
      IssueFor(p256_only, MakeCsr(p384.get(), {{}, "DNS:a.dev.custos.test"}, EVP_sha384())),
      "key-algorithm");
  UniquePkey ed = GenerateKey("ED25519");
  ExpectRefused(
      IssueFor(TlsServerProfile(), MakeCsr(ed.get(), {{}, "DNS:a.dev.custos.test"}, nullptr)),
      "key-algorithm");
  Profile with_ed = TlsServerProfile();
  with_ed.key_algorithms.push_back(KeyAlgorithm::kEd25519);
  Result<IssuedCertificate> ed_leaf =
      IssueFor(with_ed, MakeCsr(ed.get(), {{}, "DNS:a.dev.custos.test"}, nullptr));
  ASSERT_TRUE(ed_leaf.ok()) << ed_leaf.error().ToString();
  EXPECT_EQ(VerifyWithTools(dir_, hierarchy_->root_der, hierarchy_->inter_der, ed_leaf->der), "");
}

TEST_F(IssueTest, InvalidProfilesAreRefused) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr = MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"});
  std::vector<std::pair<const char*, std::function<void(Profile&)>>> cases = {
      {"no name", [](Profile& p) { p.name.clear(); }},
      {"no algorithms", [](Profile& p) { p.key_algorithms.clear(); }},
      {"rsa 1024", [](Profile& p) { p.rsa_min_bits = 1024; }},
      {"default over max", [](Profile& p) { p.default_validity = days(91); }},
      {"leaf keyCertSign", [](Profile& p) { p.key_usage |= kKeyCertSign; }},
      {"leaf without EKU", [](Profile& p) { p.ext_key_usages.clear(); }},
      {"anyEKU", [](Profile& p) { p.ext_key_usages = {"2.5.29.37.0"}; }},
      {"bad OID", [](Profile& p) { p.ext_key_usages = {"serverAuth"}; }},
      {"bad CIDR", [](Profile& p) { p.sans.ip_ranges = {"10.0.0.0/33"}; }},
      {"bad URL", [](Profile& p) { p.crl_urls = {"not a url"}; }},
      {"CA without keyCertSign", [](Profile& p) { p.is_ca = true; }},
  };
  for (auto& [name, mutate] : cases) {
    SCOPED_TRACE(name);
    Profile p = TlsServerProfile();
    mutate(p);
    ExpectRefused(IssueFor(p, csr), "profile-invalid");
  }
}

TEST_F(IssueTest, IssuedCertificatesAreUniqueAndFresh) {
  UniquePkey key = GenerateKey("EC", "P-256");
  const Bytes csr = MakeCsr(key.get(), {{}, "DNS:a.dev.custos.test"});
  std::set<Bytes> serials;
  for (int i = 0; i < 20; ++i) {
    Result<IssuedCertificate> leaf = IssueFor(TlsServerProfile(), csr);
    ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
    EXPECT_TRUE(serials.insert(leaf->serial).second);
  }
}

TEST(CertificateAuthority, RefusesNonCaCertificatesAndWrongKeys) {
  SoftwareHierarchy h;
  UniquePkey other = GenerateKey("EC", "P-256");
  Result<CertificateAuthority> wrong = CertificateAuthority::Create(h.inter_der, other.get());
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().rule, "ca-invalid");
  // A leaf is not a CA.
  const Bytes csr = MakeCsr(other.get(), {{}, "DNS:a.dev.custos.test"});
  Result<IssuedCertificate> leaf = Issue(*h.inter, TlsServerProfile(), ParsedCsr(csr), {}, {});
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  Result<CertificateAuthority> not_ca = CertificateAuthority::Create(leaf->der, other.get());
  ASSERT_FALSE(not_ca.ok());
  EXPECT_EQ(not_ca.error().rule, "ca-invalid");
  Bytes trailing = h.inter_der;
  trailing.push_back(0);
  EXPECT_FALSE(CertificateAuthority::Create(trailing, h.inter_key.get()).ok());
}

TEST(CreateRoot, RsaRootAndRefusals) {
  TempDir dir;
  UniquePkey key = GenerateKey("RSA", "3072");
  RootRequest rr;
  rr.subject_dn = "CN=RSA Root,O=Custos Test,C=DE";
  rr.validity = days(3650);
  Result<IssuedCertificate> root = CreateRoot(rr, key.get());
  ASSERT_TRUE(root.ok()) << root.error().ToString();
  EXPECT_EQ(root->subject, "CN=RSA Root,O=Custos Test,C=DE");
  EXPECT_TRUE(LintCertificate(root->der, root->der, {}).ok());
  WriteCertsPem(dir / "root.pem", {root->der});
  auto [rc, out] = RunCommand("openssl verify -x509_strict -CAfile " + (dir / "root.pem") + " " +
                              (dir / "root.pem"));
  EXPECT_EQ(rc, 0) << out;
  auto [rc2, text] = RunCommand("openssl x509 -noout -text -in " + (dir / "root.pem"));
  EXPECT_NE(text.find("sha256WithRSAEncryption"), std::string::npos) << text;
  EXPECT_NE(text.find("CA:TRUE"), std::string::npos) << text;
  rr.subject_dn = "CN=a+O=b";
  Result<IssuedCertificate> bad = CreateRoot(rr, key.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().rule, "subject-dn");
}

}  // namespace
}  // namespace custos::service::ca
