// The CA back-end in the signing core against a real SoftHSM token (CA keys
// sign through Token::OpenSslKey), a real SQLite store, CSRs made by the
// openssl command and every certificate and CRL checked with `openssl verify`
// and `openssl crl`. Quorum votes are signed with real officer keys.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <variant>

#include "custos/policy/approval.h"
#include "custos/policy/pending_request.h"
#include "custos/service/ca_bootstrap.h"
#include "custos/service/core.h"

namespace custos::service {
namespace {

namespace v1 = custos::v1;

constexpr char kModule[] = CUSTOS_SOFTHSM2_MODULE;
constexpr char kAdmin[] = "spiffe://test.custos/admin";
constexpr char kIssuer[] = "spiffe://test.custos/issuer";
constexpr char kOutsider[] = "spiffe://elsewhere/mallory";

using PKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  const int rc = pclose(p);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WritePem(const std::filesystem::path& path, const std::vector<std::string>& ders,
              const char* type = "CERTIFICATE") {
  std::string pem;
  for (const auto& der : ders) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio(bio.get(), type, "", reinterpret_cast<const unsigned char*>(der.data()),
                  static_cast<long>(der.size()));
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    pem.append(data, static_cast<std::size_t>(n));
  }
  std::ofstream(path) << pem;
}

std::string PublicPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PUBKEY(bio.get(), key);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  std::string out;
  for (long i = 0; i < n; ++i)
    out += data[i] == '\n' ? std::string("\\n") : std::string(1, data[i]);
  return out;
}

std::string SignWith(EVP_PKEY* key, const std::string& message) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t len = 0;
  EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                 message.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(message.data()), message.size());
  sig.resize(len);
  return sig;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// The TBS bytes of a DER certificate (first element of the outer SEQUENCE).
