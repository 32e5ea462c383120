// A throw-away SoftHSM token for pkcs11/ tests: a temporary directory with a
// softhsm2.conf and a token directory, SOFTHSM2_CONF pointing at it, and one
// token initialised through custos::pkcs11::InitToken. Removed on
// destruction. Because SoftHSM reads SOFTHSM2_CONF in C_Initialize, create
// this before opening any Token in the test, and drop every Token first.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "custos/pkcs11/token.h"

namespace custos::pkcs11::testing {

inline constexpr char kModule[] = CUSTOS_SOFTHSM2_MODULE;
inline constexpr char kUserPin[] = "user-pin-1234";
inline constexpr char kSoPin[] = "so-pin-5678";

class SoftHsmToken {
 public:
  explicit SoftHsmToken(std::string label = "custos-test") : label_(std::move(label)) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-p11-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    std::filesystem::create_directory(dir_ / "tokens");
    std::ofstream(dir_ / "softhsm2.conf") << "directories.tokendir = " << (dir_ / "tokens").string()
                                          << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    Status s = InitToken(kModule, label_, SecretBytes(kSoPin), SecretBytes(kUserPin));
    if (!s.ok()) throw std::runtime_error("InitToken: " + s.error().message());
  }
  ~SoftHsmToken() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;

  const std::string& label() const { return label_; }
  const std::filesystem::path& dir() const { return dir_; }

  TokenConfig Config(std::string pin = kUserPin) const {
    TokenConfig config;
    config.module_path = kModule;
    config.token = label_;
    config.pin = SecretBytes(pin);
    return config;
  }

 private:
  std::string label_;
  std::filesystem::path dir_;
};

}  // namespace custos::pkcs11::testing
