// OpenSSH certificates (PROTOCOL.certkeys) and SSHSIG signatures
// (PROTOCOL.sshsig).
#include <openssl/err.h>
#include <openssl/rand.h>

#include <algorithm>
#include <set>

#include "ssh_internal.h"

namespace custos::service::ssh {

using internal::Fail;

namespace {

constexpr std::size_t kNonceSize = 32;
constexpr std::size_t kMaxPrincipalLength = 256;
constexpr std::size_t kMaxKeyIdLength = 256;
constexpr std::size_t kMaxForceCommandLength = 4096;
constexpr std::size_t kMaxSourceAddressLength = 1024;
constexpr std::size_t kMaxNamespaceLength = 64;

bool AllPrintable(std::string_view s, bool allow_space) {
  return std::all_of(s.begin(), s.end(), [allow_space](char c) {
    return (c > 0x20 && c < 0x7f) || (allow_space && c == ' ');
  });
}

bool IsKnownExtension(std::string_view name) {
  return std::find(std::begin(kKnownExtensions), std::end(kKnownExtensions), name) !=
         std::end(kKnownExtensions);
}

// "10.0.0.0/8,192.168.1.1,2001:db8::/32": entries of address characters.
bool ValidSourceAddress(std::string_view list) {
  if (list.empty() || list.size() > kMaxSourceAddressLength) return false;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    const std::string_view entry = list.substr(start, end - start);
    if (entry.empty()) return false;
    for (char c : entry) {
      const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                      c == '.' || c == ':' || c == '/';
      if (!ok) return false;
    }
    start = end + 1;
  }
  return true;
}

Result<std::vector<std::string>> CheckSpec(const CertificateSpec& spec, const PublicKey& subject,
                                           const PublicKey& ca) {
  if (spec.type != CertType::kUser && spec.type != CertType::kHost) {
    return Fail("ssh-cert-type", "certificate type must be user or host");
  }
  if (subject == ca) return Fail("ssh-cert-subject", "the CA key cannot certify itself");
  if (spec.principals.empty()) {
    return Fail("ssh-cert-principals",
                "at least one principal is required (an empty list would "
                "be valid for every user or host)");
  }
  if (spec.principals.size() > kMaxPrincipals) {
    return Fail("ssh-cert-principals", "more than 256 principals");
  }
  std::set<std::string_view> seen;
  for (const std::string& p : spec.principals) {
    if (p.empty() || p.size() > kMaxPrincipalLength || !AllPrintable(p, false) ||
        p.find(',') != std::string::npos) {
      return Fail("ssh-cert-principals", "principal \"" + (AllPrintable(p, true) ? p : "?") +
                                             "\" must be 1..256 printable characters without "
                                             "spaces or commas");
    }
    if (!seen.insert(p).second) return Fail("ssh-cert-principals", "principal " + p + " repeated");
  }
  if (spec.key_id.size() > kMaxKeyIdLength || !AllPrintable(spec.key_id, true)) {
    return Fail("ssh-cert-key-id", "the key id must be at most 256 printable characters");
  }
  if (spec.valid_before <= spec.valid_after) {
    return Fail("ssh-cert-validity", "valid-before must be later than valid-after");
  }
  if (!spec.nonce.empty() && spec.nonce.size() != kNonceSize) {
    return Fail("ssh-cert-nonce", "the nonce must be 32 bytes");
  }
  const bool has_options = spec.force_command.has_value() || spec.source_address.has_value();
  if (spec.type == CertType::kHost && (has_options || !spec.extensions.empty())) {
    return Fail("ssh-cert-options", "host certificates carry no critical options or extensions");
  }
  if (spec.force_command &&
      (spec.force_command->empty() || spec.force_command->size() > kMaxForceCommandLength ||
       !AllPrintable(*spec.force_command, true))) {
    return Fail("ssh-cert-options",
                "force-command must be 1..4096 printable characters on one line");
  }
  if (spec.source_address && !ValidSourceAddress(*spec.source_address)) {
    return Fail("ssh-cert-options",
                "source-address must be a comma-separated list of addresses or CIDR blocks");
  }
  std::vector<std::string> extensions;
  for (const std::string& e : spec.extensions) {
    if (!IsKnownExtension(e)) {
      return Fail("ssh-cert-extension", "unknown extension \"" +
                                            (AllPrintable(e, true) ? e : std::string("?")) +
                                            "\"; known: permit-pty, permit-port-forwarding, "
                                            "permit-agent-forwarding, permit-X11-forwarding, "
                                            "permit-user-rc, no-touch-required");
    }
    extensions.push_back(e);
  }
  std::sort(extensions.begin(), extensions.end());
  extensions.erase(std::unique(extensions.begin(), extensions.end()), extensions.end());
  return extensions;
}

void Armor(ByteSpan blob, std::string* out) {
  const std::string b64 = Base64Encode(blob);
  *out = "-----BEGIN SSH SIGNATURE-----\n";
  for (std::size_t i = 0; i < b64.size(); i += 70) {
    *out += b64.substr(i, 70);
    *out += '\n';
  }
  *out += "-----END SSH SIGNATURE-----\n";
}

Bytes SignatureBlob(KeyType type, ByteSpan raw) {
  Writer w;
  w.String(SignatureAlgorithm(type));
  w.String(raw);
  return std::move(w).bytes();
}

}  // namespace

