// custos-init dev: what it makes, and that it never overwrites a deployment.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "harness.h"

namespace custos::testing {
namespace {

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(CustosInit, MakesACompleteDeploymentWithPrivateSecrets) {
  Deployment d;
  for (const char* f :
       {"custosd.conf", "policy.txtpb", "softhsm2.conf", "pki/ca.crt", "pki/server.crt",
        "pki/server.key", "clients/builder.conf", "clients/issuer.conf", "clients/admin.conf",
        "officers/alice.key", "officers/bob.pub", "officers/carol.conf", "secrets/user.pin"}) {
    struct stat st {};
    EXPECT_EQ(stat((d.dir() + "/" + f).c_str(), &st), 0) << "missing " << f;
  }
  for (const char* f : {"secrets/user.pin", "secrets/so.pin", "pki/server.key", "pki/ca.key",
                        "clients/builder.key", "officers/alice.key"}) {
    EXPECT_EQ(ModeOf(d.dir() + "/" + f) & 077, 0u) << f << " is readable by group or other";
  }
  // The server certificate chains to the dev CA and names 127.0.0.1.
  CommandResult v =
      Exec({"openssl", "verify", "-CAfile", d.dir() + "/pki/ca.crt", d.dir() + "/pki/server.crt"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  CommandResult t = Exec(
      {"openssl", "x509", "-in", d.dir() + "/pki/server.crt", "-noout", "-ext", "subjectAltName"});
  EXPECT_NE(t.out.find("127.0.0.1"), std::string::npos) << t.out;
  // The PIN never appears in the daemon config.
  EXPECT_EQ(ReadFile(d.dir() + "/custosd.conf").find(d.user_pin()), std::string::npos);
  // The token is there and the user PIN logs in.
  CommandResult p = Exec({"pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH, "--token-label",
                          "custos-dev", "--login", "--pin", d.user_pin(), "--list-objects"},
                         {{"SOFTHSM2_CONF", d.softhsm_conf()}});
  EXPECT_EQ(p.exit_code, 0) << p.out << p.err;
}

TEST(CustosInit, RefusesToOverwriteAnExistingDeployment) {
  Deployment d;
  const std::string before = ReadFile(d.dir() + "/custosd.conf");
  CommandResult r = Exec({BinPath("custos-init"), "dev", "--dir", d.dir()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("refusing"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(d.dir() + "/custosd.conf"), before);
}

TEST(CustosInit, RefusesAPinFileOthersCanRead) {
  Deployment d;
  ASSERT_EQ(chmod((d.dir() + "/secrets/user.pin").c_str(), 0644), 0);
  EXPECT_FALSE(d.Start());
  EXPECT_NE(d.log().find("chmod"), std::string::npos) << d.log();
}

}  // namespace
}  // namespace custos::testing
