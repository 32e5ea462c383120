// The certificate an officer approves: a CA request's payload parsed here, so
// that the console shows what will be signed (or revoked) from the signed
// bytes themselves, not from the server's description of them.
//
// Requests of operation "issue-certificate" and "create-ca" carry the DER
// TBSCertificate (RFC 5280 §4.1) that custosd will sign, "revoke-certificate"
// the DER certificate to be revoked; the canonical request binds the payload
// with "payload-sha256" (checked by CheckRequest in view.h). Pure: no
// sockets, files or keys.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "custos/policy/pending_request.h"

namespace custos::officer {

// Whether requests of `operation` carry a certificate (or TBSCertificate) as
// their payload.
bool IsCertificateOperation(std::string_view operation);

// What an officer checks about a certificate. Strings are as decoded from
// the DER (not yet terminal-safe).
struct CertificateView {
  // True when the payload was a TBSCertificate (not yet signed); false for a
  // signed certificate.
  bool to_be_signed = true;
  // Lowercase hex of the serial number's content octets (as CaInfo and
  // CertificateInfo spell serials); "-" first when negative.
  std::string serial;
  // RFC 2253/4514 one-line form, most significant RDN last ("CN=a,O=b");
  // "" for an empty name.
  std::string subject;
  std::string issuer;
  // "dns:NAME", "ip:ADDR", "uri:URI", "email:ADDR", or "other:<kind>" for
  // name forms the CA back-end never issues (otherName, directoryName, ...).
  std::vector<std::string> sans;
  std::chrono::sys_seconds not_before{}, not_after{};
  // "EC P-256", "EC P-384", "RSA 2048", "Ed25519", or the OpenSSL name.
  std::string key_algorithm;
  // Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
  std::string key_sha256;
  // The signature algorithm named inside the TBSCertificate.
  std::string signature_algorithm;
  // Extensions, in the certificate's order, as labelled lines:
  // {"Basic constraints", "CA:TRUE, pathlen 0 (critical)"}, {"Key usage",
  // "keyCertSign, cRLSign (critical)"}, {"Extended key usage", "serverAuth"},
  // {"Subject key id", hex}, {"CRL distribution", URLs}, ... and for others
  // {"Extension <name or OID>", OpenSSL's text}.
  std::vector<std::pair<std::string, std::string>> extensions;
};

// Parses a DER TBSCertificate or DER Certificate, exactly (no trailing
// bytes). The error is one line saying why the bytes cannot be shown; an
// extension the view knows that does not decode is such an error.
std::variant<CertificateView, std::string> ParseCertificatePayload(std::string_view der);

// The certificate as labelled lines for the console, starting with Subject,
// Issuer, Serial, SANs, Not before, Not after ("… (90 d)"), Public key,
// Signature algorithm, then the extensions.
std::vector<std::pair<std::string, std::string>> CertificateLines(const CertificateView& view);

// Compares the canonical request's description of the certificate with the
// certificate itself: "serial", "subject", every "san", "not-before",
// "not-after" (those present). std::nullopt when they agree, else one line
// naming the first field that differs.
std::optional<std::string> CompareWithRequest(const CertificateView& view,
                                              const policy::PendingRequestText& text);

}  // namespace custos::officer
