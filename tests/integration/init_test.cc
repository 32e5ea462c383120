// custos-init dev: what it makes, that it never overwrites a deployment, and
// that its starter policy holds the quorum rules the issue names (parsed with
// the policy code custosd uses).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <variant>
#include <vector>

#include "custos/policy/approval.h"
#include "custos/policy/policy.h"
#include "custos/policy/quorum.h"
#include "harness.h"

namespace custos::testing {
namespace {

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(CustosInit, MakesACompleteDeploymentWithPrivateSecrets) {
  Deployment d;
  for (const char* f :
       {"custosd.conf", "policy.txtpb", "softhsm2.conf", "pki/ca.crt", "pki/server.crt",
        "pki/server.key", "clients/builder.conf", "clients/issuer.conf", "clients/admin.conf",
        "officers/alice.key", "officers/bob.pub", "officers/carol.conf", "secrets/user.pin"}) {
    struct stat st {};
    EXPECT_EQ(stat((d.dir() + "/" + f).c_str(), &st), 0) << "missing " << f;
  }
  for (const char* f : {"secrets/user.pin", "secrets/so.pin", "pki/server.key", "pki/ca.key",
                        "clients/builder.key", "officers/alice.key"}) {
    EXPECT_EQ(ModeOf(d.dir() + "/" + f) & 077, 0u) << f << " is readable by group or other";
  }
  // The server certificate chains to the dev CA and names 127.0.0.1.
  CommandResult v =
      Exec({"openssl", "verify", "-CAfile", d.dir() + "/pki/ca.crt", d.dir() + "/pki/server.crt"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  CommandResult t = Exec(
      {"openssl", "x509", "-in", d.dir() + "/pki/server.crt", "-noout", "-ext", "subjectAltName"});
  EXPECT_NE(t.out.find("127.0.0.1"), std::string::npos) << t.out;
  // The PIN never appears in the daemon config.
  EXPECT_EQ(ReadFile(d.dir() + "/custosd.conf").find(d.user_pin()), std::string::npos);
  // The token is there and the user PIN logs in.
  CommandResult p = Exec({"pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH, "--token-label",
                          "custos-dev", "--login", "--pin", d.user_pin(), "--list-objects"},
                         {{"SOFTHSM2_CONF", d.softhsm_conf()}});
  EXPECT_EQ(p.exit_code, 0) << p.out << p.err;
}

TEST(CustosInit, RefusesToOverwriteAnExistingDeployment) {
  Deployment d;
  const std::string before = ReadFile(d.dir() + "/custosd.conf");
  CommandResult r = Exec({BinPath("custos-init"), "dev", "--dir", d.dir()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("refusing"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(d.dir() + "/custosd.conf"), before);
}

TEST(CustosInit, RefusesAPinFileOthersCanRead) {
  Deployment d;
  ASSERT_EQ(chmod((d.dir() + "/secrets/user.pin").c_str(), 0644), 0);
  EXPECT_FALSE(d.Start());
  EXPECT_NE(d.log().find("chmod"), std::string::npos) << d.log();
}

// The starter policy: 2 of alice, bob and carol for creating ca/ssh-ca keys,
// destroying any key, changing policy or officers, issuing CA certificates
// and signing with release-* keys; nothing else needs a quorum.
TEST(CustosInit, StarterPolicyRequiresTwoOfThreeOfficers) {
  Deployment d;
  const std::string text = ReadFile(d.dir() + "/policy.txtpb");
  auto parsed = policy::Policy::Parse(text);
  ASSERT_TRUE(std::holds_alternative<policy::Policy>(parsed))
      << std::get<policy::ParseError>(parsed).ToString("policy.txtpb");
  const policy::Policy& p = std::get<policy::Policy>(parsed);
  EXPECT_EQ(p.version(), 1u);
  const policy::QuorumPolicy q(p);

  // Officers with the public keys custos-init wrote beside their private keys.
  ASSERT_EQ(q.officers().size(), 3u);
  for (const char* id : {"alice", "bob", "carol"}) {
    const policy::Officer* o = q.FindOfficer(id);
    ASSERT_NE(o, nullptr) << id;
    EXPECT_EQ(o->groups, std::vector<std::string>{"officers"});
    auto pub = policy::OfficerPublicKey::Parse(ReadFile(d.dir() + "/officers/" + id + ".pub"));
    ASSERT_TRUE(std::holds_alternative<policy::OfficerPublicKey>(pub)) << id;
    EXPECT_EQ(o->public_key.Fingerprint(), std::get<policy::OfficerPublicKey>(pub).Fingerprint())
        << id;
    EXPECT_EQ(q.OfficersOfPrincipal("spiffe://dev.custos.test/officer/" + std::string(id)),
              std::vector<std::string>{id});
    // Each officer's client config names that officer's approval key.
    const std::string conf = ReadFile(d.officer_conf(id));
    EXPECT_NE(conf.find("\nofficer-id = " + std::string(id) + "\n"), std::string::npos) << conf;
    EXPECT_NE(conf.find("\nofficer-key = " + d.dir() + "/officers/" + id + ".key\n"),
              std::string::npos)
        << conf;
  }
  EXPECT_EQ(q.max_statement_skew(), std::chrono::seconds(300));

  using Op = policy::QuorumOperation;
  auto quorum = [&q](Op op, const std::string& key, const std::string& usage,
                     const std::string& profile = "") {
    policy::QuorumQuery query;
    query.operation = op;
    query.key_name = key;
    query.key_usage = usage;
    query.profile = profile;
    return q.QuorumFor(query);
  };
  auto expect_two_officers = [](const std::vector<policy::QuorumRequirement>& reqs,
                                const std::string& rule) {
    ASSERT_EQ(reqs.size(), 1u) << rule;
    EXPECT_EQ(reqs[0].rule, rule);
    EXPECT_EQ(reqs[0].group, "officers");
    EXPECT_EQ(reqs[0].threshold, 2u);
    EXPECT_TRUE(reqs[0].deny_rejects);
    EXPECT_EQ(reqs[0].expiry, std::chrono::seconds(86400));
  };
  // KEY_CREATE: ca and ssh-ca keys only.
  expect_two_officers(quorum(Op::kKeyCreate, "root-ca", "ca"), "ca-key-creation");
  expect_two_officers(quorum(Op::kKeyCreate, "host-ca", "ssh-ca"), "ca-key-creation");
  EXPECT_TRUE(quorum(Op::kKeyCreate, "release-app", "code-signing").empty());
  EXPECT_TRUE(quorum(Op::kKeyCreate, "tsa", "timestamping").empty());
  // KEY_DESTROY: any key.
  expect_two_officers(quorum(Op::kKeyDestroy, "demo", "code-signing"), "key-destruction");
  expect_two_officers(quorum(Op::kKeyDestroy, "root-ca", "ca"), "key-destruction");
  // KEY_STATE_CHANGE: no rule.
  EXPECT_TRUE(quorum(Op::kKeyStateChange, "demo", "code-signing").empty());
  EXPECT_TRUE(quorum(Op::kKeyStateChange, "release-app", "code-signing").empty());
  // POLICY_CHANGE and OFFICER_CHANGE.
  expect_two_officers(quorum(Op::kPolicyChange, "", ""), "policy-change");
  expect_two_officers(quorum(Op::kOfficerChange, "", ""), "officer-change");
  // CERT_ISSUE: CA certificates (the sub-ca profile, roots, intermediates,
  // revoking a CA certificate); leaf profiles issue at once.
  for (const char* profile : {"sub-ca", "ca:root", "ca:intermediate", "ca:revoke"}) {
    expect_two_officers(quorum(Op::kCertIssue, "", "", profile), "ca-issuance");
  }
  for (const char* profile : {"tls-server", "spiffe-svid", "code-signing", "cab"}) {
    EXPECT_TRUE(quorum(Op::kCertIssue, "", "", profile).empty()) << profile;
  }
  // SIGN: release-* keys only.
  expect_two_officers(quorum(Op::kSign, "release-demo", "code-signing"), "release-signing");
  EXPECT_TRUE(quorum(Op::kSign, "demo", "code-signing").empty());
  EXPECT_TRUE(quorum(Op::kSign, "prerelease-demo", "code-signing").empty());

  // Admin may read and propose policy; builder, issuer and officers may not.
  EXPECT_TRUE(
      p.CheckAdmin("spiffe://dev.custos.test/admin", policy::AdminOperation::kReadPolicy).allowed);
  EXPECT_TRUE(p.CheckAdmin("spiffe://dev.custos.test/admin", policy::AdminOperation::kProposePolicy)
                  .allowed);
  for (const char* who : {"spiffe://dev.custos.test/builder", "spiffe://dev.custos.test/issuer",
                          "spiffe://dev.custos.test/officer/alice"}) {
    EXPECT_FALSE(p.CheckAdmin(who, policy::AdminOperation::kProposePolicy).allowed) << who;
  }
  // Officers are bound to role "officer", which has no key rules.
  EXPECT_EQ(p.RolesOf("spiffe://dev.custos.test/officer/bob"), std::vector<std::string>{"officer"});
  policy::KeyRequest read;
  read.principal = "spiffe://dev.custos.test/officer/bob";
  read.operation = policy::Operation::kRead;
  read.key_name = "demo";
  read.key_usage = "code-signing";
  EXPECT_FALSE(p.Check(read).allowed);
  // The existing least-privilege rules are unchanged.
  policy::KeyRequest sign;
  sign.principal = "spiffe://dev.custos.test/builder";
  sign.operation = policy::Operation::kSign;
  sign.key_name = "release-demo";
  sign.key_usage = "code-signing";
  sign.algorithm = "ecdsa-p256-sha256";
  EXPECT_TRUE(p.Check(sign).allowed);
  sign.key_usage = "ca";
  EXPECT_FALSE(p.Check(sign).allowed);
}

// The CA back-end part of the starter policy: the profiles of issue 5, who
// may issue under them, the admin operations on CAs and certificates.
TEST(CustosInit, StarterPolicyHasTheCertificateProfiles) {
  Deployment d;
  auto parsed = policy::Policy::Parse(ReadFile(d.dir() + "/policy.txtpb"));
  ASSERT_TRUE(std::holds_alternative<policy::Policy>(parsed))
      << std::get<policy::ParseError>(parsed).ToString("policy.txtpb");
  const policy::Policy& p = std::get<policy::Policy>(parsed);
  const std::string td = "spiffe://dev.custos.test/";

  std::vector<std::string> names;
  for (const policy::CertProfile& profile : p.profiles()) names.push_back(profile.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"tls-server", "spiffe-svid", "sub-ca", "code-signing"}));

  const policy::CertProfile* tls = p.FindProfile("tls-server");
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(tls->ca, "dev-intermediate");
  EXPECT_EQ(tls->roles, std::vector<std::string>{"issuer"});
  EXPECT_EQ(tls->key_algorithms, (std::vector<std::string>{"ec-p256", "ec-p384", "rsa"}));
  EXPECT_EQ(tls->rsa_min_bits, 2048);
  EXPECT_EQ(tls->max_validity, std::chrono::hours(24 * 90));
  EXPECT_EQ(tls->ext_key_usages, std::vector<std::string>{"1.3.6.1.5.5.7.3.1"});
  EXPECT_EQ(tls->key_usage_bits, policy::kKuDigitalSignature);
  EXPECT_FALSE(tls->is_ca);
  EXPECT_EQ(tls->san.dns_suffixes, std::vector<std::string>{".dev.custos.test"});
  EXPECT_TRUE(tls->san.uri_prefixes.empty());
  EXPECT_FALSE(tls->crl_urls.empty());

  const policy::CertProfile* svid = p.FindProfile("spiffe-svid");
  ASSERT_NE(svid, nullptr);
  EXPECT_EQ(svid->roles, std::vector<std::string>{"issuer"});
  EXPECT_EQ(svid->subject.mode, policy::CertSubjectMode::kEmpty);
  EXPECT_EQ(svid->san.uri_prefixes, std::vector<std::string>{td});
  EXPECT_EQ(svid->san.max_count, 1);
  EXPECT_EQ(svid->max_validity, std::chrono::hours(24));
  EXPECT_EQ(svid->ext_key_usages,
            (std::vector<std::string>{"1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1"}));

  const policy::CertProfile* sub = p.FindProfile("sub-ca");
  ASSERT_NE(sub, nullptr);
  EXPECT_TRUE(sub->is_ca);
  EXPECT_EQ(sub->path_len, 0);
  EXPECT_EQ(sub->ca, "dev-root");
  EXPECT_NE(sub->key_usage_bits & policy::kKuKeyCertSign, 0);

  const policy::CertProfile* code = p.FindProfile("code-signing");
  ASSERT_NE(code, nullptr);
  // codeSigning, and emailProtection for openssl cms -verify's S/MIME purpose.
  EXPECT_EQ(code->ext_key_usages,
            (std::vector<std::string>{"1.3.6.1.5.5.7.3.3", "1.3.6.1.5.5.7.3.4"}));
  EXPECT_EQ(code->roles, std::vector<std::string>{"admin"});

  EXPECT_EQ(p.ca_settings().crl_validity, std::chrono::hours(24 * 7));
  EXPECT_EQ(p.ca_settings().crl_resign_before, std::chrono::hours(24));

  // Issuance permission: the profile's roles only.
  EXPECT_TRUE(p.CheckProfile(td + "issuer", "tls-server").allowed);
  EXPECT_TRUE(p.CheckProfile(td + "issuer", "spiffe-svid").allowed);
  EXPECT_FALSE(p.CheckProfile(td + "issuer", "sub-ca").allowed);
  EXPECT_TRUE(p.CheckProfile(td + "admin", "sub-ca").allowed);
  const policy::Decision builder = p.CheckProfile(td + "builder", "tls-server");
  EXPECT_FALSE(builder.allowed);
  EXPECT_EQ(builder.rule, "profile:tls-server");
  EXPECT_FALSE(p.CheckProfile(td + "issuer", "no-such-profile").allowed);

  // Admin operations on CAs and certificates.
  using AO = policy::AdminOperation;
  for (AO op : {AO::kManageCa, AO::kRevokeCertificate, AO::kReadCertificates}) {
    EXPECT_TRUE(p.CheckAdmin(td + "admin", op).allowed);
  }
  EXPECT_TRUE(p.CheckAdmin(td + "issuer", AO::kReadCertificates).allowed);
  EXPECT_FALSE(p.CheckAdmin(td + "issuer", AO::kManageCa).allowed);
  EXPECT_FALSE(p.CheckAdmin(td + "issuer", AO::kRevokeCertificate).allowed);
  EXPECT_FALSE(p.CheckAdmin(td + "builder", AO::kReadCertificates).allowed);
}

// The dev CA hierarchy: dev-root (P-384, self-signed, 10 years) and
// dev-intermediate (P-256, path length 0, 5 years) with keys on the token;
// their certificates verify with openssl.
TEST(CustosInit, MakesTheDevCaHierarchyOnTheToken) {
  Deployment d;
  const std::string root = d.dir() + "/ca/dev-root.crt";
  const std::string inter = d.dir() + "/ca/dev-intermediate.crt";
  CommandResult self =
      Exec({"openssl", "verify", "-x509_strict", "-check_ss_sig", "-CAfile", root, root});
  EXPECT_EQ(self.exit_code, 0) << self.out << self.err;
  CommandResult chain = Exec({"openssl", "verify", "-x509_strict", "-CAfile", root, inter});
  EXPECT_EQ(chain.exit_code, 0) << chain.out << chain.err;
  const std::string root_text = Exec({"openssl", "x509", "-in", root, "-noout", "-text"}).out;
  EXPECT_NE(root_text.find("CN = Custos Dev Root"), std::string::npos) << root_text;
  EXPECT_NE(root_text.find("NIST CURVE: P-384"), std::string::npos) << root_text;
  EXPECT_NE(root_text.find("CA:TRUE"), std::string::npos) << root_text;
  const std::string inter_text = Exec({"openssl", "x509", "-in", inter, "-noout", "-text"}).out;
  EXPECT_NE(inter_text.find("CN = Custos Dev Intermediate"), std::string::npos) << inter_text;
  EXPECT_NE(inter_text.find("NIST CURVE: P-256"), std::string::npos) << inter_text;
  EXPECT_NE(inter_text.find("CA:TRUE, pathlen:0"), std::string::npos) << inter_text;
  EXPECT_NE(inter_text.find("Certificate Sign, CRL Sign"), std::string::npos) << inter_text;
  // Validity: 10 and 5 years (enddate - startdate, a day's slack).
  auto years = [](const std::string& path) {
    const std::string s = Exec({"openssl", "x509", "-in", path, "-noout", "-startdate"}).out;
    const std::string e = Exec({"openssl", "x509", "-in", path, "-noout", "-enddate"}).out;
    auto year_of = [](const std::string& line) {
      // "notBefore=Nov 25 12:00:00 2025 GMT"
      const std::size_t gmt = line.rfind(" GMT");
      return gmt == std::string::npos || gmt < 4 ? 0 : std::stoi(line.substr(gmt - 4, 4));
    };
    return year_of(e) - year_of(s);
  };
  EXPECT_EQ(years(root), 10);
  EXPECT_EQ(years(inter), 5);
  // Both private keys are on the token (sensitive, not extractable).
  CommandResult objects =
      Exec({"pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH, "--token-label", "custos-dev",
            "--login", "--pin", d.user_pin(), "--list-objects", "--type", "privkey"},
           {{"SOFTHSM2_CONF", d.softhsm_conf()}});
  ASSERT_EQ(objects.exit_code, 0) << objects.out << objects.err;
  EXPECT_NE(objects.out.find("dev-root"), std::string::npos) << objects.out;
  EXPECT_NE(objects.out.find("dev-intermediate"), std::string::npos) << objects.out;
}

TEST(CustosInit, PrintsThePlainAndTheQuorumDemo) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/dev";
  CommandResult r = Exec({BinPath("custos-init"), "dev", "--dir", dir, "--port", "7999"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = {
      "custosd --config " + dir + "/custosd.conf",
      "clients/admin.conf keys create demo --type ec-p256 --usage code-signing",
      "clients/builder.conf sign --key demo --in FILE --out FILE.sig",
      "clients/admin.conf keys create release-demo --type ec-p256 --usage code-signing",
      "clients/builder.conf sign --key release-demo --in FILE --out FILE.sig",
      "custos-officer --config " + dir + "/officers/alice.conf approve ID",
      "custos-officer --config " + dir + "/officers/bob.conf approve ID",
      "clients/builder.conf request wait ID --out FILE.sig",
      // The CA demo.
      "openssl req -new",
      "clients/issuer.conf cert issue --profile tls-server --csr www.csr --out www.crt --chain "
      "www-chain.pem",
      "openssl verify -CAfile " + dir + "/ca/dev-root.crt -untrusted www-chain.pem www.crt"};
  for (const std::string& line : lines) {
    EXPECT_NE(r.out.find(line), std::string::npos) << "missing \"" << line << "\" in\n" << r.out;
  }
}

}  // namespace
}  // namespace custos::testing
