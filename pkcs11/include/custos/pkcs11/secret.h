// A byte buffer for PINs and other secrets: wiped on destruction and on move,
// never copied implicitly, never printed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "custos/pkcs11/result.h"

namespace custos::pkcs11 {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::string_view bytes);
  ~SecretBytes();
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  // Explicit copy, so that every duplication of a secret is greppable.
  SecretBytes Clone() const;

  bool empty() const { return bytes_.empty(); }
  std::size_t size() const { return bytes_.size(); }
  // Access for the one place that hands the secret to the module (C_Login).
  const std::uint8_t* data() const { return bytes_.data(); }

 private:
  void Wipe();
  std::vector<std::uint8_t> bytes_;
};

// Reads a PIN from a file; refuses a file that group or other can read or
// write, or that is not a regular file. A trailing newline is dropped.
Result<SecretBytes> ReadPinFile(const std::string& path);
// Reads a PIN from the environment variable `name`; refuses if unset/empty.
Result<SecretBytes> ReadPinEnv(const std::string& name);

}  // namespace custos::pkcs11
