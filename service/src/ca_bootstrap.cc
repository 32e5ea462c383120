#include "custos/service/ca_bootstrap.h"

#include <ctime>

#include "core_internal.h"
#include "custos/service/ca.h"
#include "custos/service/key_name.h"

namespace custos::service {

namespace {

using core_internal::Hex;
using core_internal::VersionKey;

struct MadeKey {
  pkcs11::KeyRef ref;
  KeyRecord record;
};

Result<MadeKey> MakeKey(pkcs11::Token& token, const std::string& name, pkcs11::KeyType type,
                        std::int64_t now) {
  auto ref = token.GenerateKeyPair(type, TokenLabel(name, 1));
  if (!ref) return Error{"generating CA key " + name + ": " + ref.error().message()};
  MadeKey out;
  out.ref = std::move(ref.value());
  out.record.name = name;
  out.record.key_type = std::string(pkcs11::KeyTypeName(type));
  out.record.usage = "ca";
  out.record.active_version = 1;
  out.record.created_at = now;
  KeyVersionRecord v;
  v.version = 1;
  v.state = KeyState::kActive;
  v.created_at = now;
  v.state_changed_at = now;
  v.token_label = out.ref.label;
  v.token_id = out.ref.id;
  v.spki_der = out.ref.spki_der;
  out.record.versions.push_back(std::move(v));
  return out;
}

CertificateRecord RecordOf(const std::string& ca, const std::string& profile,
                           const ca::IssuedCertificate& cert, const std::string& requester,
                           std::int64_t now) {
  CertificateRecord r;
  r.ca = ca;
  r.serial = Hex(cert.serial);
  r.profile = profile;
  r.subject = cert.subject;
  for (const auto& san : cert.sans) r.sans.push_back(ca::SanToString(san));
  r.requester = requester;
  r.not_before =
      std::chrono::duration_cast<std::chrono::seconds>(cert.not_before.time_since_epoch()).count();
  r.not_after =
      std::chrono::duration_cast<std::chrono::seconds>(cert.not_after.time_since_epoch()).count();
  r.der = cert.der;
  r.issued_at = now;
  return r;
}

}  // namespace

Result<CaBootstrapResult> BootstrapCaHierarchy(pkcs11::Token& token, KeyStore& store,
                                               const CaBootstrapSpec& spec) {
  for (const auto* name : {&spec.root_name, &spec.intermediate_name}) {
    if (!IsValidKeyName(*name)) {
      return Error{"CA name \"" + *name +
                   "\" is invalid: use 1-64 of a-z 0-9 . _ - starting with a letter or digit"};
    }
    auto existing = store.GetCa(*name);
    if (!existing) return Error{existing.error()};
    if (existing->has_value()) return Error{"a CA named " + *name + " already exists"};
  }
  if (spec.root_name == spec.intermediate_name) {
    return Error{"the root and the intermediate need different names"};
  }
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  std::vector<pkcs11::KeyRef> generated;
  auto cleanup = [&](std::string message) -> Result<CaBootstrapResult> {
    for (const auto& ref : generated) (void)token.DestroyKey(ref);
    return Error{std::move(message)};
  };
  auto root_key = MakeKey(token, spec.root_name, spec.root_key_type, now);
  if (!root_key) return Error{root_key.error()};
  generated.push_back(root_key->ref);
  auto inter_key = MakeKey(token, spec.intermediate_name, spec.intermediate_key_type, now);
  if (!inter_key) return cleanup(inter_key.error());
  generated.push_back(inter_key->ref);

  auto root_pkey = token.OpenSslKey(root_key->ref);
  if (!root_pkey) return cleanup("opening the root key: " + root_pkey.error().message());
  ca::RootRequest rr;
  rr.subject_dn = spec.root_subject;
  rr.validity = spec.root_validity;
  rr.path_len = spec.root_path_len;
  auto root_cert = ca::CreateRoot(rr, root_pkey->get());
  if (!root_cert.ok()) return cleanup("root certificate: " + root_cert.error().ToString());
  auto root_ca = ca::CertificateAuthority::Create(root_cert->der, root_pkey->get());
  if (!root_ca.ok()) return cleanup("root CA: " + root_ca.error().ToString());
  ca::IntermediateRequest ir;
  ir.subject_dn = spec.intermediate_subject;
  ir.spki_der = inter_key->ref.spki_der;
  ir.validity = spec.intermediate_validity;
  ir.path_len = spec.intermediate_path_len;
  ir.crl_urls = spec.intermediate_crl_urls;
  auto inter_cert = ca::CreateIntermediate(*root_ca, ir, {});
  if (!inter_cert.ok()) {
    return cleanup("intermediate certificate: " + inter_cert.error().ToString());
  }

  for (const KeyRecord* rec : {&root_key->record, &inter_key->record}) {
    auto inserted = store.InsertKey(*rec);
    if (!inserted) return cleanup(inserted.error());
    if (*inserted != KeyStore::InsertResult::kInserted) {
      return cleanup("a key named " + rec->name + " already exists in the key store");
    }
    if (rec == &root_key->record) generated.erase(generated.begin());
  }
  generated.clear();

  CaRecord root;
  root.name = spec.root_name;
  root.key = spec.root_name;
  root.key_version = 1;
  root.subject = root_cert->subject;
  root.cert_der = root_cert->der;
  root.created_at = now;
  CaRecord inter;
  inter.name = spec.intermediate_name;
  inter.key = spec.intermediate_name;
  inter.key_version = 1;
  inter.parent = spec.root_name;
  inter.subject = inter_cert->subject;
  inter.cert_der = inter_cert->der;
  inter.chain = {root_cert->der};
  inter.created_at = now;
  for (const CaRecord* rec : {&root, &inter}) {
    auto inserted = store.InsertCa(*rec);
    if (!inserted) return Error{inserted.error()};
    if (*inserted != KeyStore::InsertResult::kInserted) {
      return Error{"a CA named " + rec->name + " already exists"};
    }
  }
  const CertificateRecord root_rec =
      RecordOf(spec.root_name, "ca:root", *root_cert, spec.requester, now);
  const CertificateRecord inter_rec =
      RecordOf(spec.root_name, "ca:intermediate", *inter_cert, spec.requester, now);
  for (const CertificateRecord* rec : {&root_rec, &inter_rec}) {
    auto inserted = store.InsertCertificate(*rec);
    if (!inserted) return Error{inserted.error()};
  }
  CaBootstrapResult out;
  out.root = {root.name, VersionKey(root.name, 1), root_rec.serial, root.subject, root.cert_der};
  out.intermediate = {inter.name, VersionKey(inter.name, 1), inter_rec.serial, inter.subject,
                      inter.cert_der};
  return out;
}

}  // namespace custos::service
