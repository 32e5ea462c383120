// custos-init: bootstrap a Custos deployment.
//
//   custos-init dev --dir DIR [--port N] [--module PATH]
//
// makes a complete local deployment for development, demos and tests: a
// SoftHSM token under DIR, a dev PKI for mutual TLS, a dev CA hierarchy
// (dev-root, dev-intermediate; keys on the token, certificates in DIR/ca/),
// officer key pairs, a least-privilege starter policy with 2-of-3 officer
// quorum rules and certificate profiles, DIR/custosd.conf and one client
// config per client and officer. It refuses to touch a DIR that already has
// content.
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "custos/pkcs11/secret.h"
#include "custos/pkcs11/token.h"
#include "custos/service/key_name.h"
#include "custos/service/key_store.h"
#include "dev_ca.h"
#include "dev_pki.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace custos::init {
namespace {

constexpr char kDefaultModule[] = "/usr/lib/softhsm/libsofthsm2.so";
constexpr char kTokenLabel[] = "custos-dev";
constexpr char kTrustDomain[] = "spiffe://dev.custos.test";

// Writes a new file with the given mode; never overwrites.
void WriteNewFile(const fs::path& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
  }
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
  }
}

void MakeDir(const fs::path& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create directory " + path.string() + ": " +
                             std::strerror(errno));
  }
}

// A PIN of 32 hex characters from the CSPRNG, held only in SecretBytes.
pkcs11::SecretBytes RandomPin() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("RAND_bytes failed");
  static constexpr char kHex[] = "0123456789abcdef";
  char text[32];
  for (std::size_t i = 0; i < sizeof raw; ++i) {
    text[2 * i] = kHex[raw[i] >> 4];
    text[2 * i + 1] = kHex[raw[i] & 0xf];
  }
  pkcs11::SecretBytes pin(std::string_view(text, sizeof text));
  OPENSSL_cleanse(raw, sizeof raw);
  OPENSSL_cleanse(text, sizeof text);
  return pin;
}

std::string PinText(const pkcs11::SecretBytes& pin) {
  return std::string(reinterpret_cast<const char*>(pin.data()), pin.size());
}

// One officer of the dev deployment: id, display name and the PEM public key
// of the approval key custos-init generated for it.
struct DevOfficer {
  std::string id;
  std::string name;
  std::string public_key_pem;
};

// A Protobuf text-format string literal for `text`, split after each "\n"
// into adjacent literals (text format concatenates them), indented by
// `indent`. PEM holds only base64, '-' and ' ', so no other escaping is due.
std::string TextLiteralLines(const std::string& text, const std::string& indent) {
  std::string out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    const std::size_t end = nl == std::string::npos ? text.size() : nl;
    out +=
        indent + "\"" + text.substr(at, end - at) + (nl == std::string::npos ? "" : "\\n") + "\"\n";
    at = end + 1;
  }
  return out;
}

