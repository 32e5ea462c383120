// Helpers for the OpenSSH format tests: software keys from OpenSSL, keys made
// by ssh-keygen itself (so the parsers see outside input), temporary
// directories and running ssh-keygen.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "ssh.h"
#include "ssh_internal.h"

namespace custos::service::ssh::testing {

using internal::UniquePkey;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-ssh-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Runs a shell command; returns its exit status and combined output.
inline std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::array<char, 512> buf;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh software key: "ED25519", "P-256", "P-384" or "RSA-3072".
inline UniquePkey NewKey(const std::string& kind) {
  EVP_PKEY* key = nullptr;
  if (kind == "ED25519") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else if (kind == "P-256" || kind == "P-384") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", kind.c_str());
  } else if (kind == "RSA-3072") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072));
  }
  if (key == nullptr) throw std::runtime_error("keygen failed for " + kind);
  return UniquePkey(key);
}

inline Bytes SpkiOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key, &der);
  if (len <= 0) throw std::runtime_error("i2d_PUBKEY failed");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

inline Bytes Sha512(const std::string& data) {
  Bytes out(SHA512_DIGEST_LENGTH);
  SHA512(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Makes a key pair with ssh-keygen ("ed25519", "ecdsa", "rsa") in `dir` and
// returns the path of the private key (the public one is path + ".pub").
inline std::string SshKeygen(const TempDir& dir, const std::string& type, const std::string& name,
                             const std::string& extra = "") {
  const std::string path = dir / name;
  auto [rc, out] =
      RunCommand("ssh-keygen -q -t " + type + " " + extra + " -N '' -C test@custos -f " + path);
  if (rc != 0) throw std::runtime_error("ssh-keygen failed: " + out);
  return path;
}

}  // namespace custos::service::ssh::testing