std::string TbsOf(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (x == nullptr) return "";
  unsigned char* out = nullptr;
  const int n = i2d_re_X509_tbs(x, &out);
  std::string tbs(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
  OPENSSL_free(out);
  X509_free(x);
  return tbs;
}

class CaCoreTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-cacore-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directory(dir_ / "tokens");
    std::ofstream(dir_ / "softhsm2.conf") << "directories.tokendir = " << (dir_ / "tokens").string()
                                          << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    auto init = pkcs11::InitToken(kModule, "custos-ca-test", pkcs11::SecretBytes("so-pin-1"),
                                  pkcs11::SecretBytes("user-pin-1"));
    ASSERT_TRUE(init.ok()) << init.error().message();
    for (const char* name : {"alice", "bob"}) {
      officers_.emplace(name,
                        PKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free));
    }
    // What custos-init does: the dev hierarchy on the token and in the store.
    {
      auto token = OpenToken();
      auto store = KeyStore::Open((dir_ / "custos.db").string());
      ASSERT_TRUE(store.ok()) << store.error();
      CaBootstrapSpec spec;
      spec.intermediate_crl_urls = {"http://ca.test.custos/dev-root.crl"};
      auto made = BootstrapCaHierarchy(*token, **store, spec);
      ASSERT_TRUE(made.ok()) << made.error();
      boot_ = std::move(made.value());
      // A second run refuses: the names are taken.
      auto again = BootstrapCaHierarchy(*token, **store, spec);
      ASSERT_FALSE(again.ok());
      EXPECT_NE(again.error().find("already exists"), std::string::npos) << again.error();
    }
    OpenCore();
  }

  void TearDown() override {
    core_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<pkcs11::Token> OpenToken() {
    pkcs11::TokenConfig config;
    config.module_path = kModule;
    config.token = "custos-ca-test";
    config.pin = pkcs11::SecretBytes("user-pin-1");
    auto token = pkcs11::Token::Open(std::move(config));
    EXPECT_TRUE(token.ok()) << token.error().message();
    return token.ok() ? std::move(token.value()) : nullptr;
  }

  std::string Policy(const std::string& ca_settings = "") {
    // A policy with CA settings replaces the first one: a higher version.
    std::string text = (ca_settings.empty() ? "version: 1\n" : "version: 2\n") + std::string(R"pb(
                         role { name: "admin" }
                         role { name: "issuer" }
                         binding { principal: "spiffe://test.custos/admin" roles: "admin" }
                         binding { principal: "spiffe://test.custos/issuer" roles: "issuer" }
                         key_rule {
                           name: "admins-manage-keys"
                           roles: "admin"
                           operations: [ CREATE, READ ]
                           keys: "*"
                           usages: "*"
                           algorithms: "*"
                         }
                         admin_rule {
                           name: "admins-ca"
                           roles: "admin"
                           operations: [ MANAGE_CA, REVOKE_CERTIFICATE, READ_CERTIFICATES ]
                         }
                         admin_rule {
                           name: "issuers-read-certs"
                           roles: "issuer"
                           operations: [ READ_CERTIFICATES ]
                         }
                         profile {
                           name: "tls-server"
                           ca: "dev-intermediate"
                           roles: "issuer"
                           key_algorithms: [ "ec-p256", "rsa" ]
                           max_validity: "90d"
                           default_validity: "30d"
                           key_usage: "digitalSignature"
                           ext_key_usage: "serverAuth"
                           san { dns_suffix: ".dev.custos.test" }
                         }
                         profile {
                           name: "sub-ca"
                           ca: "dev-root"
                           roles: "admin"
                           key_algorithms: [ "ec-p256" ]
                           max_validity: "365d"
                           key_usage: [ "keyCertSign", "cRLSign" ]
                           is_ca: true
                           path_len: 0
                           san { min_count: 0 }
                           subject { allowed_from_csr: [ "CN", "O" ] }
                         }
                         quorum_rule {
                           name: "ca-issuance"
                           operation: CERT_ISSUE
                           profiles: [ "sub-ca", "ca:root", "ca:intermediate", "ca:revoke" ]
                           group: "officers"
                           threshold: 2
                         }
                       )pb");
    for (const char* id : {"alice", "bob"}) {
      text += "officer { id: \"" + std::string(id) + "\" name: \"" + id +
              "\" groups: \"officers\" principals: \"spiffe://test.custos/officer/" + id +
              "\" public_key: \"" + PublicPem(officers_.at(id).get()) + "\" }\n";
    }
    return text + ca_settings;
  }

  void OpenCore(const std::string& ca_settings = "") {
    core_.reset();
    auto store = KeyStore::Open((dir_ / "custos.db").string());
    ASSERT_TRUE(store.ok()) << store.error();
    const std::string text = Policy(ca_settings);
    auto parsed = policy::Policy::Parse(text);
    auto* error = std::get_if<policy::ParseError>(&parsed);
    ASSERT_EQ(error, nullptr) << error->ToString("test policy");
    CoreLimits limits;
    limits.quorum_sweep_interval = std::chrono::seconds(0);
    auto core = SigningCore::Create(OpenToken(), std::move(std::get<policy::Policy>(parsed)), text,
                                    std::move(store.value()), limits, logger_);
    ASSERT_TRUE(core.ok()) << core.error();
    core_ = std::move(core.value());
    ASSERT_TRUE(core_->ResumeQuorum().ok());
  }

  v1::Response Call(std::string_view principal, v1::Request req) {
    req.set_id(++next_id_);
    return core_->Handle(principal, "127.0.0.1:5555", req);
  }

  // A CSR made by the openssl command (DER).
  std::string Csr(const std::string& subject, const std::string& sans,
                  const std::string& key = "ec -pkeyopt ec_paramgen_curve:P-256") {
    const auto out = dir_ / ("csr" + std::to_string(++csrs_) + ".der");
    std::string cmd = "openssl req -new -newkey " + key + " -nodes -keyout " +
                      (dir_ / "leaf.key").string() + " -subj '" + subject + "'";
    if (!sans.empty()) cmd += " -addext 'subjectAltName=" + sans + "'";
    cmd += " -outform DER -out " + out.string();
    auto [rc, text] = RunCommand(cmd);
    EXPECT_EQ(rc, 0) << text;
    return ReadFile(out);
  }

  v1::Response Issue(const std::string& profile, const std::string& csr,
                     std::string_view principal = kIssuer, const std::string& renews = "") {
    v1::Request req;
    auto* i = req.mutable_issue_certificate();
    i->set_profile(profile);
    i->set_csr(csr);
    i->set_renews(renews);
    return Call(principal, req);
  }

  v1::Response Vote(const std::string& officer, const v1::PendingRequestInfo& info) {
    policy::ApprovalStatement st;
    st.request_id = info.id();
    st.request_digest = policy::RequestDigest(info.canonical());
    st.decision = policy::ApprovalDecision::kApprove;
    st.officer_id = officer;
    st.time = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    auto text = policy::CanonicalStatement(st);
    EXPECT_TRUE(text.has_value());
    v1::Request req;
    req.mutable_submit_approval()->set_statement(*text);
    req.mutable_submit_approval()->set_signature(SignWith(officers_.at(officer).get(), *text));
    return Call("spiffe://test.custos/officer/" + officer, req);
  }

  // openssl verify of `leaf` under the dev hierarchy; "" when it verifies.
  std::string Verify(const std::string& leaf_der, const std::vector<std::string>& chain,
                     const std::string& extra = "") {
    WritePem(dir_ / "root.pem",
             {std::string(boot_.root.cert_der.begin(), boot_.root.cert_der.end())});
    WritePem(dir_ / "untrusted.pem", chain);
    WritePem(dir_ / "leaf.pem", {leaf_der});
    auto [rc, out] =
        RunCommand("openssl verify -x509_strict -CAfile " + (dir_ / "root.pem").string() +
                   (chain.empty() ? "" : " -untrusted " + (dir_ / "untrusted.pem").string()) + " " +
                   extra + " " + (dir_ / "leaf.pem").string());
    return rc == 0 ? "" : out;
  }

  std::filesystem::path dir_;
  Logger logger_{LogLevel::kWarn};
  std::map<std::string, PKey> officers_;
  CaBootstrapResult boot_;
  std::unique_ptr<SigningCore> core_;
  std::uint64_t next_id_ = 0;
  int csrs_ = 0;
};

