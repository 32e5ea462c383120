// SigningCore against a real SoftHSM token (one per test, in a temporary
// directory) and a real policy. Nothing is mocked.
#include "custos/service/core.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <variant>

namespace custos::service {
namespace {

namespace v1 = custos::v1;

constexpr char kModule[] = CUSTOS_SOFTHSM2_MODULE;
constexpr char kAdmin[] = "spiffe://test.custos/admin";
constexpr char kBuilder[] = "spiffe://test.custos/builder";
constexpr char kOutsider[] = "spiffe://elsewhere/mallory";

constexpr std::string_view kPolicy = R"pb(
  version: 7
  role { name: "admin" }
  role { name: "builder" }
  binding { principal: "spiffe://test.custos/admin" roles: "admin" }
  binding { principal: "spiffe://test.custos/builder" roles: "builder" }
  key_rule {
    name: "admins-manage-keys"
    roles: "admin"
    operations: [ CREATE, READ, ROTATE, DISABLE, ENABLE, DESTROY, MARK_COMPROMISED ]
    keys: "*"
    usages: "*"
    algorithms: "*"
  }
  key_rule {
    name: "builders-sign-code"
    roles: "builder"
    operations: [ SIGN, READ ]
    keys: "*"
    usages: "code-signing"
    algorithms: "*"
  }
)pb";

policy::Policy MustParse(std::string_view text) {
  auto parsed = policy::Policy::Parse(text);
  if (auto* e = std::get_if<policy::ParseError>(&parsed)) {
    ADD_FAILURE() << e->ToString("test");
  }
  return std::move(std::get<policy::Policy>(parsed));
}

std::string Sha256(std::string_view data) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), n);
}

// Verifies with OpenSSL alone, from the SPKI the service hands out.
bool Verify(const std::string& spki, const EVP_MD* md, const std::string& input,
            const std::string& signature) {
  const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())), EVP_PKEY_free);
  if (!key) return false;
  const auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (md == nullptr) {  // Ed25519: the message itself
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    return EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
           EVP_DigestVerify(ctx.get(), sig, signature.size(), in, input.size()) == 1;
  }
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new(key.get(), nullptr), EVP_PKEY_CTX_free);
  return ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx.get(), md) == 1 &&
         EVP_PKEY_verify(ctx.get(), sig, signature.size(), in, input.size()) == 1;
}

class CoreTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-core-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directory(dir_ / "tokens");
    std::ofstream(dir_ / "softhsm2.conf") << "directories.tokendir = " << (dir_ / "tokens").string()
                                          << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    auto init = pkcs11::InitToken(kModule, "custos-core-test", pkcs11::SecretBytes("so-pin-1"),
                                  pkcs11::SecretBytes("user-pin-1"));
    ASSERT_TRUE(init.ok()) << init.error().message();
    OpenCore();
  }

  void TearDown() override {
    core_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void OpenCore(CoreLimits limits = {}) {
    core_.reset();
    pkcs11::TokenConfig config;
    config.module_path = kModule;
    config.token = "custos-core-test";
    config.pin = pkcs11::SecretBytes("user-pin-1");
    auto token = pkcs11::Token::Open(std::move(config));
    ASSERT_TRUE(token.ok()) << token.error().message();
    auto store = KeyStore::Open((dir_ / "custos.db").string());
    ASSERT_TRUE(store.ok()) << store.error();
    auto core =
        SigningCore::Create(std::move(token.value()), MustParse(kPolicy), std::string(kPolicy),
                            std::move(store.value()), limits, logger_);
    ASSERT_TRUE(core.ok()) << core.error();
    core_ = std::move(core.value());
  }

  v1::Response Call(std::string_view principal, const v1::Request& req) {
    return core_->Handle(principal, "127.0.0.1:5555", req);
  }

  v1::Response Create(std::string_view name, std::string_view type,
                      std::string_view usage = "code-signing",
                      std::string_view principal = kAdmin) {
    v1::Request req;
    req.set_id(++next_id_);
    auto* c = req.mutable_create_key();
    c->set_name(std::string(name));
    c->set_key_type(std::string(type));
    c->set_usage(std::string(usage));
    return Call(principal, req);
  }

  v1::Response Sign(std::string_view key, std::string_view alg, const std::string& digest,
                    std::string_view principal = kBuilder, const std::string& message = "") {
    v1::Request req;
    req.set_id(++next_id_);
    auto* s = req.mutable_sign();
    s->set_key(std::string(key));
    s->set_algorithm(std::string(alg));
    s->set_digest(digest);
    s->set_message(message);
    return Call(principal, req);
  }

  std::string PublicKey(std::string_view key) {
    v1::Request req;
    req.set_id(++next_id_);
    req.mutable_get_public_key()->set_key(std::string(key));
    auto resp = Call(kBuilder, req);
    EXPECT_EQ(resp.status().code(), v1::OK) << resp.status().message();
    return resp.get_public_key().spki_der();
  }

  // A lifecycle request (rotate_key uses `key` as the name).
  v1::Response Lifecycle(std::string_view what, std::string_view key,
                         std::string_view principal = kAdmin, std::uint64_t period = 0) {
    v1::Request req;
    req.set_id(++next_id_);
    if (what == "rotate") {
      req.mutable_rotate_key()->set_name(std::string(key));
      req.mutable_rotate_key()->set_crypto_period_seconds(period);
    } else if (what == "disable") {
      req.mutable_disable_key()->set_key(std::string(key));
    } else if (what == "enable") {
      req.mutable_enable_key()->set_key(std::string(key));
    } else if (what == "destroy") {
      req.mutable_destroy_key()->set_key(std::string(key));
    } else {
      req.mutable_mark_compromised()->set_key(std::string(key));
    }
    return Call(principal, req);
  }

  v1::KeyInfo Show(std::string_view key) {
    v1::Request req;
    req.set_id(++next_id_);
    req.mutable_get_key()->set_key(std::string(key));
    auto resp = Call(kAdmin, req);
    EXPECT_EQ(resp.status().code(), v1::OK) << resp.status().message();
    return resp.get_key();
  }

  std::filesystem::path dir_;
  Logger logger_{LogLevel::kWarn};
  std::unique_ptr<SigningCore> core_;
  std::uint64_t next_id_ = 0;
};

TEST_F(CoreTest, CreateListSignAndVerify) {
  auto created = Create("release", "ec-p256");
  ASSERT_EQ(created.status().code(), v1::OK) << created.status().message();
  EXPECT_EQ(created.id(), next_id_);
  const v1::KeyInfo& info = created.create_key();
  EXPECT_EQ(info.name(), "release");
  EXPECT_EQ(info.key_type(), "ec-p256");
  EXPECT_EQ(info.usage(), "code-signing");
  EXPECT_EQ(info.active_version(), 1u);
  ASSERT_EQ(info.versions_size(), 1);
  EXPECT_EQ(info.versions(0).token_label(), "custos:release@1");
  EXPECT_EQ(info.versions(0).state(), "active");
  EXPECT_EQ(info.versions(0).token_id().size(), 32u);  // 16 bytes, hex
  EXPECT_EQ(info.versions(0).public_key_sha256().size(), 64u);
  ASSERT_EQ(info.algorithms_size(), 1);
  EXPECT_EQ(info.algorithms(0), "ecdsa-p256-sha256");

  v1::Request list;
  list.set_id(99);
  list.mutable_list_keys();
  auto listed = Call(kBuilder, list);
  ASSERT_EQ(listed.status().code(), v1::OK);
  EXPECT_EQ(listed.id(), 99u);
  ASSERT_EQ(listed.list_keys().keys_size(), 1);
  EXPECT_EQ(listed.list_keys().keys(0).name(), "release");

  const std::string digest = Sha256("artifact bytes");
  auto signed_resp = Sign("release", "ecdsa-p256-sha256", digest);
  ASSERT_EQ(signed_resp.status().code(), v1::OK) << signed_resp.status().message();
  EXPECT_EQ(signed_resp.sign().key(), "release");
  EXPECT_EQ(signed_resp.sign().key_version(), 1u);
  EXPECT_EQ(signed_resp.sign().algorithm(), "ecdsa-p256-sha256");
  const std::string spki = PublicKey("release");
  EXPECT_TRUE(Verify(spki, EVP_sha256(), digest, signed_resp.sign().signature()));
  EXPECT_FALSE(Verify(spki, EVP_sha256(), Sha256("other"), signed_resp.sign().signature()));

  // name@1 selects the same version; name@2 does not exist.
  EXPECT_EQ(Sign("release@1", "ecdsa-p256-sha256", digest).status().code(), v1::OK);
  auto v2 = Sign("release@2", "ecdsa-p256-sha256", digest);
  EXPECT_EQ(v2.status().code(), v1::NOT_FOUND);
  EXPECT_EQ(v2.status().message(), "key release has no version 2");

  v1::Request get;
  get.mutable_get_key()->set_key("release");
  auto got = Call(kBuilder, get);
  ASSERT_EQ(got.status().code(), v1::OK);
  EXPECT_EQ(got.get_key().versions(0).public_key_sha256(), info.versions(0).public_key_sha256());
}

