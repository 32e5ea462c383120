// CA back-end commands: custos ca create-root|create-intermediate|list|show|
// chain|csr|import-cert, custos cert issue|list|show|revoke, custos crl
// (docs/operations.md, "Certificates and CAs").
#include <cstdio>
#include <limits>

#include "cli.h"

namespace custos::cli {
namespace {

Failure Usage(std::string message) { return Failure{kExitUsage, std::move(message)}; }

// Files a user hands in (CSRs, certificates, chains) are small.
constexpr std::size_t kMaxInputFile = 1024 * 1024;

std::optional<Failure> ReadCsr(const std::string& path, std::string* der) {
  std::string bytes;
  if (auto f = ReadSmallFile(path, kMaxInputFile, "a certificate request", &bytes)) return f;
  if (auto error = CsrToDer(bytes, der)) return Failure{kExitFile, path + " " + *error};
  return std::nullopt;
}

std::optional<Failure> ReadCertificates(const std::string& path, std::vector<std::string>* ders) {
  std::string bytes;
  if (auto f = ReadSmallFile(path, kMaxInputFile, "a certificate file", &bytes)) return f;
  if (auto error = CertificatesToDer(bytes, ders)) return Failure{kExitFile, path + " " + *error};
  return std::nullopt;
}

Failure BadAnswer(const std::string& what) {
  return Failure{kExitRefused, "server answered with " + what + " that does not parse"};
}

// PEM of every certificate in order; a Failure if one does not parse.
std::optional<Failure> ChainPem(const google::protobuf::RepeatedPtrField<std::string>& ders,
                                std::string* pem) {
  for (const auto& der : ders) {
    const std::string one = CertificatePem(der);
    if (one.empty()) return BadAnswer("a chain certificate");
    *pem += one;
  }
  return std::nullopt;
}

// The certificate in the form --der asks for.
std::optional<Failure> CertificateBytes(const Invocation& inv, const std::string& der,
                                        std::string* out) {
  const std::string pem = CertificatePem(der);
  if (pem.empty()) return BadAnswer("a certificate");
  *out = inv.der ? der : pem;
  return std::nullopt;
}

std::optional<Failure> ParseValidity(const Invocation& inv, std::uint64_t* seconds) {
  *seconds = 0;
  if (inv.validity.empty()) return std::nullopt;
  return ParseDuration(inv.validity, "validity", seconds);
}

// Sends `req`; a pending answer waits up to --wait, else exits 6. *resp is
// then the operation's own response, taken from the executed request.
std::optional<Failure> CallMaybeWait(Invocation& inv, v1::Request req, v1::Response* resp) {
  std::uint64_t wait_seconds = 0;
  if (!inv.wait.empty()) {
    if (auto f = ParseDuration(inv.wait, "wait", &wait_seconds)) return f;
  }
  bool pending = false;
  if (auto f = inv.CallAllowPending(std::move(req), resp, &pending)) return f;
  if (!pending) return std::nullopt;
  const v1::PendingRequestInfo held = resp->pending();
  if (wait_seconds == 0) {
    ReportPending(inv, held, resp->status().message());
    return Failure{kExitPending, ""};
  }
  std::fprintf(stderr, "custos: %s needs approval; waiting up to %s (%s approvals so far)\n",
               held.id().c_str(), inv.wait.c_str(), ApprovalsText(held).c_str());
  v1::PendingRequestInfo done;
  if (auto f = WaitForRequest(inv, held.id(), wait_seconds, &done)) return f;
  if (!done.has_result()) {
    return Failure{kExitRefused, "request " + held.id() +
                                     " was executed but the server returned no result (only the "
                                     "requester receives it)"};
  }
  *resp = done.result();
  return std::nullopt;
}

}  // namespace

// --- CAs ---

std::optional<Failure> CaCreate(Invocation& inv, bool root) {
  const std::string usage =
      root ? "usage: custos ca create-root NAME --key KEY[@V] --subject DN --validity DURATION "
             "[--path-len N] [--out FILE] [--wait DURATION] [--note TEXT] [--json]"
           : "usage: custos ca create-intermediate NAME --key KEY[@V] --parent CA --subject DN "
             "[--path-len N] [--validity DURATION] [--out FILE] [--wait DURATION] [--note TEXT] "
             "[--json]";
  if (inv.args.size() != 1 || inv.key_name.empty() || inv.subject.empty() ||
      (root && inv.validity.empty()) || (!root && inv.parent.empty())) {
    return Usage(usage);
  }
  v1::Request req;
  req.set_note(inv.note);
  auto* create = req.mutable_create_ca();
  create->set_name(inv.args[0]);
  create->set_key(inv.key_name);
  create->set_subject(inv.subject);
  if (!root) create->set_parent(inv.parent);
  std::uint64_t validity = 0;
  if (auto f = ParseValidity(inv, &validity)) return f;
  create->set_validity_seconds(validity);
  if (!inv.path_len.empty()) {
    int n = 0;
    bool ok = inv.path_len.size() <= 3;
    for (char c : inv.path_len) {
      ok = ok && c >= '0' && c <= '9';
      if (ok) n = n * 10 + (c - '0');
    }
    if (!ok || n > 255) {
      return Usage("--path-len '" + inv.path_len +
                   "' is not a path length: a number from 0 to 255 (0: may issue only leaf "
                   "certificates)");
    }
    create->set_path_len(n);
    create->set_has_path_len(true);
  } else {
    create->set_path_len(-1);
  }
  v1::Response resp;
  if (auto f = CallMaybeWait(inv, req, &resp)) return f;
  return FinishCaCreate(inv, resp.create_ca());
}

std::optional<Failure> FinishCaCreate(Invocation& inv, const v1::CaInfo& ca) {
  if (!inv.out.empty()) {
    std::string bytes;
    if (auto f = CertificateBytes(inv, ca.cert_der(), &bytes)) return f;
    if (auto f = WriteFile(inv.out, bytes)) return f;
  }
  if (inv.json) {
    std::printf("%s\n", CaJson(ca).c_str());
    return std::nullopt;
  }
  std::printf("created CA %s (%s, key %s): %s, serial %s, valid until %s%s%s\n", ca.name().c_str(),
              ca.parent().empty() ? "root" : ("under " + ca.parent()).c_str(), ca.key().c_str(),
              ca.subject().c_str(), ca.serial().c_str(), FormatUtc(ca.not_after()).c_str(),
              inv.out.empty() ? "" : ": ", inv.out.c_str());
  return std::nullopt;
}

std::optional<Failure> CaList(Invocation& inv) {
  if (!inv.args.empty()) return Usage("usage: custos ca list [--json]");
  v1::Request req;
  req.mutable_list_cas();
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  if (inv.json) {
    std::vector<std::string> items;
    for (const auto& ca : resp.list_cas().cas()) items.push_back(CaJson(ca));
    std::printf("%s\n", JsonObject().AddRaw("cas", JsonArray(items)).str().c_str());
    return std::nullopt;
  }
  std::fputs(CaListHeader().c_str(), stdout);
  for (const auto& ca : resp.list_cas().cas()) std::fputs(CaListLine(ca).c_str(), stdout);
  return std::nullopt;
}

namespace {

std::optional<Failure> GetCa(Invocation& inv, const std::string& name, v1::CaInfo* ca) {
  v1::Request req;
  req.mutable_get_ca()->set_name(name);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  *ca = resp.get_ca();
  return std::nullopt;
}

}  // namespace

std::optional<Failure> CaShow(Invocation& inv) {
  if (inv.args.size() != 1)
    return Usage("usage: custos ca show NAME [--out FILE] [--der] [--json]");
  v1::CaInfo ca;
  if (auto f = GetCa(inv, inv.args[0], &ca)) return f;
  if (!inv.out.empty()) {
    std::string bytes;
    if (auto f = CertificateBytes(inv, ca.cert_der(), &bytes)) return f;
    if (auto f = WriteFile(inv.out, bytes)) return f;
  }
  if (inv.json) {
    std::printf("%s\n", CaJson(ca).c_str());
  } else {
    std::fputs(CaText(ca).c_str(), stdout);
  }
  return std::nullopt;
}

std::optional<Failure> CaChain(Invocation& inv) {
  if (inv.args.size() != 1) return Usage("usage: custos ca chain NAME [--out FILE] [--json]");
  v1::CaInfo ca;
  if (auto f = GetCa(inv, inv.args[0], &ca)) return f;
  if (ca.cert_der().empty()) {
    return Failure{kExitRefused, "CA " + inv.args[0] + " has no certificate yet (state " +
                                     ca.state() + "): import one with `custos ca import-cert`"};
  }
  std::string pem = CertificatePem(ca.cert_der());
  if (pem.empty()) return BadAnswer("a CA certificate");
  if (auto f = ChainPem(ca.chain_der(), &pem)) return f;
  if (!inv.out.empty()) {
    if (auto f = WriteFile(inv.out, pem)) return f;
  } else if (!inv.json) {
    std::fputs(pem.c_str(), stdout);
  }
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("ca", ca.name())
                            .Add("certificates", static_cast<std::int64_t>(1 + ca.chain_der_size()))
                            .Add("out", inv.out)
                            .Add("chain_pem", pem)
                            .str()
                            .c_str());
  }
  return std::nullopt;
}

