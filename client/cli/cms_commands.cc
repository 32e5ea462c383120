// CMS signatures and the certificates of signing keys (docs/codesigning.md):
// custos sign --format cms, custos keys certify, custos keys attach-cert.
#include <cstdio>
#include <filesystem>

#include "cli.h"

namespace custos::cli {
namespace {

Failure Usage(std::string message) { return Failure{kExitUsage, std::move(message)}; }

// Certificate files a user hands in are small.
constexpr std::size_t kMaxCertificateFile = 1024 * 1024;

std::optional<Failure> ReadCertificates(const std::string& path, std::vector<std::string>* ders) {
  std::string bytes;
  if (auto f = ReadSmallFile(path, kMaxCertificateFile, "a certificate file", &bytes)) return f;
  if (auto error = CertificatesToDer(bytes, ders)) return Failure{kExitFile, path + " " + *error};
  return std::nullopt;
}

Failure BadAnswer(const std::string& what) {
  return Failure{kExitRefused, "server answered with " + what + " that does not parse"};
}

std::string KeyBaseName(const std::string& key) { return key.substr(0, key.find('@')); }

// Writes the certificate (--out) and chain (--chain) as PEM, then reports.
std::optional<Failure> FinishKeyCertificate(Invocation& inv, const v1::KeyCertificateInfo& info,
                                            const char* verb) {
  const std::string pem = CertificatePem(info.cert_der());
  if (pem.empty()) return BadAnswer("a certificate");
  std::string chain;
  for (const auto& der : info.chain_der()) {
    const std::string one = CertificatePem(der);
    if (one.empty()) return BadAnswer("a chain certificate");
    chain += one;
  }
  if (!inv.out.empty()) {
    if (auto f = WriteFile(inv.out, pem)) return f;
  }
  if (!inv.chain.empty() && std::string_view(verb) == "certified") {
    if (auto f = WriteFile(inv.chain, chain)) return f;
  }
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("key", info.key())
                            .Add("source", info.source())
                            .Add("serial", info.serial())
                            .Add("subject", info.subject())
                            .Add("not_after", info.not_after())
                            .Add("not_after_utc", FormatUtc(info.not_after()))
                            .Add("cert_pem", pem)
                            .Add("chain_pem", chain)
                            .Add("out", inv.out)
                            .str()
                            .c_str());
    return std::nullopt;
  }
  std::printf("%s %s: %s, serial %s, valid until %s%s%s\n", verb, info.key().c_str(),
              info.subject().empty() ? "(empty subject)" : info.subject().c_str(),
              info.serial().c_str(), FormatUtc(info.not_after()).c_str(),
              inv.out.empty() ? "" : "; certificate in ", inv.out.c_str());
  return std::nullopt;
}

}  // namespace