// The CA back-end part of the starter policy: the profiles tests, docs and
// demos rely on (docs/ca.md) and the CRL settings. The dev CA hierarchy
// (dev-root, dev-intermediate) is made by RunDev.
std::string CertificateProfiles() {
  const std::string td = kTrustDomain;
  return "\n# Certificate profiles (docs/ca.md): which CA signs, who may ask, and what\n"
         "# a certificate may contain. Custos builds every certificate from its\n"
         "# profile: CSR extensions are never copied unless csr_extension_allowlist\n"
         "# names them, and anything the profile does not allow is refused with the\n"
         "# name of the rule.\n\n"
         "# TLS server certificates for names under .dev.custos.test, for issuers\n"
         "# such as an ACME server.\n"
         "profile {\n"
         "  name: \"tls-server\"\n"
         "  ca: \"dev-intermediate\"\n"
         "  roles: \"issuer\"\n"
         "  key_algorithms: [\"ec-p256\", \"ec-p384\", \"rsa\"]\n"
         "  rsa_min_bits: 2048\n"
         "  max_validity: \"90d\"\n"
         "  default_validity: \"30d\"\n"
         "  key_usage: \"digitalSignature\"\n"
         "  ext_key_usage: \"serverAuth\"\n"
         "  san { dns_suffix: \".dev.custos.test\" min_count: 1 max_count: 10 }\n"
         "  subject {\n"
         "    mode: FROM_CSR\n"
         "    allowed_from_csr: \"CN\"\n"
         "    fixed { type: \"O\" value: \"Custos Dev\" }\n"
         "  }\n"
         "  crl_url: \"http://ca.dev.custos.test/dev-intermediate.crl\"\n"
         "}\n\n"
         "# SPIFFE X.509-SVIDs: exactly one URI SAN in the trust domain " +
         td +
         ",\n"
         "# empty subject (the SAN extension is then critical), short-lived.\n"
         "profile {\n"
         "  name: \"spiffe-svid\"\n"
         "  ca: \"dev-intermediate\"\n"
         "  roles: \"issuer\"\n"
         "  key_algorithms: [\"ec-p256\", \"ec-p384\", \"rsa\"]\n"
         "  rsa_min_bits: 2048\n"
         "  max_validity: \"24h\"\n"
         "  default_validity: \"1h\"\n"
         "  key_usage: \"digitalSignature\"\n"
         "  ext_key_usage: [\"clientAuth\", \"serverAuth\"]\n"
         "  san {\n"
         "    uri_prefix: \"" +
         td +
         "/\"\n"
         "    min_count: 1\n"
         "    max_count: 1\n"
         "    max_uri_count: 1\n"
         "  }\n"
         "  subject { mode: EMPTY }\n"
         "  crl_url: \"http://ca.dev.custos.test/dev-intermediate.crl\"\n"
         "}\n\n"
         "# Subordinate CAs under dev-root (CA:TRUE, pathLenConstraint 0: they issue\n"
         "# only leaves). Always under quorum (rule ca-issuance).\n"
         "profile {\n"
         "  name: \"sub-ca\"\n"
         "  ca: \"dev-root\"\n"
         "  roles: \"admin\"\n"
         "  key_algorithms: [\"ec-p256\", \"ec-p384\", \"rsa\"]\n"
         "  rsa_min_bits: 3072\n"
         "  max_validity: \"5y\"\n"
         "  default_validity: \"3y\"\n"
         "  key_usage: [\"digitalSignature\", \"keyCertSign\", \"cRLSign\"]\n"
         "  is_ca: true\n"
         "  path_len: 0\n"
         "  san { min_count: 0 max_count: 0 }\n"
         "  subject {\n"
         "    mode: FROM_CSR\n"
         "    allowed_from_csr: [\"CN\", \"OU\"]\n"
         "    fixed { type: \"O\" value: \"Custos Dev\" }\n"
         "  }\n"
         "  crl_url: \"http://ca.dev.custos.test/dev-root.crl\"\n"
         "}\n\n"
         "# Code-signing certificates for admins (release keys; docs/ca.md).\n"
         "profile {\n"
         "  name: \"code-signing\"\n"
         "  ca: \"dev-intermediate\"\n"
         "  roles: \"admin\"\n"
         "  key_algorithms: [\"ec-p256\", \"ec-p384\", \"rsa\"]\n"
         "  rsa_min_bits: 3072\n"
         "  max_validity: \"365d\"\n"
         "  default_validity: \"365d\"\n"
         "  key_usage: \"digitalSignature\"\n"
         "  # emailProtection too: `openssl cms -verify` checks the S/MIME signing\n"
         "  # purpose by default and refuses a signer without it (docs/codesigning.md).\n"
         "  ext_key_usage: [\"codeSigning\", \"emailProtection\"]\n"
         "  san { email_domain: \"dev.custos.test\" min_count: 0 max_count: 1 }\n"
         "  subject {\n"
         "    mode: FROM_CSR\n"
         "    allowed_from_csr: \"OU\"\n"
         "    fixed { type: \"O\" value: \"Custos Dev\" }\n"
         "  }\n"
         "  crl_url: \"http://ca.dev.custos.test/dev-intermediate.crl\"\n"
         "}\n\n"
         "# SSH certificate profiles (docs/codesigning.md \"SSH\"): OpenSSH certificates\n"
         "# signed by ssh-ca keys (creating one needs the officers' quorum). Refusals\n"
         "# name the rule, e.g. ssh-profile:ssh-user:max_validity.\n"
         "ssh_profile {\n"
         "  name: \"ssh-user\"\n"
         "  keys: \"*\"\n"
         "  roles: [\"issuer\", \"admin\"]\n"
         "  cert_types: USER\n"
         "  principals: \"[a-z]*\"\n"
         "  max_principals: 8\n"
         "  max_validity: \"24h\"\n"
         "  default_validity: \"8h\"\n"
         "  allowed_extensions: [\"permit-pty\", \"permit-port-forwarding\", "
         "\"permit-agent-forwarding\", \"permit-X11-forwarding\", \"permit-user-rc\"]\n"
         "  default_extensions: [\"permit-pty\", \"permit-port-forwarding\", "
         "\"permit-agent-forwarding\", \"permit-X11-forwarding\", \"permit-user-rc\"]\n"
         "  allow_force_command: true\n"
         "  allow_source_address: true\n"
         "}\n\n"
         "ssh_profile {\n"
         "  name: \"ssh-host\"\n"
         "  keys: \"*\"\n"
         "  roles: \"admin\"\n"
         "  cert_types: HOST\n"
         "  principals: [\"*.dev.custos.test\", \"localhost\"]\n"
         "  max_validity: \"365d\"\n"
         "  default_validity: \"90d\"\n"
         "}\n\n"
         "# CRLs are valid for 7 days; custosd re-signs each a day before it expires.\n"
         "ca_settings {\n"
         "  crl_validity: \"7d\"\n"
         "  crl_resign_before: \"1d\"\n"
         "}\n";
}