std::optional<Failure> CaCsr(Invocation& inv) {
  const char* usage =
      "usage: custos ca csr NAME --key KEY[@V] --subject DN --out FILE [--der] [--note TEXT] "
      "[--json]";
  if (inv.args.size() != 1 || inv.key_name.empty() || inv.subject.empty() || inv.out.empty()) {
    return Usage(usage);
  }
  v1::Request req;
  req.set_note(inv.note);
  req.mutable_ca_csr()->set_name(inv.args[0]);
  req.mutable_ca_csr()->set_key(inv.key_name);
  req.mutable_ca_csr()->set_subject(inv.subject);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const std::string& der = resp.ca_csr().csr_der();
  const std::string pem = CsrPem(der);
  if (pem.empty()) return BadAnswer("a certificate request");
  if (auto f = WriteFile(inv.out, inv.der ? der : pem)) return f;
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("name", resp.ca_csr().name())
                            .Add("state", "pending-certificate")
                            .Add("out", inv.out)
                            .Add("csr_pem", pem)
                            .str()
                            .c_str());
  } else {
    std::printf(
        "CA %s is pending its certificate; CSR for %s: %s\n"
        "have it certified, then `custos ca import-cert %s CERT [--chain FILE]`\n",
        resp.ca_csr().name().c_str(), inv.key_name.c_str(), inv.out.c_str(),
        resp.ca_csr().name().c_str());
  }
  return std::nullopt;
}