std::string Certificate::ToLine(std::string_view comment) const {
  std::string line(CertTypeName(subject_type));
  line += ' ';
  line += Base64Encode(blob);
  if (!comment.empty()) {
    line += ' ';
    line += comment;
  }
  return line;
}

Result<Bytes> CertificateToBeSigned(const CertificateSpec& spec, const PublicKey& subject,
                                    const PublicKey& ca) {
  auto extensions = CheckSpec(spec, subject, ca);
  if (!extensions) return extensions.error();

  Bytes nonce = spec.nonce;
  if (nonce.empty()) {
    nonce.resize(kNonceSize);
    if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
      ERR_clear_error();
      return Fail("ssh-cert-nonce", "the random generator failed; retry");
    }
  }

  Writer principals;
  for (const std::string& p : spec.principals) principals.String(p);

  // Critical options, sorted by name: force-command < source-address.
  Writer options;
  if (spec.force_command) {
    Writer value;
    value.String(*spec.force_command);
    options.String("force-command");
    options.String(value.bytes());
  }
  if (spec.source_address) {
    Writer value;
    value.String(*spec.source_address);
    options.String("source-address");
    options.String(value.bytes());
  }

  Writer ext;
  for (const std::string& e : *extensions) {
    ext.String(e);
    ext.String(std::string_view());
  }

  Writer w;
  w.String(CertTypeName(subject.type()));
  w.String(nonce);
  w.Raw(subject.fields());
  w.U64(spec.serial);
  w.U32(static_cast<std::uint32_t>(spec.type));
  w.String(spec.key_id);
  w.String(principals.bytes());
  w.U64(spec.valid_after);
  w.U64(spec.valid_before);
  w.String(options.bytes());
  w.String(ext.bytes());
  w.String(std::string_view());  // reserved
  w.String(ca.blob());
  return std::move(w).bytes();
}

Result<Certificate> SignCertificate(const CertificateSpec& spec, const PublicKey& subject,
                                    const PublicKey& ca, const Signer& sign) {
  auto tbs = CertificateToBeSigned(spec, subject, ca);
  if (!tbs) return tbs.error();
  auto raw = sign(*tbs);
  if (!raw) return raw.error();
  const Bytes sig = SignatureBlob(ca.type(), *raw);
  auto ok = VerifySignatureBlob(ca, *tbs, sig);
  if (!ok) return ok.error();
  if (!*ok) {
    return Fail("ssh-cert-signature",
                "the CA signature does not verify with the CA public key; check the key handle");
  }
  Writer w;
  w.Raw(*tbs);
  w.String(sig);
  return Certificate{subject.type(), std::move(w).bytes()};
}

// ---------------------------------------------------------------------------
// SSHSIG

namespace {

constexpr std::string_view kSshsigMagic = "SSHSIG";
constexpr std::string_view kSshsigHash = "sha512";
constexpr std::uint32_t kSshsigVersion = 1;

Result<bool> CheckNamespace(std::string_view ns) {
  if (ns.empty() || ns.size() > kMaxNamespaceLength) {
    return Fail("sshsig-namespace", "the namespace must be 1..64 characters (e.g. git, file)");
  }
  for (char c : ns) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '@' || c == '.' || c == '_' || c == '-';
    if (!ok) return Fail("sshsig-namespace", "the namespace may use only letters, digits and @._-");
  }
  return true;
}

}  // namespace

Result<Bytes> SshsigSignedData(std::string_view ns, ByteSpan sha512_digest) {
  auto ok = CheckNamespace(ns);
  if (!ok) return ok.error();
  if (sha512_digest.size() != kSha512Size) {
    return Fail("sshsig-digest", "the digest must be a 64-byte SHA-512");
  }
  Writer w;
  w.Raw(internal::AsBytes(kSshsigMagic));
  w.String(ns);
  w.String(std::string_view());  // reserved
  w.String(kSshsigHash);
  w.String(sha512_digest);
  return std::move(w).bytes();
}

Result<std::string> ArmorSshsig(const PublicKey& key, std::string_view ns,
                                ByteSpan signature_blob) {
  auto ok = CheckNamespace(ns);
  if (!ok) return ok.error();
  Writer w;
  w.Raw(internal::AsBytes(kSshsigMagic));
  w.U32(kSshsigVersion);
  w.String(key.blob());
  w.String(ns);
  w.String(std::string_view());  // reserved
  w.String(kSshsigHash);
  w.String(signature_blob);
  std::string out;
  Armor(w.bytes(), &out);
  return out;
}

Result<std::string> SignSshsig(const PublicKey& key, std::string_view ns, ByteSpan sha512_digest,
                               const Signer& sign) {
  auto data = SshsigSignedData(ns, sha512_digest);
  if (!data) return data.error();
  auto raw = sign(*data);
  if (!raw) return raw.error();
  const Bytes sig = SignatureBlob(key.type(), *raw);
  auto ok = VerifySignatureBlob(key, *data, sig);
  if (!ok) return ok.error();
  if (!*ok) {
    return Fail("sshsig-signature",
                "the signature does not verify with the key's public key; check the key handle");
  }
  return ArmorSshsig(key, ns, sig);
}

}  // namespace custos::service::ssh