std::optional<Failure> SignCms(Invocation& inv) {
  const char* usage =
      "usage: custos sign --format cms --key NAME[@V] --in FILE [--out FILE.p7s] "
      "[--algorithm sha256|sha384|sha512] [--no-chain] [--note TEXT] [--json]";
  if (!inv.args.empty() || inv.key_name.empty() || inv.in.empty()) return Usage(usage);
  if (!inv.wait.empty() || !inv.files_from.empty() || !inv.out_dir.empty() ||
      !inv.manifest.empty()) {
    return Usage(
        "--format cms signs one file (--in) and never waits: keys under quorum are refused; " +
        std::string(usage));
  }
  std::string digest_name = inv.algorithm;
  if (digest_name.empty()) {
    // The key's type decides: P-384 keys sign with SHA-384, others SHA-256.
    v1::Request req;
    req.mutable_get_key()->set_key(KeyBaseName(inv.key_name));
    v1::Response resp;
    if (auto f = inv.Call(req, &resp)) return f;
    digest_name = resp.get_key().key_type() == "ec-p384" ? "sha384" : "sha256";
  }
  const char* openssl_digest = digest_name == "sha256"   ? "SHA256"
                               : digest_name == "sha384" ? "SHA384"
                               : digest_name == "sha512" ? "SHA512"
                                                         : nullptr;
  if (openssl_digest == nullptr) {
    return Usage("--algorithm '" + digest_name +
                 "' is not a CMS digest algorithm: use sha256, sha384 or sha512");
  }
  const std::string out = inv.out.empty() ? inv.in + ".p7s" : inv.out;
  std::string digest;
  if (auto f = HashFile(inv.in, openssl_digest, &digest)) return f;
  v1::Request req;
  req.set_note(inv.note);
  auto* sign = req.mutable_sign_cms();
  sign->set_key(inv.key_name);
  sign->set_digest_algorithm(digest_name);
  sign->set_digest(std::move(digest));
  sign->set_file_name(std::filesystem::path(inv.in).filename().string());
  sign->set_no_chain(inv.no_chain);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::SignCmsResponse& result = resp.sign_cms();
  if (result.cms_der().empty()) return BadAnswer("an empty CMS signature");
  if (auto f = WriteFile(out, result.cms_der())) return f;
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("key", result.key())
                            .Add("key_version", static_cast<std::int64_t>(result.key_version()))
                            .Add("format", "cms")
                            .Add("digest_algorithm", digest_name)
                            .Add("in", inv.in)
                            .Add("out", out)
                            .AddBool("chain", !inv.no_chain)
                            .str()
                            .c_str());
  } else {
    std::printf("signed %s with %s@%u (CMS, %s): %s\n", inv.in.c_str(), result.key().c_str(),
                result.key_version(), digest_name.c_str(), out.c_str());
  }
  return std::nullopt;
}

std::optional<Failure> KeysCertify(Invocation& inv) {
  const char* usage =
      "usage: custos keys certify NAME[@V] --profile P [--subject DN] [--validity DURATION] "
      "[--san TYPE:VALUE]... [--out CERT] [--chain FILE] [--note TEXT] [--json]";
  if (inv.args.size() != 1 || inv.profile.empty()) return Usage(usage);
  if (!inv.wait.empty()) {
    return Usage("keys certify does not wait: profiles under quorum are refused; " +
                 std::string(usage));
  }
  for (const auto& san : inv.sans) {
    if (auto error = CheckSanSyntax(san)) return Usage(*error);
  }
  std::uint64_t validity = 0;
  if (!inv.validity.empty()) {
    if (auto f = ParseDuration(inv.validity, "validity", &validity)) return f;
  }
  v1::Request req;
  req.set_note(inv.note);
  auto* certify = req.mutable_certify_key();
  certify->set_key(inv.args[0]);
  certify->set_profile(inv.profile);
  certify->set_subject(inv.subject);
  certify->set_validity_seconds(validity);
  for (const auto& san : inv.sans) certify->add_sans(san);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  return FinishKeyCertificate(inv, resp.certify_key(), "certified");
}

std::optional<Failure> KeysAttachCert(Invocation& inv) {
  const char* usage =
      "usage: custos keys attach-cert NAME[@V] CERT [--chain FILE] [--note TEXT] [--json] "
      "(PEM or DER; the chain nearest first)";
  if (inv.args.size() != 2) return Usage(usage);
  std::vector<std::string> cert;
  if (auto f = ReadCertificates(inv.args[1], &cert)) return f;
  if (cert.size() != 1) {
    return Failure{kExitFile, inv.args[1] + " holds " + std::to_string(cert.size()) +
                                  " certificates: give the key's own certificate as CERT and "
                                  "the others with --chain"};
  }
  std::vector<std::string> chain;
  if (!inv.chain.empty()) {
    if (auto f = ReadCertificates(inv.chain, &chain)) return f;
  }
  v1::Request req;
  req.set_note(inv.note);
  auto* attach = req.mutable_attach_key_cert();
  attach->set_key(inv.args[0]);
  attach->set_cert_der(cert[0]);
  for (auto& der : chain) attach->add_chain_der(std::move(der));
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  return FinishKeyCertificate(inv, resp.attach_key_cert(), "attached a certificate to");
}

}  // namespace custos::cli