std::string StarterPolicy(const std::vector<DevOfficer>& officers) {
  const std::string td = kTrustDomain;
  std::string text =
      "# Custos starter policy written by custos-init dev. Schema: docs/policy.md;\n"
      "# quorum: docs/quorum.md. Anything not allowed here is denied.\n"
      "#\n"
      "# Least privilege: admin manages keys and CAs and proposes policy changes,\n"
      "# builder signs with code-signing keys, issuer issues certificates under the\n"
      "# tls-server and spiffe-svid profiles (docs/ca.md), officers vote on pending\n"
      "# requests. Sensitive operations need 2 of the 3 dev officers (alice, bob,\n"
      "# carol): creating a ca or ssh-ca key, destroying any key, changing policy or\n"
      "# officers, making a CA certificate (roots, intermediates, the sub-ca profile),\n"
      "# revoking a CA certificate, and signing with any key whose name starts with\n"
      "# release-.\n"
      "#\n"
      "# This policy has a POLICY_CHANGE quorum rule, so once custosd has imported\n"
      "# it, edits to this file are ignored: change policy with\n"
      "#   custos policy propose FILE   (version must be higher; officers approve)\n"
      "version: 1\n\n"
      "role { name: \"admin\" description: \"Key administrators\" }\n"
      "role { name: \"builder\" description: \"Build pipelines that sign artifacts\" }\n"
      "role { name: \"issuer\" description: \"Certificate issuers (ACME, SPIFFE, enrolment front "
      "ends)\" }\n"
      "role { name: \"officer\" description: \"Security officers who vote on pending requests\" "
      "}\n\n";
  for (const char* role : {"admin", "builder", "issuer"}) {
    text += "binding { principal: \"" + td + "/" + role + "\" roles: \"" + role + "\" }\n";
  }
  text +=
      "\n# Officers connect with their own TLS certificates to list, show and vote\n"
      "# on requests; the role has no key rules, so they cannot use keys.\n"
      "binding { principal: \"" +
      td + "/officer/*\" roles: \"officer\" }\n";
  text +=
      "\n# Admins may do every key operation; quorum rules below still hold some of\n"
      "# them (ca/ssh-ca key creation, destruction) until officers approve.\n"
      "key_rule {\n"
      "  name: \"admins-manage-keys\"\n"
      "  roles: \"admin\"\n"
      "  operations: [CREATE, READ, ROTATE, DISABLE, ENABLE, DESTROY, MARK_COMPROMISED]\n"
      "  keys: \"*\"\n"
      "  usages: \"*\"\n"
      "  algorithms: \"*\"\n"
      "}\n\n"
      "# Builders sign with code-signing keys (raw, CMS and SSHSIG signatures, git\n"
      "# commits through custos -Y sign); release-* keys only with quorum.\n"
      "key_rule {\n"
      "  name: \"builders-sign-code\"\n"
      "  roles: \"builder\"\n"
      "  operations: [SIGN, READ]\n"
      "  keys: \"*\"\n"
      "  usages: \"code-signing\"\n"
      "  algorithms: \"*\"\n"
      "}\n\n"
      "# Issuers and builders may read ssh-ca public keys (custos ssh ca-pubkey: the\n"
      "# line for sshd's TrustedUserCAKeys and @cert-authority); what an ssh-ca key\n"
      "# signs is decided by the ssh_profile rules below.\n"
      "key_rule {\n"
      "  name: \"read-ssh-ca-keys\"\n"
      "  roles: [\"issuer\", \"builder\"]\n"
      "  operations: [READ]\n"
      "  keys: \"*\"\n"
      "  usages: \"ssh-ca\"\n"
      "  algorithms: \"*\"\n"
      "}\n\n"
      "# Every client may fetch the audit key's public key (custos keys pubkey audit)\n"
      "# to verify the audit log's checkpoints (docs/audit.md).\n"
      "key_rule {\n"
      "  name: \"everyone-reads-audit-key\"\n"
      "  roles: [\"admin\", \"builder\", \"issuer\"]\n"
      "  operations: [READ]\n"
      "  keys: \"audit\"\n"
      "  usages: \"audit\"\n"
      "  algorithms: \"*\"\n"
      "}\n\n"
      "# Admins may read the active policy (custos policy show) and propose a new\n"
      "# one (custos policy propose); the change itself needs the officers' quorum.\n"
      "admin_rule {\n"
      "  name: \"admins-manage-policy\"\n"
      "  roles: \"admin\"\n"
      "  operations: [READ_POLICY, PROPOSE_POLICY]\n"
      "}\n\n"
      "# Admins manage CAs (custos ca create-root|create-intermediate|csr|import-cert;\n"
      "# making a CA certificate needs the officers' quorum), revoke certificates\n"
      "# (custos cert revoke) and read the inventory (custos cert list|show,\n"
      "# custos ca list|show|chain). Any authenticated client may fetch CRLs.\n"
      "admin_rule {\n"
      "  name: \"admins-manage-cas\"\n"
      "  roles: \"admin\"\n"
      "  operations: [MANAGE_CA, REVOKE_CERTIFICATE, READ_CERTIFICATES]\n"
      "}\n\n"
      "# Issuers read the inventory and the CA chains they hand out.\n"
      "admin_rule {\n"
      "  name: \"issuers-read-certs\"\n"
      "  roles: \"issuer\"\n"
      "  operations: [READ_CERTIFICATES]\n"
      "}\n\n"
      "# The security officers. Each approval is a signature by the officer's own\n"
      "# key (DIR/officers/<id>.key here; a smart card in production) over the\n"
      "# statement of docs/quorum.md; custosd verifies it with the public key below.\n";
  for (const DevOfficer& o : officers) {
    text += "officer {\n  id: \"" + o.id + "\"\n  name: \"" + o.name +
            "\"\n  groups: \"officers\"\n  principals: \"" + td + "/officer/" + o.id +
            "\"\n  public_key:\n" + TextLiteralLines(o.public_key_pem, "    ") + "}\n";
  }
  text +=
      "\n# How long a pending request waits for approvals (a rule may set its own\n"
      "# expiry_seconds), and how far an approval's time may be from custosd's clock.\n"
      "quorum_settings {\n"
      "  default_expiry_seconds: 86400\n"
      "  max_statement_skew_seconds: 300\n"
      "}\n\n"
      "# Quorum rules: 2 approvals from group \"officers\"; a single denial by an\n"
      "# officer of the group rejects the request (deny_rejects).\n\n"
      "# A CA key (usage ca or ssh-ca) is generated at once but stays\n"
      "# pre-activation until two officers approve; denied or expired, it is destroyed.\n"
      "# Rotating such a key and enabling a pre-activation version count as creation.\n"
      "quorum_rule {\n"
      "  name: \"ca-key-creation\"\n"
      "  operation: KEY_CREATE\n"
      "  keys: \"*\"\n"
      "  usages: [\"ca\", \"ssh-ca\"]\n"
      "  group: \"officers\"\n"
      "  threshold: 2\n"
      "  deny_rejects: true\n"
      "}\n\n"
      "# Destroying any version of any key.\n"
      "quorum_rule {\n"
      "  name: \"key-destruction\"\n"
      "  operation: KEY_DESTROY\n"
      "  keys: \"*\"\n"
      "  usages: \"*\"\n"
      "  group: \"officers\"\n"
      "  threshold: 2\n"
      "  deny_rejects: true\n"
      "}\n\n"
      "# Any change of the active policy (custos policy propose).\n"
      "quorum_rule {\n"
      "  name: \"policy-change\"\n"
      "  operation: POLICY_CHANGE\n"
      "  group: \"officers\"\n"
      "  threshold: 2\n"
      "  deny_rejects: true\n"
      "}\n\n"
      "# A policy change that adds, removes or alters an officer (id, name, groups,\n"
      "# principals or key) needs this rule as well as policy-change.\n"
      "quorum_rule {\n"
      "  name: \"officer-change\"\n"
      "  operation: OFFICER_CHANGE\n"
      "  group: \"officers\"\n"
      "  threshold: 2\n"
      "  deny_rejects: true\n"
      "}\n\n"
      "# Making a CA certificate: a sub-CA under the sub-ca profile, a root or an\n"
      "# intermediate (custos ca create-root|create-intermediate: profiles ca:root,\n"
      "# ca:intermediate), and revoking a CA certificate (ca:revoke); in patterns\n"
      "# '?' stands for the ':'. Leaf profiles (tls-server, spiffe-svid,\n"
      "# code-signing) issue at once.\n"
      "quorum_rule {\n"
      "  name: \"ca-issuance\"\n"
      "  operation: CERT_ISSUE\n"
      "  profiles: [\"sub-ca\", \"ca:root\", \"ca:intermediate\", \"ca:revoke\"]\n"
      "  group: \"officers\"\n"
      "  threshold: 2\n"
      "  deny_rejects: true\n"
      "}\n\n"
      "# Signing with a release-* key: the signature is made and released only\n"
      "# after two officers approved exactly the digest the builder sent.\n"
      "quorum_rule {\n"
      "  name: \"release-signing\"\n"
      "  operation: SIGN\n"
      "  keys: \"release-*\"\n"
      "  usages: \"*\"\n"
      "  group: \"officers\"\n"
      "  threshold: 2\n"
      "  deny_rejects: true\n"
      "}\n";
  text += CertificateProfiles();
  return text;
}

