// The state store's CA tables (schema 3): CAs, the certificate inventory with
// renewal links and revocation, CRLs whose numbers only increase, and the
// upgrade from schema 2.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "custos/service/key_store.h"

namespace custos::service {
namespace {

template <typename T>
T V(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.error();
  return std::move(r).value();
}

class CaStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/custos-castore-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = KeyStore::Open(dir_ + "/custos.db");
    ASSERT_TRUE(store.ok()) << store.error();
    store_ = std::move(store.value());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  static CertificateRecord Cert(const std::string& serial, std::int64_t not_after) {
    CertificateRecord c;
    c.ca = "dev-intermediate";
    c.serial = serial;
    c.profile = "tls-server";
    c.subject = "CN=api.dev.custos.test";
    c.sans = {"dns:api.dev.custos.test", "ip:10.0.0.1"};
    c.requester = "spiffe://dev.custos.test/issuer";
    c.not_before = 1700000000;
    c.not_after = not_after;
    c.der = {0x30, 0x00};
    c.issued_at = 1700000000;
    return c;
  }

  std::string dir_;
  std::unique_ptr<KeyStore> store_;
};

TEST_F(CaStoreTest, CasInsertUpdateList) {
  CaRecord root;
  root.name = "dev-root";
  root.key = "dev-root";
  root.key_version = 1;
  root.subject = "CN=Custos Dev Root";
  root.cert_der = {0x30, 0x01, 0x00};
  root.created_at = 1700000000;
  auto inserted = store_->InsertCa(root);
  ASSERT_TRUE(inserted.ok()) << inserted.error();
  EXPECT_EQ(*inserted, KeyStore::InsertResult::kInserted);
  EXPECT_EQ(V(store_->InsertCa(root)), KeyStore::InsertResult::kAlreadyExists);

  CaRecord ext;
  ext.name = "ext";
  ext.key = "ext-key";
  ext.key_version = 2;
  ext.parent = "external";
  ext.subject = "CN=Ext";
  ext.state = "pending-certificate";
  ASSERT_TRUE(store_->InsertCa(ext).ok());
  ext.state = "active";
  ext.cert_der = {0x30, 0x00};
  ext.chain = {{0x30, 0x02, 0x05, 0x00}, {}, std::vector<std::uint8_t>(300, 0xab)};
  ASSERT_TRUE(store_->UpdateCa(ext).ok());
  auto got = store_->GetCa("ext");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->state, "active");
  EXPECT_EQ((*got)->chain, ext.chain);
  EXPECT_EQ((*got)->key_version, 2u);
  CaRecord missing = ext;
  missing.name = "nope";
  EXPECT_FALSE(store_->UpdateCa(missing).ok());
  auto all = store_->ListCas();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "dev-root");
  EXPECT_FALSE(store_->GetCa("nope")->has_value());
}

TEST_F(CaStoreTest, CertificatesRenewalRevocationAndQueries) {
  ASSERT_EQ(V(store_->InsertCertificate(Cert("01aa", 1800000000))),
            KeyStore::InsertResult::kInserted);
  EXPECT_EQ(V(store_->InsertCertificate(Cert("01aa", 1800000000))),
            KeyStore::InsertResult::kAlreadyExists);
  EXPECT_TRUE(V(store_->SerialExists("dev-intermediate", "01aa")));
  EXPECT_FALSE(V(store_->SerialExists("other", "01aa")));
  CertificateRecord renewal = Cert("02bb", 1900000000);
  renewal.renews = "01aa";
  ASSERT_TRUE(store_->InsertCertificate(renewal).ok());
  auto old = store_->GetCertificate("dev-intermediate", "01aa");
  ASSERT_TRUE(old.ok() && old->has_value());
  EXPECT_EQ((*old)->renewed_by, "02bb");
  EXPECT_EQ((*old)->sans, (std::vector<std::string>{"dns:api.dev.custos.test", "ip:10.0.0.1"}));

  CertificateQuery expiring;
  expiring.not_after_from = 1750000000;
  expiring.not_after_to = 1850000000;
  expiring.with_der = false;
  auto soon = store_->ListCertificates(expiring);
  ASSERT_TRUE(soon.ok());
  ASSERT_EQ(soon->size(), 1u);
  EXPECT_EQ((*soon)[0].serial, "01aa");
  EXPECT_TRUE((*soon)[0].der.empty());
  CertificateQuery by_requester;
  by_requester.requester = "spiffe://dev.custos.test/issuer";
  EXPECT_EQ(store_->ListCertificates(by_requester)->size(), 2u);
  by_requester.requester = "someone-else";
  EXPECT_TRUE(store_->ListCertificates(by_requester)->empty());

  CertificateRevocation r{"dev-intermediate", "01aa", "keyCompromise", 1760000000, ""};
  EXPECT_TRUE(V(store_->RevokeCertificate(r)));
  EXPECT_FALSE(V(store_->RevokeCertificate(r)));  // already revoked
  auto revoked = store_->GetCertificate("dev-intermediate", "01aa");
  EXPECT_EQ((*revoked)->state, "revoked");
  EXPECT_EQ((*revoked)->reason, "keyCompromise");
  EXPECT_EQ((*revoked)->revoked_at, 1760000000);
}