std::optional<Failure> CaImportCert(Invocation& inv) {
  if (inv.args.size() != 2) {
    return Usage(
        "usage: custos ca import-cert NAME CERT [--chain FILE] [--note TEXT] [--json] (CERT and "
        "the chain in PEM or DER; the chain nearest first)");
  }
  std::vector<std::string> cert;
  if (auto f = ReadCertificates(inv.args[1], &cert)) return f;
  if (cert.size() != 1) {
    return Failure{kExitFile, inv.args[1] + " holds " + std::to_string(cert.size()) +
                                  " certificates: give the CA's own certificate as CERT and the "
                                  "others with --chain"};
  }
  std::vector<std::string> chain;
  if (!inv.chain.empty()) {
    if (auto f = ReadCertificates(inv.chain, &chain)) return f;
  }
  v1::Request req;
  req.set_note(inv.note);
  auto* import = req.mutable_import_ca_cert();
  import->set_name(inv.args[0]);
  import->set_cert_der(cert[0]);
  for (auto& der : chain) import->add_chain_der(std::move(der));
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::CaInfo& ca = resp.import_ca_cert();
  if (inv.json) {
    std::printf("%s\n", CaJson(ca).c_str());
  } else {
    std::printf("imported the certificate of CA %s: %s, serial %s, valid until %s; state %s\n",
                ca.name().c_str(), ca.subject().c_str(), ca.serial().c_str(),
                FormatUtc(ca.not_after()).c_str(), ca.state().c_str());
  }
  return std::nullopt;
}

