// Certificate signing requests: strict parsing with signature verification,
// and generation for a key Custos holds.
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "ca_internal.h"

namespace custos::service::ca {

namespace {

using internal::Fail;
using internal::UniqueBio;
using internal::UniqueReq;

// A CSR is small; anything larger is refused before OpenSSL parses it.
constexpr size_t kMaxCsrBytes = 64 * 1024;

bool StartsWithPem(std::span<const std::uint8_t> input) {
  static constexpr std::string_view kBegin = "-----BEGIN ";
  size_t i = 0;
  while (i < input.size() && std::isspace(input[i])) ++i;
  return input.size() - i >= kBegin.size() &&
         std::equal(kBegin.begin(), kBegin.end(), input.begin() + static_cast<long>(i));
}

// Decodes exactly one PEM block labelled CERTIFICATE REQUEST (or the legacy
// NEW CERTIFICATE REQUEST) with no headers; only whitespace may follow it.
Result<Bytes> DecodePem(std::span<const std::uint8_t> input) {
  UniqueBio bio(BIO_new_mem_buf(input.data(), static_cast<int>(input.size())));
  if (bio == nullptr) return Fail("csr-pem", "out of memory");
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) {
    internal::OpenSslErrors();
    return Fail("csr-pem", "the PEM CSR does not decode");
  }
  const std::string label(name);
  const bool has_header = header != nullptr && header[0] != '\0';
  Bytes der(data, data + len);
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(data);
  if (label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST") {
    return Fail("csr-pem", "expected a PEM CERTIFICATE REQUEST block, got " + label);
  }
  if (has_header) return Fail("csr-pem", "the PEM CSR has headers");
  char c;
  while (BIO_read(bio.get(), &c, 1) == 1) {
    if (!std::isspace(static_cast<unsigned char>(c))) {
      return Fail("csr-trailing-bytes", "data follows the PEM CSR block");
    }
  }
  return der;
}

}  // namespace

Result<Csr> Csr::Parse(std::span<const std::uint8_t> input) {
  if (input.size() > 2 * kMaxCsrBytes) {
    return Fail("csr-der", "the CSR is larger than " + std::to_string(kMaxCsrBytes) + " bytes");
  }
  Bytes der;
  if (StartsWithPem(input)) {
    size_t start = 0;
    while (std::isspace(input[start])) ++start;
    Result<Bytes> decoded = DecodePem(input.subspan(start));
    if (!decoded.ok()) return decoded.error();
    der = std::move(decoded).value();
  } else {
    der.assign(input.begin(), input.end());
  }
  if (der.empty()) return Fail("csr-der", "the CSR is empty");
  if (der.size() > kMaxCsrBytes) {
    return Fail("csr-der", "the CSR is larger than " + std::to_string(kMaxCsrBytes) + " bytes");
  }

  const unsigned char* p = der.data();
  UniqueReq req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (req == nullptr) {
    internal::OpenSslErrors();
    return Fail("csr-der", "the CSR is not a DER-encoded PKCS#10 request");
  }
  if (p != der.data() + der.size()) {
    return Fail("csr-trailing-bytes",
                std::to_string(der.data() + der.size() - p) + " bytes follow the CSR");
  }
  if (X509_REQ_get_version(req.get()) != X509_REQ_VERSION_1) {
    return Fail("csr-version", "the CSR version must be v1 (0)");
  }
  EVP_PKEY* pubkey = X509_REQ_get0_pubkey(req.get());
  if (pubkey == nullptr) {
    internal::OpenSslErrors();
    return Fail("csr-public-key",
                "the CSR's public key does not decode (malformed, unsupported, or an EC point "
                "not on its curve)");
  }
  // The signature covers the bytes as received (OpenSSL keeps them).
  if (X509_REQ_verify(req.get(), pubkey) != 1) {
    internal::OpenSslErrors();
    return Fail("csr-signature", "the CSR's self-signature does not verify");
  }
  // Strict DER: a fresh encoding must give back exactly the input.
  if (i2d_re_X509_REQ_tbs(req.get(), nullptr) <= 0 ||
      internal::ToDer(req.get(), i2d_X509_REQ) != der) {
    internal::OpenSslErrors();
    return Fail("csr-der", "the CSR is not in canonical DER (BER or non-minimal encodings)");
  }

  Csr csr;
  csr.der_ = der;
  csr.spki_der_ = internal::ToDer(X509_REQ_get_X509_PUBKEY(req.get()), i2d_X509_PUBKEY);
  if (csr.spki_der_.empty()) return Fail("csr-public-key", "the CSR's public key does not encode");

  Result<std::vector<NameAttribute>> subject =
      internal::DecodeName(X509_REQ_get_subject_name(req.get()));
  if (!subject.ok()) return subject.error();
  csr.subject_ = std::move(subject).value();

  // Attributes: at most one extensionRequest, holding exactly one value.
  int ext_requests = 0;
  for (int i = 0; i < X509_REQ_get_attr_count(req.get()); ++i) {
    X509_ATTRIBUTE* attr = X509_REQ_get_attr(req.get(), i);
    const int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr));
    if (nid == NID_ext_req || nid == NID_ms_ext_req) {
      ++ext_requests;
      if (X509_ATTRIBUTE_count(attr) != 1) {
        return Fail("csr-attributes", "the CSR's extensionRequest must hold exactly one value");
      }
    }
  }
  if (ext_requests > 1) {
    return Fail("csr-attributes", "the CSR has more than one extensionRequest attribute");
  }
  if (ext_requests == 0) return csr;

  ERR_clear_error();
  internal::UniqueExtensions exts(X509_REQ_get_extensions(req.get()));
  if (exts == nullptr) {
    internal::OpenSslErrors();
    return Fail("csr-attributes", "the CSR's extensionRequest does not decode");
  }
  std::set<std::string> seen;
  for (int i = 0; i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), i);
    const ASN1_OBJECT* obj = X509_EXTENSION_get_object(ext);
    CsrExtension out;
    out.oid = internal::OidText(obj);
    out.critical = X509_EXTENSION_get_critical(ext) != 0;
    const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
    out.value.assign(ASN1_STRING_get0_data(data),
                     ASN1_STRING_get0_data(data) + ASN1_STRING_length(data));
    if (!seen.insert(out.oid).second) {
      return Fail("csr-duplicate-extension", "the CSR requests extension " + out.oid + " twice");
    }
    if (OBJ_obj2nid(obj) == NID_subject_alt_name) {
      internal::UniqueGeneralNames names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
      if (names == nullptr) {
        internal::OpenSslErrors();
        return Fail("csr-san", "the CSR's subjectAltName extension does not decode");
      }
      for (int j = 0; j < sk_GENERAL_NAME_num(names.get()); ++j) {
        std::optional<San> san = internal::FromGeneralName(sk_GENERAL_NAME_value(names.get(), j));
        if (!san) {
          return Fail("csr-san",
                      "the CSR requests a SAN of a type Custos does not issue (only DNS, IP, URI, "
                      "e-mail)");
        }
        csr.sans_.push_back(std::move(*san));
      }
    }
    csr.extensions_.push_back(std::move(out));
  }
  return csr;
}

