// SSHSIG: signatures from a client-side SHA-512, verified by ssh-keygen -Y.
#include <gtest/gtest.h>

#include "ssh_test_util.h"

namespace custos::service::ssh {
namespace {

using testing::NewKey;
using testing::ReadFile;
using testing::RunCommand;
using testing::Sha512;
using testing::TempDir;
using testing::ToBytes;
using testing::WriteFile;

class SshsigTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SshsigTest, SshKeygenVerifies) {
  TempDir dir;
  auto key = NewKey(GetParam());
  auto pub = PublicKey::FromEvp(key.get());
  auto signer = EvpSigner(key.get());
  ASSERT_TRUE(pub.ok() && signer.ok());

  const std::string message = "release artefact\n" + std::string(100000, 'x');
  WriteFile(dir / "message", message);
  auto armored = SignSshsig(*pub, "file", Sha512(message), *signer);
  ASSERT_TRUE(armored.ok()) << armored.error().ToString();
  WriteFile(dir / "message.sig", *armored);

  // Armor: header, 70-column lines, footer.
  EXPECT_EQ(armored->rfind("-----BEGIN SSH SIGNATURE-----\n", 0), 0u);
  EXPECT_TRUE(armored->ends_with("\n-----END SSH SIGNATURE-----\n"));
  std::size_t pos = armored->find('\n') + 1;
  while (true) {
    const std::size_t end = armored->find('\n', pos);
    const std::string line = armored->substr(pos, end - pos);
    if (line.rfind("-----END", 0) == 0) break;
    EXPECT_LE(line.size(), 70u);
    pos = end + 1;
  }

  WriteFile(dir / "allowed", "builder@custos namespaces=\"file,git\" " + pub->ToLine() + "\n");
  const std::string verify = "ssh-keygen -Y verify -f " + dir / "allowed" +
                             " -I builder@custos -n file -s " + dir / "message.sig" + " < ";
  auto [rc, out] = RunCommand(verify + dir / "message");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Good \"file\" signature for builder@custos"), std::string::npos) << out;

  WriteFile(dir / "modified", message + "!");
  auto [bad_rc, bad_out] = RunCommand(verify + dir / "modified");
  EXPECT_NE(bad_rc, 0) << bad_out;

  auto [nv_rc, nv_out] = RunCommand("ssh-keygen -Y check-novalidate -n file -s " +
                                    dir / "message.sig" + " < " + dir / "message");
  EXPECT_EQ(nv_rc, 0) << nv_out;

  // The namespace is bound into the signature.
  auto [ns_rc, ns_out] =
      RunCommand("ssh-keygen -Y verify -f " + dir / "allowed" + " -I builder@custos -n git -s " +
                 dir / "message.sig" + " < " + dir / "message");
  EXPECT_NE(ns_rc, 0) << ns_out;

  // find-principals recognises the key.
  auto [fp_rc, fp_out] = RunCommand("ssh-keygen -Y find-principals -f " + dir / "allowed" + " -s " +
                                    dir / "message.sig");
  EXPECT_EQ(fp_rc, 0) << fp_out;
  EXPECT_EQ(fp_out, "builder@custos\n");
}

INSTANTIATE_TEST_SUITE_P(Keys, SshsigTest,
                         ::testing::Values("ED25519", "P-256", "P-384", "RSA-3072"));

// PKCS#1 v1.5 signatures are deterministic, so ssh-keygen -Y sign with the
// same RSA key must produce exactly our bytes.
TEST(Sshsig, ByteIdenticalToSshKeygenForRsa) {
  TempDir dir;
  auto key = NewKey("RSA-3072");
  auto pub = PublicKey::FromEvp(key.get());
  auto signer = EvpSigner(key.get());
  ASSERT_TRUE(pub.ok() && signer.ok());
  BIO* bio = BIO_new_file((dir / "key").c_str(), "w");
  ASSERT_NE(bio, nullptr);
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr), 1);
  BIO_free(bio);
  std::filesystem::permissions(
      dir / "key", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  WriteFile(dir / "key.pub", pub->ToLine() + "\n");
  const std::string message = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n";
  WriteFile(dir / "message", message);
  auto [rc, out] =
      RunCommand("ssh-keygen -Y sign -f " + dir / "key" + " -n git " + dir / "message");
  ASSERT_EQ(rc, 0) << out;
  auto ours = SignSshsig(*pub, "git", Sha512(message), *signer);
  ASSERT_TRUE(ours.ok()) << ours.error().ToString();
  EXPECT_EQ(*ours, ReadFile(dir / "message.sig"));
}

TEST(Sshsig, SignedDataLayout) {
  const Bytes digest(64, 0xab);
  auto data = SshsigSignedData("git", digest);
  ASSERT_TRUE(data.ok());
  Writer w;
  w.Raw(ToBytes("SSHSIG"));
  w.String(std::string_view("git"));
  w.String(std::string_view(""));
  w.String(std::string_view("sha512"));
  w.String(digest);
  EXPECT_EQ(*data, w.bytes());
}

TEST(Sshsig, Refusals) {
  auto key = NewKey("ED25519");
  auto pub = PublicKey::FromEvp(key.get());
  auto signer = EvpSigner(key.get());
  ASSERT_TRUE(pub.ok() && signer.ok());
  const Bytes digest(64, 1);
  for (std::string_view ns : {"", "has space", "new\nline", "semi;colon"}) {
    auto r = SignSshsig(*pub, ns, digest, *signer);
    ASSERT_FALSE(r.ok()) << ns;
    EXPECT_EQ(r.error().rule, "sshsig-namespace");
  }
  EXPECT_FALSE(SignSshsig(*pub, std::string(65, 'a'), digest, *signer).ok());
  for (std::size_t size : {0, 32, 48, 63, 65}) {
    auto r = SignSshsig(*pub, "file", Bytes(size, 1), *signer);
    ASSERT_FALSE(r.ok()) << size;
    EXPECT_EQ(r.error().rule, "sshsig-digest");
  }
  auto other = NewKey("ED25519");
  auto wrong = EvpSigner(other.get());
  ASSERT_TRUE(wrong.ok());
  auto r = SignSshsig(*pub, "file", digest, *wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "sshsig-signature");
}

}  // namespace
}  // namespace custos::service::ssh