TEST_F(CaCoreTest, BootstrappedHierarchyIsListedAndVerifies) {
  v1::Request req;
  req.mutable_list_cas();
  auto resp = Call(kAdmin, req);
  ASSERT_EQ(resp.status().code(), v1::OK) << resp.status().message();
  ASSERT_EQ(resp.list_cas().cas_size(), 2);
  const auto& inter = resp.list_cas().cas(0);
  EXPECT_EQ(inter.name(), "dev-intermediate");
  EXPECT_EQ(inter.key(), "dev-intermediate@1");
  EXPECT_EQ(inter.parent(), "dev-root");
  EXPECT_EQ(inter.path_len(), 0);
  EXPECT_EQ(inter.state(), "active");
  EXPECT_EQ(inter.subject(), "CN=Custos Dev Intermediate,O=Custos Dev");
  ASSERT_EQ(inter.chain_der_size(), 1);
  EXPECT_EQ(Verify(inter.cert_der(), {}), "");
  EXPECT_EQ(inter.serial(), boot_.intermediate.serial);
  // Not for outsiders.
  auto denied = Call(kOutsider, req);
  EXPECT_EQ(denied.status().code(), v1::PERMISSION_DENIED);
}

TEST_F(CaCoreTest, IssuesVerifiableLeafAndRefusesByRule) {
  auto resp = Issue("tls-server", Csr("/CN=api.dev.custos.test", "DNS:api.dev.custos.test"));
  ASSERT_EQ(resp.status().code(), v1::OK) << resp.status().message();
  const auto& cert = resp.issue_certificate();
  EXPECT_EQ(cert.ca(), "dev-intermediate");
  EXPECT_EQ(cert.profile(), "tls-server");
  EXPECT_EQ(cert.requester(), kIssuer);
  EXPECT_EQ(cert.state(), "valid");
  ASSERT_EQ(cert.sans_size(), 1);
  EXPECT_EQ(cert.sans(0), "dns:api.dev.custos.test");
  EXPECT_EQ(cert.serial().size(), 40u);
  ASSERT_EQ(cert.chain_der_size(), 2);  // intermediate, root
  EXPECT_EQ(Verify(cert.cert_der(), {cert.chain_der(0)}, "-purpose sslserver"), "");

  // A SAN outside the profile: the CA core's rule, "rule: message".
  auto bad = Issue("tls-server", Csr("/CN=evil.example.com", "DNS:evil.example.com"));
  EXPECT_EQ(bad.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(bad.status().policy_rule(), "san-dns-suffix");
  EXPECT_EQ(bad.status().message().rfind("san-dns-suffix: ", 0), 0u) << bad.status().message();
  // A key the profile does not allow.
  auto p384 = Issue("tls-server", Csr("/CN=a.dev.custos.test", "DNS:a.dev.custos.test",
                                      "ec -pkeyopt ec_paramgen_curve:P-384"));
  EXPECT_EQ(p384.status().policy_rule(), "key-algorithm") << p384.status().message();
  // A principal without the profile's role.
  auto outsider =
      Issue("tls-server", Csr("/CN=b.dev.custos.test", "DNS:b.dev.custos.test"), kOutsider);
  EXPECT_EQ(outsider.status().code(), v1::PERMISSION_DENIED);
  EXPECT_FALSE(outsider.status().policy_rule().empty());
  auto garbage = Issue("tls-server", "not a csr");
  EXPECT_EQ(garbage.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(garbage.status().policy_rule().rfind("csr-", 0), 0u) << garbage.status().policy_rule();
}

TEST_F(CaCoreTest, RenewalRevocationAndCrl) {
  auto first = Issue("tls-server", Csr("/CN=web.dev.custos.test", "DNS:web.dev.custos.test"));
  ASSERT_EQ(first.status().code(), v1::OK) << first.status().message();
  const std::string old_serial = first.issue_certificate().serial();
  // Renewal by someone else refused; by the requester linked both ways.
  auto foreign = Issue("tls-server", Csr("/CN=web.dev.custos.test", "DNS:web.dev.custos.test"),
                       kAdmin, old_serial);
  EXPECT_NE(foreign.status().code(), v1::OK);
  auto renewed = Issue("tls-server", Csr("/CN=web.dev.custos.test", "DNS:web.dev.custos.test"),
                       kIssuer, old_serial);
  ASSERT_EQ(renewed.status().code(), v1::OK) << renewed.status().message();
  EXPECT_EQ(renewed.issue_certificate().renews(), old_serial);
  v1::Request get;
  get.mutable_get_certificate()->set_serial(old_serial);
  auto old = Call(kIssuer, get);
  ASSERT_EQ(old.status().code(), v1::OK) << old.status().message();
  EXPECT_EQ(old.get_certificate().renewed_by(), renewed.issue_certificate().serial());

  v1::Request crl_req;
  crl_req.mutable_get_crl()->set_ca("dev-intermediate");
  auto crl1 = Call(kOutsider, crl_req);  // any authenticated principal
  ASSERT_EQ(crl1.status().code(), v1::OK) << crl1.status().message();
  EXPECT_EQ(Call(kOutsider, crl_req).get_crl().number(), crl1.get_crl().number());

  v1::Request revoke;
  revoke.mutable_revoke_certificate()->set_serial(old_serial);
  revoke.mutable_revoke_certificate()->set_reason("superseded");
  EXPECT_EQ(Call(kIssuer, revoke).status().code(), v1::PERMISSION_DENIED);
  auto revoked = Call(kAdmin, revoke);
  ASSERT_EQ(revoked.status().code(), v1::OK) << revoked.status().message();
  EXPECT_EQ(revoked.revoke_certificate().state(), "revoked");
  EXPECT_EQ(revoked.revoke_certificate().revocation_reason(), "superseded");
  EXPECT_EQ(Call(kAdmin, revoke).status().code(), v1::FAILED_PRECONDITION);

  auto crl2 = Call(kOutsider, crl_req);
  ASSERT_EQ(crl2.status().code(), v1::OK);
  EXPECT_GT(crl2.get_crl().number(), crl1.get_crl().number());
  const std::string inter_der = first.issue_certificate().chain_der(0);
  WritePem(dir_ / "ca.pem", {inter_der});
  WritePem(dir_ / "crl.pem", {crl2.get_crl().crl_der()}, "X509 CRL");
  auto [rc, out] = RunCommand("openssl crl -noout -text -CAfile " + (dir_ / "ca.pem").string() +
                              " -in " + (dir_ / "crl.pem").string());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify OK"), std::string::npos) << out;
  EXPECT_NE(out.find("Superseded"), std::string::npos) << out;
  // The revoked certificate fails a CRL check; its renewal passes.
  const std::string crl_arg = "-crl_check -CRLfile " + (dir_ / "crl.pem").string();
  const std::string bad = Verify(first.issue_certificate().cert_der(), {inter_der}, crl_arg);
  EXPECT_NE(bad.find("revoked"), std::string::npos) << bad;
  EXPECT_EQ(Verify(renewed.issue_certificate().cert_der(), {inter_der}, crl_arg), "");

  // Expiring filter and the sweeper's re-signing when nextUpdate is near.
  v1::Request list;
  list.mutable_list_certificates()->set_expiring_within_seconds(40 * 86400);
  auto listed = Call(kIssuer, list);
  ASSERT_EQ(listed.status().code(), v1::OK);
  EXPECT_EQ(listed.list_certificates().certificates_size(), 1);  // the valid renewal
  core_->SweepCrls();
  EXPECT_EQ(Call(kOutsider, crl_req).get_crl().number(), crl2.get_crl().number());
}

TEST_F(CaCoreTest, CrlResignedWhenDue) {
  // The start-up sweep signed a first CRL per CA (default 7d validity).
  v1::Request crl_req;
  crl_req.mutable_get_crl()->set_ca("dev-root");
  auto crl1 = Call(kAdmin, crl_req);
  ASSERT_EQ(crl1.status().code(), v1::OK) << crl1.status().message();
  EXPECT_EQ(crl1.get_crl().next_update() - crl1.get_crl().this_update(), 7 * 86400);
  OpenCore("ca_settings { crl_validity: \"2h\" crl_resign_before: \"1h\" }");
  core_->SweepCrls();
  EXPECT_EQ(Call(kAdmin, crl_req).get_crl().number(), crl1.get_crl().number());
  // Within crl_resign_before of nextUpdate: re-signed with a higher number.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "custos.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE crls SET next_update = this_update + 1800", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  core_->SweepCrls();
  auto crl2 = Call(kAdmin, crl_req);
  EXPECT_EQ(crl2.get_crl().number(), crl1.get_crl().number() + 1);
  EXPECT_EQ(crl2.get_crl().next_update() - crl2.get_crl().this_update(), 7200);
  WritePem(dir_ / "ca.pem", {std::string(boot_.root.cert_der.begin(), boot_.root.cert_der.end())});
  WritePem(dir_ / "crl.pem", {crl2.get_crl().crl_der()}, "X509 CRL");
  auto [rc, out] = RunCommand("openssl crl -noout -text -CAfile " + (dir_ / "ca.pem").string() +
                              " -in " + (dir_ / "crl.pem").string());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify OK"), std::string::npos) << out;
}

TEST_F(CaCoreTest, SubCaIssuanceWaitsForQuorumAndSignsTheApprovedTbs) {
  auto pending = Issue("sub-ca", Csr("/CN=Team CA/O=Custos Dev", ""), kAdmin);
  ASSERT_EQ(pending.status().code(), v1::PENDING_APPROVAL) << pending.status().message();
  const v1::PendingRequestInfo& info = pending.pending();
  EXPECT_EQ(info.operation(), "issue-certificate");
  EXPECT_EQ(info.key(), "profile:sub-ca");
  const std::string payload = info.payload();
  ASSERT_FALSE(payload.empty());
  const std::string canonical = info.canonical();
  EXPECT_NE(canonical.find("payload-sha256: " + Sha256Hex(payload)), std::string::npos)
      << canonical;
  EXPECT_NE(canonical.find("basic-constraints: CA:TRUE, pathlen:0"), std::string::npos);
  EXPECT_NE(canonical.find("subject: O=Custos Dev,CN=Team CA"), std::string::npos) << canonical;
  ASSERT_EQ(Vote("alice", info).status().code(), v1::OK);
  auto done = Vote("bob", info);
  ASSERT_EQ(done.status().code(), v1::OK) << done.status().message();
  v1::Request get;
  get.mutable_get_request()->set_id(info.id());
  auto got = Call(kAdmin, get);
  ASSERT_EQ(got.pending().state(), "executed") << got.pending().state_reason();
  const auto& cert = got.pending().result().issue_certificate();
  EXPECT_EQ(TbsOf(cert.cert_der()), payload);  // exactly the approved bytes
  EXPECT_EQ(Verify(cert.cert_der(), {}), "");
}

TEST_F(CaCoreTest, CreateCaAndCaRevocationNeedQuorum) {
  v1::Request key;
  key.mutable_create_key()->set_name("team-ca");
  key.mutable_create_key()->set_key_type("ec-p256");
  key.mutable_create_key()->set_usage("ca");
  ASSERT_EQ(Call(kAdmin, key).status().code(), v1::OK);
  v1::Request create;
  auto* c = create.mutable_create_ca();
  c->set_name("team");
  c->set_key("team-ca");
  c->set_subject("CN=Team Intermediate,O=Custos Dev");
  c->set_validity_seconds(86400 * 30);
  c->set_parent("dev-root");
  c->set_path_len(0);
  c->set_has_path_len(true);
  EXPECT_EQ(Call(kIssuer, create).status().code(), v1::PERMISSION_DENIED);
  auto pending = Call(kAdmin, create);
  ASSERT_EQ(pending.status().code(), v1::PENDING_APPROVAL) << pending.status().message();
  EXPECT_EQ(pending.pending().operation(), "create-ca");
  ASSERT_EQ(Vote("alice", pending.pending()).status().code(), v1::OK);
  ASSERT_EQ(Vote("bob", pending.pending()).status().code(), v1::OK);
  v1::Request get_ca;
  get_ca.mutable_get_ca()->set_name("team");
  auto ca = Call(kAdmin, get_ca);
  ASSERT_EQ(ca.status().code(), v1::OK) << ca.status().message();
  EXPECT_EQ(ca.get_ca().state(), "active");
  EXPECT_EQ(TbsOf(ca.get_ca().cert_der()), pending.pending().payload());
  EXPECT_EQ(Verify(ca.get_ca().cert_der(), {}), "");

  // Revoking it (a CA's certificate): quorum "ca:revoke".
  v1::Request revoke;
  revoke.mutable_revoke_certificate()->set_serial(ca.get_ca().serial());
  revoke.mutable_revoke_certificate()->set_reason("cessationOfOperation");
  auto rp = Call(kAdmin, revoke);
  ASSERT_EQ(rp.status().code(), v1::PENDING_APPROVAL) << rp.status().message();
  // Officers are shown the very certificate that is revoked.
  EXPECT_EQ(rp.pending().payload(), ca.get_ca().cert_der());
  EXPECT_NE(rp.pending().canonical().find("payload-sha256: "), std::string::npos);
  ASSERT_EQ(Vote("alice", rp.pending()).status().code(), v1::OK);
  ASSERT_EQ(Vote("bob", rp.pending()).status().code(), v1::OK);
  EXPECT_EQ(Call(kAdmin, get_ca).get_ca().state(), "revoked");
  v1::Request crl_req;
  crl_req.mutable_get_crl()->set_ca("dev-root");
  auto crl = Call(kAdmin, crl_req);
  ASSERT_EQ(crl.status().code(), v1::OK);
  WritePem(dir_ / "crl.pem", {crl.get_crl().crl_der()}, "X509 CRL");
  const std::string bad =
      Verify(ca.get_ca().cert_der(), {}, "-crl_check -CRLfile " + (dir_ / "crl.pem").string());
  EXPECT_NE(bad.find("revoked"), std::string::npos) << bad;
}

}  // namespace
}  // namespace custos::service
