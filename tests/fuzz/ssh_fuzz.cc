// Fuzz target: the OpenSSH parsers custosd runs on peer bytes (service/src/ssh):
// ParseAuthorizedKey on the public_key of ssh_sign_certificate, PublicKey::FromBlob,
// the wire Reader, and the certificate and SSHSIG builders on hostile principals,
// key ids, options and namespaces. A refusal must name a rule ("ssh-..."/"sshsig-...")
// and say something; a parsed key must print as a line that parses back to the same
// key, and survive SPKI round trips. The first input byte picks the path. Seeds:
// corpus/ssh (key lines made with ssh-keygen, blobs, certificate specs).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ssh/ssh.h"

namespace {

namespace ssh = custos::service::ssh;

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckError(const ssh::Error& e) {
  Check(!e.message.empty());
  Check(e.rule.rfind("ssh", 0) == 0);
}

void RoundTrip(const ssh::PublicKey& key) {
  auto again = ssh::ParseAuthorizedKey(key.ToLine("c"));
  Check(again.ok() && again->key == key && again->comment == "c");
  auto blob = ssh::PublicKey::FromBlob(key.blob());
  Check(blob.ok() && *blob == key);
  Check(key.Fingerprint().rfind("SHA256:", 0) == 0);
  auto spki = key.ToSpki();
  Check(spki.ok());
  auto back = ssh::PublicKey::FromSpki(*spki);
  Check(back.ok() && *back == key);
}

// Two fixed Ed25519 keys (subject and CA) for the certificate builder.
const ssh::PublicKey& FixedKey(std::uint8_t fill) {
  static const auto make = [](std::uint8_t f) {
    ssh::Writer w;
    w.String(std::string_view("ssh-ed25519"));
    std::vector<std::uint8_t> point(32, f);
    w.String(point);
    auto key = ssh::PublicKey::FromBlob(w.bytes());
    Check(key.ok());
    return std::move(key).value();
  };
  static const ssh::PublicKey a = make(1), b = make(2);
  return fill == 1 ? a : b;
}

// Splits `text` at '\n' into at most `n` fields.
std::vector<std::string> Fields(std::string_view text, std::size_t n) {
  std::vector<std::string> out;
  while (out.size() + 1 < n) {
    const auto nl = text.find('\n');
    if (nl == std::string_view::npos) break;
    out.emplace_back(text.substr(0, nl));
    text.remove_prefix(nl + 1);
  }
  out.emplace_back(text);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0] % 4;
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  switch (mode) {
    case 0: {  // an authorized_keys line
      auto key = ssh::ParseAuthorizedKey(text);
      if (key.ok()) {
        RoundTrip(key->key);
      } else {
        CheckError(key.error());
      }
      break;
    }
    case 1: {  // a key blob
      auto key = ssh::PublicKey::FromBlob(input);
      if (key.ok()) {
        RoundTrip(*key);
        Check(key->blob().size() == input.size());
      } else {
        CheckError(key.error());
      }
      break;
    }
    case 2: {  // wire values until the input runs out
      ssh::Reader r(input);
      for (int i = 0; i < 64 && !r.empty(); ++i) {
        const std::size_t before = r.remaining();
        std::span<const std::uint8_t> s;
        bool ok = false;
        switch (i % 3) {
          case 0:
            ok = r.String(&s);
            break;
          case 1:
            ok = r.Mpint(&s);
            break;
          default: {
            std::uint32_t v = 0;
            ok = r.U32(&v);
          }
        }
        Check(r.remaining() <= before);
        if (!ok) break;
      }
      break;
    }
    default: {  // certificate spec and SSHSIG namespace from text fields
      const auto f = Fields(text, 6);
      ssh::CertificateSpec spec;
      spec.type = f[0].size() % 2 == 0 ? ssh::CertType::kUser : ssh::CertType::kHost;
      spec.serial = f[0].size();
      spec.key_id = f.size() > 1 ? f[1] : "";
      if (f.size() > 2) {
        std::string_view p = f[2];
        while (!p.empty() && spec.principals.size() < 300) {
          const auto c = p.find(',');
          spec.principals.emplace_back(p.substr(0, c));
          if (c == std::string_view::npos) break;
          p.remove_prefix(c + 1);
        }
      }
      if (f.size() > 3 && !f[3].empty()) spec.force_command = f[3];
      if (f.size() > 4 && !f[4].empty()) spec.source_address = f[4];
      if (f.size() > 5) spec.extensions = Fields(f[5], 8);
      spec.valid_after = 1;
      spec.valid_before = 2 + f[0].size();
      spec.nonce.assign(32, 7);
      auto tbs = ssh::CertificateToBeSigned(spec, FixedKey(1), FixedKey(2));
      if (!tbs.ok()) CheckError(tbs.error());
      std::vector<std::uint8_t> digest(ssh::kSha512Size, 3);
      auto blob = ssh::SshsigSignedData(spec.key_id, digest);
      if (!blob.ok()) CheckError(blob.error());
      break;
    }
  }
  return 0;
}