struct Layout {
  fs::path dir;
  int port = 7443;
  std::string module;
};

std::string DaemonConfig(const Layout& l) {
  const std::string d = l.dir.string();
  return "# custosd configuration written by custos-init dev. Every key is also a flag:\n"
         "# custosd --config " +
         d + "/custosd.conf --limits.max-connections 100\n\n" +
         "[server]\n"
         "listen = 127.0.0.1:" +
         std::to_string(l.port) +
         "\n"
         "state-dir = " +
         d +
         "/state\n"
         "policy = " +
         d +
         "/policy.txtpb\n\n"
         "[tls]\n"
         "cert = " +
         d +
         "/pki/server.crt\n"
         "key = " +
         d +
         "/pki/server.key\n"
         "client-ca = " +
         d +
         "/pki/ca.crt\n\n"
         "[hsm]\n"
         "module = " +
         l.module +
         "\n"
         "token = pkcs11:token=" +
         kTokenLabel +
         "\n"
         "pin-file = " +
         d +
         "/secrets/user.pin\n"
         "module-env = SOFTHSM2_CONF=" +
         d + "/softhsm2.conf\n";
}

std::string ClientConfig(const Layout& l, const std::string& cert_base) {
  const std::string d = l.dir.string();
  return "# custos client configuration written by custos-init dev.\n"
         "server = 127.0.0.1:" +
         std::to_string(l.port) + "\ncert = " + cert_base + ".crt\nkey = " + cert_base +
         ".key\nca = " + d + "/pki/ca.crt\n";
}