TEST_F(CoreTest, Ed25519SignsTheMessage) {
  ASSERT_EQ(Create("ssh-signer", "ed25519").status().code(), v1::OK);
  const std::string message = "commit 1234\n";
  auto resp = Sign("ssh-signer", "ed25519", "", kBuilder, message);
  ASSERT_EQ(resp.status().code(), v1::OK) << resp.status().message();
  EXPECT_TRUE(Verify(PublicKey("ssh-signer"), nullptr, message, resp.sign().signature()));

  auto with_digest = Sign("ssh-signer", "ed25519", Sha256(message));
  EXPECT_EQ(with_digest.status().code(), v1::INVALID_ARGUMENT);
}

TEST_F(CoreTest, Ed25519MessageLimit) {
  CoreLimits limits;
  limits.max_message_bytes = 16;
  OpenCore(limits);
  ASSERT_EQ(Create("ed", "ed25519").status().code(), v1::OK);
  auto resp = Sign("ed", "ed25519", "", kBuilder, std::string(17, 'x'));
  EXPECT_EQ(resp.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(resp.status().message(), "message is 17 bytes; the limit for ed25519 is 16 bytes");
  EXPECT_EQ(Sign("ed", "ed25519", "", kBuilder, std::string(16, 'x')).status().code(), v1::OK);
}

TEST_F(CoreTest, ExistingNameIsAlreadyExists) {
  ASSERT_EQ(Create("dup", "ec-p256").status().code(), v1::OK);
  auto again = Create("dup", "ec-p384");
  EXPECT_EQ(again.status().code(), v1::ALREADY_EXISTS);
  EXPECT_EQ(again.status().message(), "key dup already exists");
}

TEST_F(CoreTest, CreateValidatesNamesTypesAndUsages) {
  EXPECT_EQ(Create("Bad", "ec-p256").status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(Create("k@1", "ec-p256").status().code(), v1::INVALID_ARGUMENT);
  auto type = Create("k", "ec-p521");
  EXPECT_EQ(type.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(type.status().message().find("ec-p521"), std::string::npos);
  auto usage = Create("k", "ec-p256", "email");
  EXPECT_EQ(usage.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(usage.status().message().find("email"), std::string::npos);
}

TEST_F(CoreTest, PermissionDeniedNamesTheRule) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  const std::string digest = Sha256("x");

  // The builder may not create keys.
  auto create = Create("mine", "ec-p256", "code-signing", kBuilder);
  EXPECT_EQ(create.status().code(), v1::PERMISSION_DENIED);
  EXPECT_EQ(create.status().policy_rule(), "default-deny");
  EXPECT_NE(create.status().message().find("permission denied: "), std::string::npos);

  // An outsider gets the same answer for a key that exists and one that does
  // not: no probing for names.
  auto existing = Sign("release", "ecdsa-p256-sha256", digest, kOutsider);
  auto missing = Sign("no-such-key", "ecdsa-p256-sha256", digest, kOutsider);
  EXPECT_EQ(existing.status().code(), v1::PERMISSION_DENIED);
  EXPECT_EQ(existing.status().policy_rule(), "default-deny");
  EXPECT_EQ(missing.status().code(), v1::PERMISSION_DENIED);
  EXPECT_EQ(missing.status().policy_rule(), existing.status().policy_rule());
  std::string existing_msg = existing.status().message();
  std::string missing_msg = missing.status().message();
  existing_msg.replace(existing_msg.find("release"), 7, "KEY");
  missing_msg.replace(missing_msg.find("no-such-key"), 11, "KEY");
  EXPECT_EQ(existing_msg, missing_msg);

  // The builder may sign code-signing keys, so a missing name is NOT_FOUND...
  auto builder_missing = Sign("no-such-key", "ecdsa-p256-sha256", digest);
  EXPECT_EQ(builder_missing.status().code(), v1::NOT_FOUND);
  // ...and a ca key it may not use is refused with the rule that came closest.
  ASSERT_EQ(Create("root-ca", "ec-p256", "ca").status().code(), v1::OK);
  auto ca = Sign("root-ca", "ecdsa-p256-sha256", digest);
  EXPECT_EQ(ca.status().code(), v1::PERMISSION_DENIED);
  EXPECT_FALSE(ca.status().policy_rule().empty());

  // list_keys shows only what the principal may READ.
  v1::Request list;
  list.mutable_list_keys();
  auto as_builder = Call(kBuilder, list);
  ASSERT_EQ(as_builder.list_keys().keys_size(), 1);
  EXPECT_EQ(as_builder.list_keys().keys(0).name(), "release");
  EXPECT_EQ(Call(kOutsider, list).list_keys().keys_size(), 0);
  EXPECT_EQ(Call(kAdmin, list).list_keys().keys_size(), 2);
}

TEST_F(CoreTest, WrongDigestLength) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  auto resp = Sign("release", "ecdsa-p256-sha256", std::string(31, '\x01'));
  EXPECT_EQ(resp.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(resp.status().message(),
            "digest is 31 bytes; ecdsa-p256-sha256 needs a 32-byte SHA-256 digest");
}

TEST_F(CoreTest, AlgorithmMustFitKeyAndBeKnown) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  const std::string digest = Sha256("x");
  auto mismatch = Sign("release", "rsa-pss-sha256", digest);
  EXPECT_EQ(mismatch.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(mismatch.status().message(),
            "algorithm rsa-pss-sha256 does not fit key release (ec-p256); use ecdsa-p256-sha256");
  auto unknown = Sign("release", "ecdsa-sha1", digest);
  EXPECT_EQ(unknown.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(unknown.status().message().find("unknown algorithm \"ecdsa-sha1\""), std::string::npos);
  auto none = Sign("release", "", digest);
  EXPECT_EQ(none.status().code(), v1::INVALID_ARGUMENT);
  auto bad_name = Sign("Release", "ecdsa-p256-sha256", digest);
  EXPECT_EQ(bad_name.status().code(), v1::INVALID_ARGUMENT);
}

TEST_F(CoreTest, BatchWithOneBadItem) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  v1::Request req;
  req.set_id(5);
  auto* b = req.mutable_sign_batch();
  b->set_key("release");
  b->set_algorithm("ecdsa-p256-sha256");
  const std::string inputs[] = {Sha256("a"), std::string(20, 'x'), Sha256("c")};
  const char* refs[] = {"a.tar", "b.tar", "c.tar"};
  for (int i = 0; i < 3; ++i) {
    auto* item = b->add_items();
    item->set_ref(refs[i]);
    item->set_digest(inputs[i]);
  }
  auto resp = Call(kBuilder, req);
  ASSERT_EQ(resp.status().code(), v1::OK) << resp.status().message();
  EXPECT_EQ(resp.id(), 5u);
  const auto& out = resp.sign_batch();
  EXPECT_EQ(out.key(), "release");
  EXPECT_EQ(out.key_version(), 1u);
  ASSERT_EQ(out.results_size(), 3);
  const std::string spki = PublicKey("release");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(out.results(i).ref(), refs[i]);
  }
  EXPECT_EQ(out.results(0).status().code(), v1::OK);
  EXPECT_TRUE(Verify(spki, EVP_sha256(), inputs[0], out.results(0).signature()));
  EXPECT_EQ(out.results(1).status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(out.results(1).status().message(),
            "digest is 20 bytes; ecdsa-p256-sha256 needs a 32-byte SHA-256 digest");
  EXPECT_TRUE(out.results(1).signature().empty());
  EXPECT_EQ(out.results(2).status().code(), v1::OK);
  EXPECT_TRUE(Verify(spki, EVP_sha256(), inputs[2], out.results(2).signature()));
}

TEST_F(CoreTest, BatchOverTheLimitIsRefusedWhole) {
  CoreLimits limits;
  limits.max_batch_items = 2;
  OpenCore(limits);
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  v1::Request req;
  auto* b = req.mutable_sign_batch();
  b->set_key("release");
  b->set_algorithm("ecdsa-p256-sha256");
  for (int i = 0; i < 3; ++i) b->add_items()->set_digest(Sha256(std::to_string(i)));
  auto resp = Call(kBuilder, req);
  EXPECT_EQ(resp.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(resp.status().message(), "sign_batch has 3 items; the limit is 2");
  EXPECT_FALSE(resp.has_sign_batch());
}

TEST_F(CoreTest, KeysSurviveARestart) {
  ASSERT_EQ(Create("release", "ec-p384").status().code(), v1::OK);
  const std::string before = PublicKey("release");
  OpenCore();
  EXPECT_EQ(core_->key_count(), 1u);
  EXPECT_EQ(PublicKey("release"), before);
  const std::string digest(48, '\x07');
  auto resp = Sign("release", "ecdsa-p384-sha384", digest);
  ASSERT_EQ(resp.status().code(), v1::OK) << resp.status().message();
  EXPECT_TRUE(Verify(before, EVP_sha384(), digest, resp.sign().signature()));
}

TEST_F(CoreTest, RsaPssSigns) {
  ASSERT_EQ(Create("rsa", "rsa-2048").status().code(), v1::OK);
  const std::string digest = Sha256("payload");
  auto resp = Sign("rsa", "rsa-pkcs1-sha256", digest);
  ASSERT_EQ(resp.status().code(), v1::OK) << resp.status().message();
  EXPECT_TRUE(Verify(PublicKey("rsa"), EVP_sha256(), digest, resp.sign().signature()));
}

TEST_F(CoreTest, RequestsWithoutPrincipalOrOperation) {
  v1::Request req;
  req.set_id(3);
  req.mutable_list_keys();
  auto anon = Call("", req);
  EXPECT_EQ(anon.status().code(), v1::UNAUTHENTICATED);
  EXPECT_EQ(anon.id(), 3u);
  v1::Request empty;
  empty.set_id(4);
  auto none = Call(kAdmin, empty);
  EXPECT_EQ(none.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(none.id(), 4u);
}

TEST_F(CoreTest, RotateMakesTheNewVersionActiveAndKeepsTheOldForVerify) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  const std::string digest = Sha256("v1 artifact");
  auto old_sig = Sign("release", "ecdsa-p256-sha256", digest);
  ASSERT_EQ(old_sig.status().code(), v1::OK) << old_sig.status().message();
  const std::string v1_spki = PublicKey("release");

  auto rotated = Lifecycle("rotate", "release", kAdmin, 3600);
  ASSERT_EQ(rotated.status().code(), v1::OK) << rotated.status().message();
  const v1::KeyInfo& info = rotated.rotate_key();
  EXPECT_EQ(info.active_version(), 2u);
  ASSERT_EQ(info.versions_size(), 2);
  EXPECT_EQ(info.versions(0).state(), "deactivated");
  EXPECT_EQ(info.versions(1).state(), "active");
  EXPECT_EQ(info.versions(1).token_label(), "custos:release@2");
  EXPECT_GT(info.versions(1).expires_at(), info.versions(1).created_at());
  EXPECT_FALSE(info.versions(1).expired());

  auto new_sig = Sign("release", "ecdsa-p256-sha256", digest);
  ASSERT_EQ(new_sig.status().code(), v1::OK) << new_sig.status().message();
  EXPECT_EQ(new_sig.sign().key_version(), 2u);
  EXPECT_TRUE(Verify(PublicKey("release@2"), EVP_sha256(), digest, new_sig.sign().signature()));

  auto refused = Sign("release@1", "ecdsa-p256-sha256", digest);
  EXPECT_EQ(refused.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_EQ(refused.status().message(),
            "key release@1 is deactivated (verify only); the active version is release@2");
  // The old public key is still served and old signatures still verify.
  EXPECT_EQ(PublicKey("release@1"), v1_spki);
  EXPECT_TRUE(Verify(v1_spki, EVP_sha256(), digest, old_sig.sign().signature()));

  // Everything survives a restart (the store, not only the cache, changed).
  OpenCore();
  EXPECT_EQ(Show("release").active_version(), 2u);
  EXPECT_EQ(Sign("release@1", "ecdsa-p256-sha256", digest).status().code(),
            v1::FAILED_PRECONDITION);
  EXPECT_EQ(Sign("release", "ecdsa-p256-sha256", digest).sign().key_version(), 2u);
}

TEST_F(CoreTest, DisableEnableCompromise) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  const std::string digest = Sha256("x");
  auto disabled = Lifecycle("disable", "release");
  ASSERT_EQ(disabled.status().code(), v1::OK) << disabled.status().message();
  EXPECT_EQ(disabled.disable_key().active_version(), 0u);
  auto unnamed = Sign("release", "ecdsa-p256-sha256", digest);
  EXPECT_EQ(unnamed.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_EQ(unnamed.status().message(),
            "key release has no active version (release@1 is deactivated): enable a version or "
            "rotate");
  EXPECT_EQ(Lifecycle("disable", "release").status().message(),
            "key release@1 is already deactivated");
  // Builders may sign but not change states.
  auto denied = Lifecycle("enable", "release", kBuilder);
  EXPECT_EQ(denied.status().code(), v1::PERMISSION_DENIED);
  EXPECT_NE(denied.status().message().find("enable"), std::string::npos);

  ASSERT_EQ(Lifecycle("enable", "release@1").status().code(), v1::OK);
  EXPECT_EQ(Sign("release", "ecdsa-p256-sha256", digest).status().code(), v1::OK);

  auto compromised = Lifecycle("mark-compromised", "release");
  ASSERT_EQ(compromised.status().code(), v1::OK) << compromised.status().message();
  EXPECT_EQ(compromised.mark_compromised().versions(0).state(), "compromised");
  auto sign = Sign("release@1", "ecdsa-p256-sha256", digest);
  EXPECT_EQ(sign.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_EQ(sign.status().message(), "key release@1 is compromised; release has no active version");
  auto enable = Lifecycle("enable", "release@1");
  EXPECT_EQ(enable.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_NE(enable.status().message().find("can never be active again"), std::string::npos);
  // Rotating is the way out of a compromise.
  ASSERT_EQ(Lifecycle("rotate", "release").status().code(), v1::OK);
  EXPECT_EQ(Sign("release", "ecdsa-p256-sha256", digest).sign().key_version(), 2u);
  EXPECT_EQ(Show("release").versions(0).state(), "compromised");  // not "deactivated"

  EXPECT_EQ(Lifecycle("disable", "nope").status().code(), v1::NOT_FOUND);
  EXPECT_EQ(Lifecycle("disable", "release@7").status().code(), v1::NOT_FOUND);
  EXPECT_EQ(Lifecycle("rotate", "release@1").status().code(), v1::INVALID_ARGUMENT);
}

TEST_F(CoreTest, DestroyRemovesTheTokenObjectsOnce) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  const std::string spki = PublicKey("release");
  auto before = core_->Reconcile();
  ASSERT_TRUE(before.ok) << before.error;
  EXPECT_EQ(before.versions.at("release@1"), "present");

  auto destroyed = Lifecycle("destroy", "release");
  ASSERT_EQ(destroyed.status().code(), v1::OK) << destroyed.status().message();
  EXPECT_EQ(destroyed.destroy_key().versions(0).state(), "destroyed");
  auto after = core_->Reconcile();
  ASSERT_TRUE(after.ok) << after.error;
  EXPECT_EQ(after.versions.at("release@1"), "absent");  // gone from the token
  EXPECT_EQ(after.problems, 0u);
  EXPECT_TRUE(after.unknown.empty());

  auto twice = Lifecycle("destroy", "release@1");
  EXPECT_EQ(twice.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_EQ(twice.status().message(), "key release@1 is already destroyed");
  auto sign = Sign("release@1", "ecdsa-p256-sha256", Sha256("x"));
  EXPECT_EQ(sign.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_EQ(sign.status().message(), "key release@1 is destroyed; release has no active version");
  // Metadata and public key are kept.
  EXPECT_EQ(PublicKey("release@1"), spki);
  OpenCore();
  EXPECT_EQ(Show("release").versions(0).state(), "destroyed");
}

TEST_F(CoreTest, ExpiredVersionDoesNotSign) {
  v1::Request req;
  req.set_id(++next_id_);
  auto* c = req.mutable_create_key();
  c->set_name("short");
  c->set_key_type("ec-p256");
  c->set_usage("code-signing");
  c->set_crypto_period_seconds(1);
  auto created = Call(kAdmin, req);
  ASSERT_EQ(created.status().code(), v1::OK) << created.status().message();
  const std::int64_t expires_at = created.create_key().versions(0).expires_at();
  EXPECT_EQ(expires_at, created.create_key().versions(0).created_at() + 1);
  while (std::time(nullptr) < expires_at) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto sign = Sign("short", "ecdsa-p256-sha256", Sha256("late"));
  EXPECT_EQ(sign.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_NE(sign.status().message().find("key short@1 expired at "), std::string::npos)
      << sign.status().message();
  EXPECT_TRUE(Show("short").versions(0).expired());
  // Disabled, an expired version cannot be enabled again.
  ASSERT_EQ(Lifecycle("disable", "short").status().code(), v1::OK);
  auto enable = Lifecycle("enable", "short@1");
  EXPECT_EQ(enable.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_NE(enable.status().message().find("expired at"), std::string::npos);

  v1::Request too_long = req;
  too_long.mutable_create_key()->set_name("forever");
  too_long.mutable_create_key()->set_crypto_period_seconds(1ull << 40);
  EXPECT_EQ(Call(kAdmin, too_long).status().code(), v1::INVALID_ARGUMENT);
}

TEST_F(CoreTest, ListWithCheckReportsTokenState) {
  ASSERT_EQ(Create("release", "ec-p256").status().code(), v1::OK);
  v1::Request req;
  req.set_id(++next_id_);
  req.mutable_list_keys()->set_check(true);
  auto resp = Call(kAdmin, req);
  ASSERT_EQ(resp.status().code(), v1::OK);
  EXPECT_TRUE(resp.list_keys().checked());
  ASSERT_EQ(resp.list_keys().keys_size(), 1);
  EXPECT_EQ(resp.list_keys().keys(0).versions(0).token_check(), "present");
  EXPECT_EQ(resp.list_keys().unknown_token_objects_size(), 0);
  // Without check, no token_check.
  req.mutable_list_keys()->set_check(false);
  auto plain = Call(kAdmin, req);
  EXPECT_FALSE(plain.list_keys().checked());
  EXPECT_EQ(plain.list_keys().keys(0).versions(0).token_check(), "");
}

}  // namespace
}  // namespace custos::service