TEST_F(CaStoreTest, RevokingACaCertificateRevokesTheCa) {
  CaRecord sub;
  sub.name = "sub";
  sub.key = "sub";
  sub.key_version = 1;
  sub.parent = "dev-root";
  sub.subject = "CN=Sub";
  ASSERT_TRUE(store_->InsertCa(sub).ok());
  CertificateRecord c = Cert("0c", 1900000000);
  c.ca = "dev-root";
  c.profile = "ca:intermediate";
  ASSERT_TRUE(store_->InsertCertificate(c).ok());
  ASSERT_TRUE(V(store_->RevokeCertificate({"dev-root", "0c", "cACompromise", 1, "sub"})));
  EXPECT_EQ(V(store_->GetCa("sub"))->state, "revoked");
}

TEST_F(CaStoreTest, CrlNumbersOnlyIncrease) {
  EXPECT_FALSE(store_->GetCrl("dev-root")->has_value());
  ASSERT_TRUE(V(store_->PutCrl({"dev-root", 1, {0x30, 0x00}, 10, 20})));
  ASSERT_TRUE(V(store_->PutCrl({"dev-root", 2, {0x30, 0x01, 0x00}, 11, 21})));
  EXPECT_FALSE(V(store_->PutCrl({"dev-root", 2, {0x30, 0x00}, 12, 22})));
  EXPECT_FALSE(V(store_->PutCrl({"dev-root", 1, {0x30, 0x00}, 12, 22})));
  auto crl = store_->GetCrl("dev-root");
  ASSERT_TRUE(crl.ok() && crl->has_value());
  EXPECT_EQ((*crl)->number, 2u);
  EXPECT_EQ((*crl)->next_update, 21);
}

TEST_F(CaStoreTest, ExecutionWritesTheCertificateWithTheRequestState) {
  PendingRecord rec;
  rec.id = "rq-ca";
  rec.requester = "p";
  rec.operation = "issue-certificate";
  rec.state = "executing";
  ASSERT_TRUE(store_->InsertPending(rec).ok());
  CertificateRecord c = Cert("0d", 1900000000);
  StoreChange change;
  change.insert_certificate = &c;
  PendingUpdate u;
  u.id = rec.id;
  u.from_states = {"executing"};
  u.to_state = "executed";
  auto done = store_->UpdatePending(u, change);
  ASSERT_TRUE(done.ok()) << done.error();
  EXPECT_TRUE(*done);
  EXPECT_TRUE(V(store_->SerialExists("dev-intermediate", "0d")));
  // The same serial again fails the whole transaction: the state stays.
  PendingRecord rec2 = rec;
  rec2.id = "rq-ca2";
  ASSERT_TRUE(store_->InsertPending(rec2).ok());
  u.id = rec2.id;
  EXPECT_FALSE(store_->UpdatePending(u, change).ok());
  EXPECT_EQ(V(store_->GetPending("rq-ca2"))->state, "executing");
}

TEST_F(CaStoreTest, UpgradesASchema2Database) {
  store_.reset();
  const std::string path = dir_ + "/old.db";
  {
    auto fresh = KeyStore::Open(path);
    ASSERT_TRUE(fresh.ok());
  }
  // Back to schema 2: without the CA tables (3) and the code-signing ones (4).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TABLE cas; DROP TABLE certificates; DROP TABLE crls; "
                         "DROP TABLE ssh_certificates; DROP TABLE key_certificates; "
                         "PRAGMA user_version=2;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto store = KeyStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.error();
  EXPECT_TRUE((*store)->ListCas()->empty());
  ASSERT_TRUE((*store)->InsertCertificate(Cert("0e", 1900000000)).ok());
}

}  // namespace
}  // namespace custos::service