Result<Bytes> GenerateCsr(std::string_view subject_dn, EVP_PKEY* key, bool ca_request) {
  Result<std::vector<NameAttribute>> dn = ParseDn(subject_dn);
  if (!dn.ok()) return dn.error();
  Result<internal::UniqueName> name = internal::BuildName(*dn);
  if (!name.ok()) return name.error();
  const std::optional<internal::SigningAlgorithm> alg = internal::SigningAlgorithmFor(key);
  if (!alg) return Fail("csr-generate", "the key type cannot sign a CSR");

  UniqueReq req(X509_REQ_new());
  if (req == nullptr || X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(req.get(), name->get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key) != 1) {
    return Fail("csr-generate", "building the CSR failed: " + internal::OpenSslErrors());
  }
  if (ca_request) {
    internal::UniqueExtensions exts(sk_X509_EXTENSION_new_null());
    internal::UniqueExt bc = internal::MakeBasicConstraints(true, -1);
    internal::UniqueExt ku = internal::MakeKeyUsage(kKeyCertSign | kCrlSign);
    if (exts == nullptr || bc == nullptr || ku == nullptr ||
        sk_X509_EXTENSION_push(exts.get(), bc.get()) <= 0) {
      return Fail("csr-generate", "building the CSR extensions failed");
    }
    bc.release();
    if (sk_X509_EXTENSION_push(exts.get(), ku.get()) <= 0) {
      return Fail("csr-generate", "building the CSR extensions failed");
    }
    ku.release();
    if (X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
      return Fail("csr-generate", "adding the CSR extensions failed: " + internal::OpenSslErrors());
    }
  }
  ERR_clear_error();
  if (X509_REQ_sign(req.get(), key, alg->md) <= 0) {
    return Fail("sign-failed", "signing the CSR failed: " + internal::OpenSslErrors());
  }
  Bytes der = internal::ToDer(req.get(), i2d_X509_REQ);
  Result<Csr> check = Csr::Parse(der);
  if (!check.ok()) return check.error();
  return der;
}

}  // namespace custos::service::ca
