// Distinguished-name strings and SAN syntax.
#include <gtest/gtest.h>

#include "ca_test_util.h"

namespace custos::service::ca {
namespace {

TEST(ParseDn, Rfc4514OrderIsReversedIntoEncodingOrder) {
  Result<std::vector<NameAttribute>> dn = ParseDn("CN=Custos Root,O=Example\\, Inc.,C=US");
  ASSERT_TRUE(dn.ok()) << dn.error().ToString();
  const std::vector<NameAttribute> want = {
      {"C", "US"}, {"O", "Example, Inc."}, {"CN", "Custos Root"}};
  EXPECT_EQ(*dn, want);
  Result<std::vector<NameAttribute>> spaced = ParseDn("CN=a, OU=b, DC=test");
  ASSERT_TRUE(spaced.ok()) << spaced.error().ToString();
  EXPECT_EQ(spaced->size(), 3u);
}

TEST(ParseDn, RefusesWhatIsNotStrict) {
  for (const char* bad :
       {"", "CN", "CN=", "CN=a,", "CN=a,,O=b", "X=a", "cn=a", "CN=a+O=b", "CN=a;O=b", "CN= a",
        "CN=a ", "C=usa", "C=us", "CN=a\\x", "CN=a=b", "CN=a\"b", "CN=a,  O=b"}) {
    Result<std::vector<NameAttribute>> dn = ParseDn(bad);
    EXPECT_FALSE(dn.ok()) << bad;
    if (!dn.ok()) {
      EXPECT_EQ(dn.error().rule, "subject-dn") << bad;
    }
  }
}

TEST(ParseDn, BuildsAndPrintsTheSameName) {
  Result<std::vector<NameAttribute>> dn = ParseDn("CN=Custos Root,O=Example,C=US");
  ASSERT_TRUE(dn.ok());
  Result<internal::UniqueName> name = internal::BuildName(*dn);
  ASSERT_TRUE(name.ok()) << name.error().ToString();
  EXPECT_EQ(NameToString(name->get()), "CN=Custos Root,O=Example,C=US");
  // C is a PrintableString, CN a UTF8String.
  const X509_NAME_ENTRY* c = X509_NAME_get_entry(name->get(), 0);
  EXPECT_EQ(ASN1_STRING_type(X509_NAME_ENTRY_get_data(c)), V_ASN1_PRINTABLESTRING);
  const X509_NAME_ENTRY* cn = X509_NAME_get_entry(name->get(), 2);
  EXPECT_EQ(ASN1_STRING_type(X509_NAME_ENTRY_get_data(cn)), V_ASN1_UTF8STRING);
}

TEST(ParseDn, OverlongCommonNameIsRefusedWhenEncoded) {
  Result<std::vector<NameAttribute>> dn = ParseDn("CN=" + std::string(65, 'a'));
  ASSERT_TRUE(dn.ok());
  Result<internal::UniqueName> name = internal::BuildName(*dn);
  ASSERT_FALSE(name.ok());
  EXPECT_EQ(name.error().rule, "subject-attribute-invalid");
}

TEST(ParseSan, CanonicalForms) {
  struct Case {
    const char* in;
    San::Type type;
    const char* value;
  };
  for (const Case& c :
       {Case{"dns:WWW.Dev.Custos.Test", San::Type::kDns, "www.dev.custos.test"},
        Case{"ip:127.0.0.1", San::Type::kIp, "127.0.0.1"},
        Case{"ip:fd00:0:0::1", San::Type::kIp, "fd00::1"},
        Case{"uri:spiffe://dev.custos.test/ci", San::Type::kUri, "spiffe://dev.custos.test/ci"},
        Case{"email:ops@custos.test", San::Type::kEmail, "ops@custos.test"}}) {
    Result<San> san = ParseSan(c.in);
    ASSERT_TRUE(san.ok()) << c.in << ": " << san.error().ToString();
    EXPECT_EQ(san->type, c.type) << c.in;
    EXPECT_EQ(san->value, c.value) << c.in;
  }
  EXPECT_EQ(SanToString({San::Type::kDns, "a.b"}), "dns:a.b");
}

TEST(ParseSan, RefusesBadSyntax) {
  for (const char* bad :
       {"www.example", "dns:", "dns:-a.test", "dns:a..test", "dns:a_b.test", "dns:single",
        "dns:a.*.test", "ip:1.2.3", "ip:999.1.1.1", "uri:relative/path", "uri:spiffe://a b",
        "email:nobody", "email:a@b@c.test", "x400:foo"}) {
    Result<San> san = ParseSan(bad);
    EXPECT_FALSE(san.ok()) << bad;
    if (!san.ok()) {
      EXPECT_EQ(san.error().rule, "san-syntax") << bad;
    }
  }
}

TEST(DnsName, Syntax) {
  EXPECT_TRUE(internal::IsValidDnsName("a.dev.custos.test", false));
  EXPECT_TRUE(internal::IsValidDnsName("*.dev.custos.test", true));
  EXPECT_FALSE(internal::IsValidDnsName("*.dev.custos.test", false));
  EXPECT_FALSE(internal::IsValidDnsName("*.test", true));
  EXPECT_FALSE(internal::IsValidDnsName("a*.dev.custos.test", true));
  EXPECT_FALSE(internal::IsValidDnsName(std::string(64, 'a') + ".test", false));
  EXPECT_FALSE(internal::IsValidDnsName("a.dev.custos.test.", false));
}

}  // namespace
}  // namespace custos::service::ca
