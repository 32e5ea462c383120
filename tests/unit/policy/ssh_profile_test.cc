// Tests for SSH certificate profiles in the policy (ssh_profile.h,
// Policy::CheckSshCertificate, SshPrincipalMatch): the starter profiles as
// custos-init writes them, validation errors with line:column, and decisions
// whose rule names the profile and the violated check.
#include "custos/policy/ssh_profile.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include "custos/policy/policy.h"
#include "custos/policy/quorum.h"

namespace custos::policy {
namespace {

using std::chrono::hours;
using std::chrono::seconds;

constexpr char kIssuer[] = "spiffe://dev.custos.test/issuer";
constexpr char kAdmin[] = "spiffe://dev.custos.test/admin";
constexpr char kBuilder[] = "spiffe://dev.custos.test/builder";

// Lines 1-7 of every test policy.
std::string Head() {
  return "version: 1\n"
         "role { name: \"issuer\" }\n"
         "role { name: \"admin\" }\n"
         "role { name: \"builder\" }\n"
         "binding { principal: \"spiffe://dev.custos.test/issuer\" roles: \"issuer\" }\n"
         "binding { principal: \"spiffe://dev.custos.test/admin\" roles: \"admin\" }\n"
         "binding { principal: \"spiffe://dev.custos.test/builder\" roles: \"builder\" }\n";
}

// The starter policy's ssh profiles (tools/custos-init/custos_init_main.cc).
std::string Starter() {
  return Head() +
         "ssh_profile {\n"
         "  name: \"ssh-user\"\n"
         "  keys: \"*\"\n"
         "  roles: [\"issuer\", \"admin\"]\n"
         "  cert_types: USER\n"
         "  principals: \"[a-z]*\"\n"
         "  max_principals: 8\n"
         "  max_validity: \"24h\"\n"
         "  default_validity: \"8h\"\n"
         "  allowed_extensions: [\"permit-pty\", \"permit-port-forwarding\", "
         "\"permit-agent-forwarding\", \"permit-X11-forwarding\", \"permit-user-rc\"]\n"
         "  default_extensions: [\"permit-pty\", \"permit-port-forwarding\"]\n"
         "  allow_force_command: true\n"
         "}\n"
         "ssh_profile {\n"
         "  name: \"ssh-host\"\n"
         "  keys: \"host-ca*\"\n"
         "  roles: \"admin\"\n"
         "  cert_types: HOST\n"
         "  principals: [\"*.dev.custos.test\", \"localhost\"]\n"
         "  max_validity: \"365d\"\n"
         "  default_validity: \"90d\"\n"
         "}\n";
}

Policy Parse(const std::string& text) {
  auto parsed = Policy::Parse(text);
  if (auto* e = std::get_if<ParseError>(&parsed)) {
    ADD_FAILURE() << e->ToString();
    return std::get<Policy>(Policy::Parse(Head()));
  }
  return std::move(std::get<Policy>(parsed));
}

ParseError ParseFails(const std::string& text) {
  auto parsed = Policy::Parse(text);
  if (auto* e = std::get_if<ParseError>(&parsed)) return *e;
  ADD_FAILURE() << "parsed:\n" << text;
  return {};
}

SshCertRequest UserRequest() {
  SshCertRequest r;
  r.principal = kIssuer;
  r.key_name = "ssh-ca";
  r.kind = SshCertKind::kUser;
  r.principals = {"alice"};
  return r;
}

TEST(SshProfile, StarterProfilesParse) {
  Policy p = Parse(Starter());
  ASSERT_EQ(p.ssh_profiles().size(), 2u);
  const SshProfile& user = p.ssh_profiles()[0];
  EXPECT_EQ(user.name, "ssh-user");
  EXPECT_TRUE(user.user);
  EXPECT_FALSE(user.host);
  EXPECT_EQ(user.roles, (std::vector<std::string>{"issuer", "admin"}));
  EXPECT_EQ(user.max_principals, 8u);
  EXPECT_EQ(user.max_validity, hours(24));
  EXPECT_EQ(user.default_validity, hours(8));
  EXPECT_TRUE(user.allow_force_command);
  EXPECT_FALSE(user.allow_source_address);
  const SshProfile& host = p.ssh_profiles()[1];
  EXPECT_TRUE(host.host);
  EXPECT_EQ(host.max_principals, kSshDefaultMaxPrincipals);
  EXPECT_EQ(host.max_validity, hours(365 * 24));
}

TEST(SshProfile, AllowedWithDefaults) {
  Policy p = Parse(Starter());
  SshCertGrant grant;
  Decision d = p.CheckSshCertificate(UserRequest(), &grant);
  EXPECT_TRUE(d.allowed) << d.reason;
  EXPECT_EQ(d.rule, "ssh-profile:ssh-user");
  EXPECT_EQ(grant.profile, "ssh-user");
  EXPECT_EQ(grant.validity, hours(8));
  EXPECT_EQ(grant.extensions, (std::vector<std::string>{"permit-pty", "permit-port-forwarding"}));

  SshCertRequest r = UserRequest();
  r.validity = hours(24);
  r.extensions = std::vector<std::string>{"permit-user-rc"};
  r.force_command = true;
  d = p.CheckSshCertificate(r, &grant);
  EXPECT_TRUE(d.allowed) << d.reason;
  EXPECT_EQ(grant.validity, hours(24));
  EXPECT_EQ(grant.extensions, (std::vector<std::string>{"permit-user-rc"}));
  // An explicitly empty extension list stays empty.
  r.extensions = std::vector<std::string>{};
  d = p.CheckSshCertificate(r, &grant);
  EXPECT_TRUE(d.allowed) << d.reason;
  EXPECT_TRUE(grant.extensions.empty());

  SshCertRequest h;
  h.principal = kAdmin;
  h.key_name = "host-ca-1";
  h.kind = SshCertKind::kHost;
  h.principals = {"web.dev.custos.test", "localhost"};
  d = p.CheckSshCertificate(h, &grant);
  EXPECT_TRUE(d.allowed) << d.reason;
  EXPECT_EQ(grant.profile, "ssh-host");
  EXPECT_EQ(grant.validity, hours(90 * 24));
  EXPECT_TRUE(grant.extensions.empty());
}

struct Refusal {
  const char* what;
  void (*change)(SshCertRequest&);
  const char* rule;
  const char* reason_part;
};

TEST(SshProfile, RefusalsNameProfileAndCheck) {
  const Refusal cases[] = {
      {"builder has no ssh role", [](SshCertRequest& r) { r.principal = kBuilder; },
       "ssh-profile:ssh-user:roles", "may not sign under ssh profile \"ssh-user\""},
      {"no principal", [](SshCertRequest& r) { r.principal.clear(); }, "ssh-profile:ssh-user:roles",
       "roles: none"},
      {"uppercase principal", [](SshCertRequest& r) { r.principals = {"Root"}; },
       "ssh-profile:ssh-user:principals", "\"Root\" is not allowed"},
      {"digit first",
       [](SshCertRequest& r) {
         r.principals = {"alice", "1x"};
       },
       "ssh-profile:ssh-user:principals", "\"1x\""},
      {"no principals", [](SshCertRequest& r) { r.principals.clear(); },
       "ssh-profile:ssh-user:principals", "at least one principal"},
      {"nine principals",
       [](SshCertRequest& r) { r.principals = {"a", "b", "c", "d", "e", "f", "g", "h", "i"}; },
       "ssh-profile:ssh-user:max_principals", "at most 8"},
      {"validity over 24h", [](SshCertRequest& r) { r.validity = hours(25); },
       "ssh-profile:ssh-user:max_validity", "validity 25h"},
      {"unknown extension",
       [](SshCertRequest& r) { r.extensions = std::vector<std::string>{"no-touch-required"}; },
       "ssh-profile:ssh-user:extensions", "no-touch-required"},
      {"source-address not allowed", [](SshCertRequest& r) { r.source_address = true; },
       "ssh-profile:ssh-user:source_address", "source-address"},
      {"named profile for the wrong key", [](SshCertRequest& r) { r.profile = "ssh-host"; },
       "ssh-profile:ssh-host:roles", "ssh-host"},
      {"unknown profile", [](SshCertRequest& r) { r.profile = "nope"; }, "default-deny",
       "no ssh_profile named \"nope\" (ssh profiles: ssh-user, ssh-host)"},
      {"host certificate by an issuer",
       [](SshCertRequest& r) {
         r.kind = SshCertKind::kHost;
         r.key_name = "host-ca";
         r.principals = {"localhost"};
       },
       "ssh-profile:ssh-host:roles", "it allows roles admin only"},
      {"no host profile for this key",
       [](SshCertRequest& r) {
         r.kind = SshCertKind::kHost;
         r.principals = {"localhost"};
       },
       "default-deny", "no ssh_profile lets key \"ssh-ca\" sign host certificates"},
  };
  Policy p = Parse(Starter());
  for (const Refusal& c : cases) {
    SshCertRequest r = UserRequest();
    c.change(r);
    SshCertGrant grant;
    Decision d = p.CheckSshCertificate(r, &grant);
    EXPECT_FALSE(d.allowed) << c.what;
    EXPECT_EQ(d.rule, c.rule) << c.what << ": " << d.reason;
    EXPECT_NE(d.reason.find(c.reason_part), std::string::npos) << c.what << ": " << d.reason;
  }
}

TEST(SshProfile, HostRefusals) {
  Policy p = Parse(Starter());
  SshCertRequest h;
  h.principal = kAdmin;
  h.key_name = "host-ca";
  h.kind = SshCertKind::kHost;
  h.principals = {"evil.example.com"};
  SshCertGrant grant;
  Decision d = p.CheckSshCertificate(h, &grant);
  EXPECT_EQ(d.rule, "ssh-profile:ssh-host:principals") << d.reason;
  h.principals = {"localhost"};
  h.extensions = std::vector<std::string>{"permit-pty"};
  d = p.CheckSshCertificate(h, &grant);
  EXPECT_EQ(d.rule, "ssh-profile:ssh-host:extensions") << d.reason;
  h.extensions.reset();
  h.force_command = true;
  d = p.CheckSshCertificate(h, &grant);
  EXPECT_EQ(d.rule, "ssh-profile:ssh-host:force_command") << d.reason;
  h.force_command = false;
  h.validity = hours(366 * 24);
  d = p.CheckSshCertificate(h, &grant);
  EXPECT_EQ(d.rule, "ssh-profile:ssh-host:max_validity") << d.reason;
  EXPECT_NE(d.reason.find("366d"), std::string::npos) << d.reason;
}

TEST(SshProfile, PrincipalPatterns) {
  struct Case {
    const char* pattern;
    const char* text;
    bool match;
  };
  const Case cases[] = {
      {"[a-z]*", "alice", true},
      {"[a-z]*", "Alice", false},
      {"[a-z]*", "a", true},
      {"[a-z]*", "", false},
      {"[!0-9]*", "x1", true},
      {"[!0-9]*", "1x", false},
      {"*.dev.custos.test", "a.dev.custos.test", true},
      {"*.dev.custos.test", "dev.custos.test", false},
      {"host-?", "host-1", true},
      {"host-?", "host-12", false},
      {"[ab]c", "bc", true},
      {"[a-]", "-", true},
      {"a*b*c", "axxbyyc", true},
      {"a*b*c", "axxbyy", false},
      {"[a-z", "a", false},  // malformed: never matches
  };
  for (const Case& c : cases) {
    EXPECT_EQ(SshPrincipalMatch(c.pattern, c.text), c.match) << c.pattern << " " << c.text;
  }
  EXPECT_TRUE(SshPrincipalPatternIsWellFormed("[a-z][0-9]*"));
  EXPECT_FALSE(SshPrincipalPatternIsWellFormed("[a-z"));
  EXPECT_FALSE(SshPrincipalPatternIsWellFormed("[]"));
  EXPECT_FALSE(SshPrincipalPatternIsWellFormed("[z-a]"));
  // Hostile input stays linear enough to finish at once.
  EXPECT_FALSE(SshPrincipalMatch("*a*a*a*a*a*a*a*a*b", std::string(200, 'a')));
}

TEST(SshProfile, ValidationErrorsWithPositions) {
  struct Case {
    std::string body;  // from line 8
    int line;
    int column;
    const char* message_part;
  };
  const std::string open = "ssh_profile {\n  name: \"p\"\n";
  const std::string ok_tail =
      "  keys: \"*\"\n  roles: \"issuer\"\n  cert_types: USER\n  principals: \"*\"\n"
      "  max_validity: \"1h\"\n";
  const Case cases[] = {
      {"ssh_profile { keys: \"*\" }\n", 8, 1, "ssh_profile has no name"},
      {"ssh_profile {\n  name: \"Bad\"\n}\n", 9, 9, "is not valid"},
      {open + "  roles: \"issuer\"\n}\n", 8, 1, "names no keys"},
      {open + "  keys: \"a b\"\n}\n", 10, 9, "key pattern \"a b\" can never match"},
      {open + "  keys: \"*\"\n  roles: \"nobody\"\n}\n", 11, 10, "unknown role \"nobody\""},
      {open + "  keys: \"*\"\n  roles: \"issuer\"\n}\n", 8, 1, "lists no cert_types"},
      {open + "  keys: \"*\"\n  roles: \"issuer\"\n  cert_types: USER\n}\n", 8, 1,
       "lists no principals"},
      {open + "  keys: \"*\"\n  roles: \"issuer\"\n  cert_types: USER\n  principals: \"a,b\"\n}\n",
       13, 15, "principal pattern \"a,b\" is not valid"},
      {open + "  keys: \"*\"\n  roles: \"issuer\"\n  cert_types: USER\n  principals: \"[a-z\"\n}\n",
       13, 15, "close every '['"},
      {open + "  keys: \"*\"\n  roles: \"issuer\"\n  cert_types: USER\n  principals: \"*\"\n}\n", 8,
       1, "has no max_validity"},
      {open + ok_tail + "  default_validity: \"2h\"\n}\n", 15, 21,
       "default_validity \"2h\" is longer than max_validity \"1h\""},
      {open + ok_tail + "  max_principals: 300\n}\n", 15, 19,
       "max_principals 300 is more than 256"},
      {open + ok_tail + "  allowed_extensions: \"permit-everything\"\n}\n", 15, 23,
       "unknown extension \"permit-everything\""},
      {open + ok_tail +
           "  allowed_extensions: \"permit-pty\"\n  default_extensions: \"permit-user-rc\"\n}\n",
       16, 23, "default extension \"permit-user-rc\" is not in allowed_extensions"},
      {"ssh_profile {\n  name: \"h\"\n  keys: \"*\"\n  roles: \"issuer\"\n  cert_types: HOST\n"
       "  principals: \"*\"\n  max_validity: \"1h\"\n  allow_force_command: true\n}\n",
       15, 24, "apply to user certificates"},
      {open + ok_tail + "}\n" + open + ok_tail + "}\n", 17, 9,
       "duplicate ssh_profile name \"p\" (first defined at line 9)"},
  };
  for (const Case& c : cases) {
    ParseError e = ParseFails(Head() + c.body);
    EXPECT_NE(e.message.find(c.message_part), std::string::npos) << c.body << "\n" << e.ToString();
    EXPECT_EQ(e.line, c.line) << c.body << "\n" << e.ToString();
    EXPECT_EQ(e.column, c.column) << c.body << "\n" << e.ToString();
  }
}

TEST(SshProfile, QuorumRulesMayNameSshProfiles) {
  // CERT_ISSUE patterns accept "ssh:<name>" (custosd asks for "ssh:" + profile).
  const std::string text = Head() + std::string(Starter()).substr(Head().size()) +
                           "quorum_rule {\n  name: \"q\"\n  operation: CERT_ISSUE\n"
                           "  profiles: \"ssh:ssh-host\"\n  group: \"g\"\n  threshold: 1\n}\n";
  auto parsed = Policy::Parse(text);
  // The group has no officers: the error is about that, not the pattern.
  ASSERT_TRUE(std::holds_alternative<ParseError>(parsed));
  EXPECT_EQ(std::get<ParseError>(parsed).message.find("can never match"), std::string::npos)
      << std::get<ParseError>(parsed).ToString();
}

TEST(SshProfile, DiffPoliciesListsSshProfileChanges) {
  const Policy before = Parse(Starter());
  std::string text = Starter();
  // "24h" written as "1d": no change.
  text.replace(text.find("max_validity: \"24h\""), 19, "max_validity: \"1d\"");
  EXPECT_TRUE(DiffPolicies(before, Parse(text)).empty());
  text.replace(text.find("principals: \"[a-z]*\""), 20, "principals: \"*\"");
  text.replace(text.find("name: \"ssh-host\""), 16, "name: \"ssh-hosts\"");
  const std::vector<std::string> want = {
      "- ssh_profile ssh-host",
      "~ ssh_profile ssh-user: principals [[a-z]*] -> [*]",
      "+ ssh_profile ssh-hosts (keys: [host-ca*], roles: [admin], HOST)",
  };
  EXPECT_EQ(DiffPolicies(before, Parse(text)), want);
}

}  // namespace
}  // namespace custos::policy
