#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "cli.h"

namespace custos::cli {
namespace {

constexpr AlgorithmInfo kAlgorithms[] = {
    {"ecdsa-p256-sha256", SigFamily::kEcdsa, "SHA256", "prime256v1"},
    {"ecdsa-p384-sha384", SigFamily::kEcdsa, "SHA384", "secp384r1"},
    {"rsa-pkcs1-sha256", SigFamily::kRsaPkcs1, "SHA256", nullptr},
    {"rsa-pkcs1-sha384", SigFamily::kRsaPkcs1, "SHA384", nullptr},
    {"rsa-pkcs1-sha512", SigFamily::kRsaPkcs1, "SHA512", nullptr},
    {"rsa-pss-sha256", SigFamily::kRsaPss, "SHA256", nullptr},
    {"rsa-pss-sha384", SigFamily::kRsaPss, "SHA384", nullptr},
    {"rsa-pss-sha512", SigFamily::kRsaPss, "SHA512", nullptr},
    {"ed25519", SigFamily::kEd25519, nullptr, nullptr},
};

constexpr const char* kKeyTypes[] = {"ec-p256",  "ec-p384",  "rsa-2048",
                                     "rsa-3072", "rsa-4096", "ed25519"};
constexpr const char* kUsages[] = {"code-signing", "ca", "ssh-ca", "timestamping", "audit"};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

struct MdDeleter {
  void operator()(EVP_MD* m) const { EVP_MD_free(m); }
};
using Md = std::unique_ptr<EVP_MD, MdDeleter>;

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;

Failure FileFailure(std::string_view verb, const std::string& path) {
  return Failure{kExitFile, std::string(verb) + " " + path + ": " + std::strerror(errno)};
}

Failure OpenSslFailure(int exit_code, const std::string& what) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  const char* reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
  return Failure{exit_code, what + (reason != nullptr ? std::string(": ") + reason : "")};
}

}  // namespace

const AlgorithmInfo* FindAlgorithm(std::string_view name) {
  for (const auto& a : kAlgorithms) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

std::string AlgorithmNames() {
  std::string out;
  for (const auto& a : kAlgorithms) {
    if (!out.empty()) out += ", ";
    out += a.name;
  }
  return out;
}

const AlgorithmInfo* OnlyAlgorithmFor(std::string_view key_type) {
  if (key_type == "ec-p256") return FindAlgorithm("ecdsa-p256-sha256");
  if (key_type == "ec-p384") return FindAlgorithm("ecdsa-p384-sha384");
  if (key_type == "ed25519") return FindAlgorithm("ed25519");
  return nullptr;
}

bool IsKeyType(std::string_view type) {
  for (const char* t : kKeyTypes) {
    if (type == t) return true;
  }
  return false;
}

bool IsKeyUsage(std::string_view usage) {
  for (const char* u : kUsages) {
    if (usage == u) return true;
  }
  return false;
}

std::optional<Failure> HashFile(const std::string& path, const char* digest, std::string* out) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return FileFailure("cannot open", path);
  Md md(EVP_MD_fetch(nullptr, digest, nullptr));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!md || !ctx || EVP_DigestInit_ex(ctx.get(), md.get(), nullptr) != 1) {
    return OpenSslFailure(kExitFile, std::string("cannot start ") + digest);
  }
  std::vector<unsigned char> buf(64 * 1024);
  while (true) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) {
      return OpenSslFailure(kExitFile, "hashing failed");
    }
    if (n < buf.size()) {
      if (std::ferror(f.get())) return FileFailure("cannot read", path);
      break;
    }
  }
  unsigned char md_out[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md_out, &md_len) != 1) {
    return OpenSslFailure(kExitFile, "hashing failed");
  }
  out->assign(reinterpret_cast<const char*>(md_out), md_len);
  return std::nullopt;
}