// --- Certificates ---

std::optional<Failure> CertIssue(Invocation& inv) {
  const char* usage =
      "usage: custos cert issue --profile P --csr FILE --out CERT [--validity DURATION] "
      "[--san TYPE:VALUE]... [--chain FILE] [--renews SERIAL] [--der] [--wait DURATION] "
      "[--note TEXT] [--json]";
  if (!inv.args.empty() || inv.profile.empty() || inv.csr.empty() || inv.out.empty()) {
    return Usage(usage);
  }
  for (const auto& san : inv.sans) {
    if (auto error = CheckSanSyntax(san)) return Usage(*error);
  }
  std::uint64_t validity = 0;
  if (auto f = ParseValidity(inv, &validity)) return f;
  std::string csr;
  if (auto f = ReadCsr(inv.csr, &csr)) return f;
  v1::Request req;
  req.set_note(inv.note);
  auto* issue = req.mutable_issue_certificate();
  issue->set_profile(inv.profile);
  issue->set_csr(std::move(csr));
  issue->set_validity_seconds(validity);
  for (const auto& san : inv.sans) issue->add_sans(san);
  issue->set_renews(inv.renews);
  v1::Response resp;
  if (auto f = CallMaybeWait(inv, req, &resp)) return f;
  return FinishIssue(inv, resp.issue_certificate());
}

std::optional<Failure> FinishIssue(Invocation& inv, const v1::CertificateInfo& cert) {
  std::string bytes;
  if (auto f = CertificateBytes(inv, cert.cert_der(), &bytes)) return f;
  std::string chain;
  if (!inv.chain.empty()) {
    if (auto f = ChainPem(cert.chain_der(), &chain)) return f;
  }
  if (auto f = WriteFile(inv.out, bytes)) return f;
  if (!inv.chain.empty()) {
    if (auto f = WriteFile(inv.chain, chain)) return f;
  }
  if (inv.json) {
    std::string json = CertificateJson(cert);
    // The files written, as the last members.
    json.pop_back();
    json += "," + JsonString("out") + ":" + JsonString(inv.out) + "," + JsonString("chain") + ":" +
            JsonString(inv.chain) + "}";
    std::printf("%s\n", json.c_str());
    return std::nullopt;
  }
  std::string sans;
  for (const auto& s : cert.sans()) sans += (sans.empty() ? "" : ", ") + s;
  std::printf("issued certificate %s by CA %s (profile %s): %s%s%s, valid until %s: %s%s%s\n",
              cert.serial().c_str(), cert.ca().c_str(), cert.profile().c_str(),
              cert.subject().empty() ? "(empty subject)" : cert.subject().c_str(),
              sans.empty() ? "" : " ", sans.empty() ? "" : ("[" + sans + "]").c_str(),
              FormatUtc(cert.not_after()).c_str(), inv.out.c_str(),
              inv.chain.empty() ? "" : ", chain ", inv.chain.c_str());
  return std::nullopt;
}

std::optional<Failure> CertList(Invocation& inv) {
  if (!inv.args.empty()) {
    return Usage(
        "usage: custos cert list [--ca NAME] [--requester PRINCIPAL] [--profile P] "
        "[--expiring DURATION] [--json]");
  }
  v1::Request req;
  auto* list = req.mutable_list_certificates();
  list->set_ca(inv.ca_name);
  list->set_requester(inv.requester);
  list->set_profile(inv.profile);
  if (!inv.expiring.empty()) {
    std::uint64_t seconds = 0;
    if (auto f = ParseDuration(inv.expiring, "expiring", &seconds)) return f;
    list->set_expiring_within_seconds(seconds);
  }
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  if (inv.json) {
    std::vector<std::string> items;
    for (const auto& c : resp.list_certificates().certificates()) {
      items.push_back(CertificateJson(c));
    }
    std::printf("%s\n", JsonObject().AddRaw("certificates", JsonArray(items)).str().c_str());
    return std::nullopt;
  }
  std::fputs(CertificateListHeader().c_str(), stdout);
  for (const auto& c : resp.list_certificates().certificates()) {
    std::fputs(CertificateListLine(c).c_str(), stdout);
  }
  return std::nullopt;
}