LeafSpec ClientSpec(const std::string& common_name, const std::string& uri) {
  LeafSpec spec;
  spec.common_name = common_name;
  spec.uri_sans = {uri};
  spec.client_auth = true;
  return spec;
}

// PEM of a DER certificate.
std::string DerToPem(const std::vector<std::uint8_t>& der) {
  const unsigned char* p = der.data();
  UniqueX509 cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())), X509_free);
  if (cert == nullptr) throw std::runtime_error("a CA certificate does not parse");
  return CertToPem(cert.get());
}

void WriteIssued(const Issued& issued, const fs::path& base) {
  WriteNewFile(base.string() + ".crt", CertToPem(issued.cert.get()), 0644);
  WriteNewFile(base.string() + ".key", KeyToPem(issued.key.get()), 0600);
}

int RunDev(const Layout& l) {
  std::error_code ec;
  if (fs::exists(l.dir, ec) && !fs::is_empty(l.dir, ec)) {
    std::cerr << "custos-init: " << l.dir.string()
              << " already exists and is not empty; refusing to overwrite a deployment "
                 "(choose another --dir or remove it)\n";
    return 2;
  }
  MakeDir(l.dir);
  for (const char* sub : {"tokens", "secrets", "pki", "clients", "officers", "state", "ca"}) {
    MakeDir(l.dir / sub);
  }

  // SoftHSM token.
  const fs::path softhsm_conf = l.dir / "softhsm2.conf";
  WriteNewFile(softhsm_conf,
               "# SoftHSM configuration for this Custos dev deployment.\n"
               "directories.tokendir = " +
                   (l.dir / "tokens").string() +
                   "\n"
                   "objectstore.backend = file\n"
                   "log.level = ERROR\n"
                   "slots.removable = false\n",
               0600);
  ::setenv("SOFTHSM2_CONF", softhsm_conf.c_str(), 1);
  pkcs11::SecretBytes user_pin = RandomPin();
  pkcs11::SecretBytes so_pin = RandomPin();
  {
    std::string text = PinText(user_pin);
    WriteNewFile(l.dir / "secrets/user.pin", text + "\n", 0600);
    OPENSSL_cleanse(text.data(), text.size());
    text = PinText(so_pin);
    WriteNewFile(l.dir / "secrets/so.pin", text + "\n", 0600);
    OPENSSL_cleanse(text.data(), text.size());
  }
  if (auto st = pkcs11::InitToken(l.module, kTokenLabel, so_pin, user_pin); !st.ok()) {
    std::cerr << "custos-init: cannot initialise the SoftHSM token: " << st.error().message()
              << "\n";
    return 1;
  }

  // The audit key (usage audit): custosd signs audit checkpoints with it in
  // the token. It is recorded in the key store like any key, so that
  // `custos keys pubkey audit` serves its public key.
  {
    pkcs11::TokenConfig tc;
    tc.module_path = l.module;
    tc.token = kTokenLabel;
    tc.pin = pkcs11::SecretBytes(PinText(user_pin));
    auto token = pkcs11::Token::Open(std::move(tc));
    if (!token.ok()) {
      std::cerr << "custos-init: cannot open the new token: " << token.error().message() << "\n";
      return 1;
    }
    const std::string label = service::TokenLabel("audit", 1);
    auto ref = (*token)->GenerateKeyPair(pkcs11::KeyType::kEcP256, label);
    if (!ref.ok()) {
      std::cerr << "custos-init: cannot generate the audit key: " << ref.error().message() << "\n";
      return 1;
    }
    auto store = service::KeyStore::Open((l.dir / "state/custos.db").string());
    if (!store) {
      std::cerr << "custos-init: " << store.error() << "\n";
      return 1;
    }
    const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    service::KeyRecord rec;
    rec.name = "audit";
    rec.key_type = "ec-p256";
    rec.usage = "audit";
    rec.active_version = 1;
    rec.created_at = now;
    service::KeyVersionRecord vr;
    vr.version = 1;
    vr.state = service::KeyState::kActive;
    vr.created_at = now;
    vr.token_label = label;
    vr.token_id = ref->id;
    vr.spki_der = ref->spki_der;
    rec.versions.push_back(std::move(vr));
    auto inserted = (*store)->InsertKey(rec);
    if (!inserted) {
      std::cerr << "custos-init: cannot record the audit key: " << inserted.error() << "\n";
      return 1;
    }

    // The dev CA hierarchy (docs/ca.md), signed inside the token, recorded
    // in the state store and as the first records of the audit log. The
    // certificates are also written to DIR/ca/ for openssl and friends.
    const DevCaHierarchy cas =
        MakeDevCaHierarchy(**token, **store, (l.dir / "state/audit.log").string());
    WriteNewFile(l.dir / "ca/dev-root.crt", DerToPem(cas.root_der), 0644);
    WriteNewFile(l.dir / "ca/dev-intermediate.crt", DerToPem(cas.intermediate_der), 0644);
  }

  // Dev PKI for mutual TLS.
  Issued ca = MakeCa("Custos Dev CA", 3650);
  WriteIssued(ca, l.dir / "pki/ca");
  LeafSpec server_spec;
  server_spec.common_name = "custosd";
  server_spec.dns_sans = {"localhost"};
  server_spec.ip_sans = {"127.0.0.1", "::1"};
  server_spec.server_auth = true;
  server_spec.days = 825;
  Issued server = MakeLeaf(ca, server_spec);
  WriteIssued(server, l.dir / "pki/server");

  for (const char* client : {"builder", "issuer", "admin"}) {
    Issued cert = MakeLeaf(ca, ClientSpec(client, std::string(kTrustDomain) + "/" + client));
    const fs::path base = l.dir / "clients" / client;
    WriteIssued(cert, base);
    WriteNewFile(base.string() + ".conf", ClientConfig(l, base.string()), 0644);
  }

  // Officers: an approval key pair each (used by custos-officer to sign
  // approval statements), registered in the policy, and a TLS client
  // certificate to reach custosd. Their client config names the approval key.
  std::vector<DevOfficer> officers;
  for (const char* officer : {"alice", "bob", "carol"}) {
    const fs::path base = l.dir / "officers" / officer;
    UniquePkey approval = NewP256Key();
    const std::string public_pem = PublicKeyToPem(approval.get());
    WriteNewFile(base.string() + ".key", KeyToPem(approval.get()), 0600);
    WriteNewFile(base.string() + ".pub", public_pem, 0644);
    Issued tls =
        MakeLeaf(ca, ClientSpec(officer, std::string(kTrustDomain) + "/officer/" + officer));
    WriteIssued(tls, base.string() + "-tls");
    WriteNewFile(base.string() + ".conf",
                 ClientConfig(l, base.string() + "-tls") +
                     "# The officer's approval key (custos-officer signs statements with it).\n"
                     "officer-id = " +
                     officer + "\nofficer-key = " + base.string() + ".key\n",
                 0644);
    std::string name = officer;
    name[0] = static_cast<char>(name[0] - 'a' + 'A');
    officers.push_back(DevOfficer{officer, name + " (dev officer)", public_pem});
  }

  WriteNewFile(l.dir / "policy.txtpb", StarterPolicy(officers), 0644);
  WriteNewFile(l.dir / "custosd.conf", DaemonConfig(l), 0600);

  const std::string d = l.dir.string();
  const std::string admin = "  custos --config " + d + "/clients/admin.conf ";
  const std::string builder = "  custos --config " + d + "/clients/builder.conf ";
  const std::string issuer = "  custos --config " + d + "/clients/issuer.conf ";
  std::cout << "custos-init: dev deployment ready in " << d << "\n\n"
            << "Start the daemon:\n"
            << "  custosd --config " << d << "/custosd.conf\n\n"
            << "Then, from another terminal, create a key as admin and sign as builder:\n"
            << admin << "keys create demo --type ec-p256 --usage code-signing\n"
            << builder << "sign --key demo --in FILE --out FILE.sig\n"
            << builder << "verify --key demo --in FILE --sig FILE.sig\n\n"
            << "Quorum: signing with a release-* key needs 2 of the officers alice, bob, carol\n"
            << "(docs/quorum.md). sign answers with a pending request id (exit code 6):\n"
            << admin << "keys create release-demo --type ec-p256 --usage code-signing\n"
            << builder << "sign --key release-demo --in FILE --out FILE.sig\n"
            << "  custos-officer --config " << d << "/officers/alice.conf show ID\n"
            << "  custos-officer --config " << d << "/officers/alice.conf approve ID\n"
            << "  custos-officer --config " << d << "/officers/bob.conf approve ID\n"
            << builder << "request wait ID --out FILE.sig\n"
            << builder << "verify --key release-demo --in FILE --sig FILE.sig\n\n"
            << "CA: dev-root and dev-intermediate are on the token (certificates in " << d
            << "/ca/).\n"
            << "Issue a TLS server certificate under profile tls-server as issuer "
               "(docs/ca.md):\n"
            << "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
               "www.key -subj /CN=www.dev.custos.test -addext "
               "subjectAltName=DNS:www.dev.custos.test -out www.csr\n"
            << issuer
            << "cert issue --profile tls-server --csr www.csr --out www.crt --chain "
               "www-chain.pem\n"
            << "  openssl verify -CAfile " << d
            << "/ca/dev-root.crt -untrusted www-chain.pem www.crt\n"
            << admin << "cert list\n"
            << admin << "crl --ca dev-intermediate --out dev-intermediate.crl\n\n"
            << "Inspect the token (private keys are sensitive, not extractable):\n"
            << "  SOFTHSM2_CONF=" << d << "/softhsm2.conf pkcs11-tool --module " << l.module
            << " --token-label " << kTokenLabel << " --login --pin \"$(cat " << d
            << "/secrets/user.pin)\" --list-objects\n";
  return 0;
}

}  // namespace
}  // namespace custos::init