std::optional<Failure> ReadSmallFile(const std::string& path, std::size_t limit,
                                     std::string_view what, std::string* out) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return FileFailure("cannot open", path);
  out->clear();
  std::vector<char> buf(16 * 1024);
  while (true) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    out->append(buf.data(), n);
    if (out->size() > limit) {
      return Failure{kExitFile, path + " is larger than " + std::to_string(limit / 1024) +
                                    " KiB, the limit for " + std::string(what)};
    }
    if (n < buf.size()) {
      if (std::ferror(f.get())) return FileFailure("cannot read", path);
      break;
    }
  }
  return std::nullopt;
}

std::optional<Failure> WriteFile(const std::string& path, std::string_view data) {
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) return FileFailure("cannot write", path);
  if (std::fwrite(data.data(), 1, data.size(), f.get()) != data.size()) {
    return FileFailure("cannot write", path);
  }
  if (std::fclose(f.release()) != 0) return FileFailure("cannot write", path);
  return std::nullopt;
}

Pkey PublicKeyFromDer(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key && p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) key.reset();
  ERR_clear_error();
  return key;
}

std::optional<Failure> LoadPublicKeyPem(const std::string& path, Pkey* out) {
  std::string pem;
  if (auto f = ReadSmallFile(path, 1024 * 1024, "a public key file", &pem)) return f;
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslFailure(kExitFile, "out of memory");
  out->reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!*out) {
    return OpenSslFailure(kExitFile, path + " holds no PEM public key (BEGIN PUBLIC KEY)");
  }
  return std::nullopt;
}

std::string PublicKeyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) return "";
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string KeyTypeOf(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_ED25519:
      return "ed25519";
    case EVP_PKEY_RSA: {
      const int bits = EVP_PKEY_get_bits(key);
      if (bits == 2048 || bits == 3072 || bits == 4096) return "rsa-" + std::to_string(bits);
      return "";
    }
    case EVP_PKEY_EC: {
      char group[64];
      std::size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &len) != 1) {
        return "";
      }
      const std::string_view g(group, len);
      if (g == "prime256v1" || g == "P-256") return "ec-p256";
      if (g == "secp384r1" || g == "P-384") return "ec-p384";
      return "";
    }
    default:
      return "";
  }
}

std::optional<Failure> VerifyFile(EVP_PKEY* key, const AlgorithmInfo& alg, const std::string& path,
                                  std::string_view sig, bool* valid) {
  *valid = false;
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslFailure(kExitFile, "out of memory");
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestVerifyInit_ex(ctx.get(), &pctx, alg.digest, nullptr, nullptr, key, nullptr) != 1) {
    return OpenSslFailure(kExitUsage, std::string("key cannot verify ") + alg.name);
  }
  if (alg.family == SigFamily::kRsaPkcs1 || alg.family == SigFamily::kRsaPss) {
    const bool pss = alg.family == SigFamily::kRsaPss;
    bool ok =
        EVP_PKEY_CTX_set_rsa_padding(pctx, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) == 1;
    if (ok && pss) {
      ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, alg.digest, nullptr) == 1;
    }
    if (!ok) return OpenSslFailure(kExitUsage, std::string("cannot set up ") + alg.name);
  }
  const auto* sig_bytes = reinterpret_cast<const unsigned char*>(sig.data());
  if (alg.family == SigFamily::kEd25519) {
    std::string message;
    if (auto f = ReadSmallFile(path, 16 * 1024 * 1024, "local Ed25519 verification", &message)) {
      return f;
    }
    *valid = EVP_DigestVerify(ctx.get(), sig_bytes, sig.size(),
                              reinterpret_cast<const unsigned char*>(message.data()),
                              message.size()) == 1;
    ERR_clear_error();
    return std::nullopt;
  }
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return FileFailure("cannot open", path);
  std::vector<unsigned char> buf(64 * 1024);
  while (true) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    if (n > 0 && EVP_DigestVerifyUpdate(ctx.get(), buf.data(), n) != 1) {
      return OpenSslFailure(kExitFile, "hashing failed");
    }
    if (n < buf.size()) {
      if (std::ferror(f.get())) return FileFailure("cannot read", path);
      break;
    }
  }
  *valid = EVP_DigestVerifyFinal(ctx.get(), sig_bytes, sig.size()) == 1;
  ERR_clear_error();
  return std::nullopt;
}

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace custos::cli
