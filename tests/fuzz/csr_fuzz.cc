// Fuzz target: ca::Csr::Parse, the CSR path of certificate issuance, on
// arbitrary bytes (DER or PEM). A refusal must name a rule and say something;
// a parsed CSR must be strict DER that parses again to the same request, and
// its public key is then run through the subject key checks (CheckSubjectKey)
// with a profile that admits every algorithm, so that key decoding, the RSA
// checks and the EC point check see hostile keys too. Seeds: corpus/csr
// (real CSRs made with openssl, a PEM one, a bad signature, a truncation).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "custos/service/ca.h"

namespace {

namespace ca = custos::service::ca;

void Check(bool condition) {
  if (!condition) std::abort();
}

const ca::Profile& AnyKeyProfile() {
  static const ca::Profile profile = [] {
    ca::Profile p;
    p.name = "fuzz";
    p.key_algorithms = {ca::KeyAlgorithm::kEcP256, ca::KeyAlgorithm::kEcP384,
                        ca::KeyAlgorithm::kRsa, ca::KeyAlgorithm::kEd25519};
    p.rsa_min_bits = 2048;
    return p;
  }();
  return profile;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  auto csr = ca::Csr::Parse(input);
  if (!csr.ok()) {
    Check(!csr.error().rule.empty() && !csr.error().message.empty());
    return 0;
  }
  // The DER a CSR keeps is the input itself for DER input, and always parses
  // again to the same request.
  const bool pem = size > 0 && (data[0] == '-' || data[0] == ' ' || data[0] == '\n' ||
                                data[0] == '\r' || data[0] == '\t');
  if (!pem) {
    Check(csr->der().size() == size);
    Check(std::equal(csr->der().begin(), csr->der().end(), data));
  }
  auto again = ca::Csr::Parse(csr->der());
  Check(again.ok());
  Check(again->der() == csr->der());
  Check(again->spki_der() == csr->spki_der());
  Check(again->subject() == csr->subject());
  Check(again->sans() == csr->sans());
  Check(again->extensions().size() == csr->extensions().size());
  Check(!csr->spki_der().empty());
  for (const ca::San& san : csr->sans()) (void)ca::SanToString(san);

  const ca::Status key = ca::CheckSubjectKey(csr->spki_der(), AnyKeyProfile(), {});
  if (!key.ok()) Check(!key.error().rule.empty() && !key.error().message.empty());
  return 0;
}