int main(int argc, char** argv) {
  using namespace custos::init;
  umask(077);
  po::options_description opts("custos-init dev options");
  std::string dir;
  Layout layout;
  opts.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>(&dir), "directory for the new deployment (must be empty)")(
      "port", po::value<int>(&layout.port)->default_value(7443),
      "TCP port custosd listens on (127.0.0.1)")(
      "module", po::value<std::string>(&layout.module)->default_value(kDefaultModule),
      "PKCS#11 module of SoftHSMv2");
  const char* usage =
      "usage: custos-init dev --dir DIR [--port N] [--module PATH]\n\n"
      "Makes a complete local Custos deployment for development, demos and tests.\n\n";
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << usage << opts;
    return argc < 2 ? 2 : 0;
  }
  if (std::string(argv[1]) != "dev") {
    std::cerr << "custos-init: unknown mode \"" << argv[1]
              << "\" (only \"dev\" exists; production deployments are initialised under "
                 "quorum)\n";
    return 2;
  }
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc - 1, argv + 1).options(opts).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "custos-init: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << usage << opts;
    return 0;
  }
  if (dir.empty()) {
    std::cerr << "custos-init: --dir is required\n";
    return 2;
  }
  if (layout.port <= 0 || layout.port > 65535) {
    std::cerr << "custos-init: --port must be between 1 and 65535\n";
    return 2;
  }
  try {
    layout.dir = fs::absolute(dir).lexically_normal();
    if (layout.dir.has_filename() == false) layout.dir = layout.dir.parent_path();
    return RunDev(layout);
  } catch (const std::exception& e) {
    std::cerr << "custos-init: " << e.what() << "\n";
    return 1;
  }
}