std::optional<Failure> CertShow(Invocation& inv) {
  if (inv.args.size() != 1) {
    return Usage("usage: custos cert show SERIAL [--ca NAME] [--out FILE] [--der] [--json]");
  }
  v1::Request req;
  req.mutable_get_certificate()->set_serial(inv.args[0]);
  req.mutable_get_certificate()->set_ca(inv.ca_name);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::CertificateInfo& cert = resp.get_certificate();
  if (!inv.out.empty()) {
    std::string bytes;
    if (auto f = CertificateBytes(inv, cert.cert_der(), &bytes)) return f;
    if (auto f = WriteFile(inv.out, bytes)) return f;
  }
  if (inv.json) {
    std::printf("%s\n", CertificateJson(cert).c_str());
  } else {
    std::fputs(CertificateText(cert).c_str(), stdout);
  }
  return std::nullopt;
}

std::optional<Failure> CertRevoke(Invocation& inv) {
  if (inv.args.size() != 1 || inv.reason.empty()) {
    return Usage(
        "usage: custos cert revoke SERIAL --reason REASON [--ca NAME] [--wait DURATION] "
        "[--note TEXT] [--json] (REASON: " +
        RevocationReasonNames() + ")");
  }
  if (!IsRevocationReason(inv.reason)) {
    return Usage("unknown revocation reason '" + inv.reason + "': use one of " +
                 RevocationReasonNames());
  }
  v1::Request req;
  req.set_note(inv.note);
  auto* revoke = req.mutable_revoke_certificate();
  revoke->set_serial(inv.args[0]);
  revoke->set_ca(inv.ca_name);
  revoke->set_reason(inv.reason);
  v1::Response resp;
  if (auto f = CallMaybeWait(inv, req, &resp)) return f;
  const v1::CertificateInfo& cert = resp.revoke_certificate();
  if (inv.json) {
    std::printf("%s\n", CertificateJson(cert).c_str());
  } else {
    std::printf("certificate %s of CA %s: %s\n", cert.serial().c_str(), cert.ca().c_str(),
                CertificateStateText(cert).c_str());
  }
  return std::nullopt;
}

std::optional<Failure> CrlGet(Invocation& inv) {
  if (!inv.args.empty() || inv.ca_name.empty() || (inv.der && inv.out.empty())) {
    return Usage("usage: custos crl --ca NAME [--out FILE] [--der] [--json] (--der needs --out)");
  }
  v1::Request req;
  req.mutable_get_crl()->set_ca(inv.ca_name);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::CrlInfo& crl = resp.get_crl();
  const std::string pem = CrlPem(crl.crl_der());
  if (pem.empty()) return BadAnswer("a CRL");
  if (!inv.out.empty()) {
    if (auto f = WriteFile(inv.out, inv.der ? crl.crl_der() : pem)) return f;
  }
  if (inv.json) {
    std::string json = CrlJson(crl);
    json.pop_back();
    json += "," + JsonString("out") + ":" + JsonString(inv.out);
    if (inv.out.empty()) json += "," + JsonString("crl_pem") + ":" + JsonString(pem);
    std::printf("%s}\n", json.c_str());
  } else if (inv.out.empty()) {
    std::fputs(pem.c_str(), stdout);
  } else {
    std::printf("CRL %llu of CA %s: %d revoked, this update %s, next update %s: %s\n",
                static_cast<unsigned long long>(crl.number()), crl.ca().c_str(),
                CrlEntryCount(crl.crl_der()), FormatUtc(crl.this_update()).c_str(),
                FormatUtc(crl.next_update()).c_str(), inv.out.c_str());
  }
  return std::nullopt;
}

}  // namespace custos::cli
