// A development PKI for mutual TLS, made with OpenSSL's own builders: one dev
// CA, a server certificate, client certificates. Development and tests only:
// the dev CA's private key is a file on disk.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

namespace custos::init {

using UniquePkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using UniqueX509 = std::unique_ptr<X509, decltype(&X509_free)>;

struct Issued {
  UniquePkey key{nullptr, EVP_PKEY_free};
  UniqueX509 cert{nullptr, X509_free};
};

// A fresh P-256 key pair. Throws std::runtime_error on OpenSSL failure.
UniquePkey NewP256Key();

// A self-signed CA certificate (CA:TRUE, keyCertSign|cRLSign, SKI).
Issued MakeCa(const std::string& common_name, int days);

struct LeafSpec {
  std::string common_name;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  std::vector<std::string> uri_sans;
  bool server_auth = false;
  bool client_auth = false;
  int days = 365;
};

// A leaf certificate signed by `ca` (CA:FALSE, digitalSignature, EKU as asked,
// SKI and AKI).
Issued MakeLeaf(const Issued& ca, const LeafSpec& spec);

std::string KeyToPem(EVP_PKEY* key);
std::string PublicKeyToPem(EVP_PKEY* key);
std::string CertToPem(X509* cert);

}  // namespace custos::init
