// SSH commands of the custos CLI (docs/codesigning.md "SSH"):
//   custos ssh sign | ssh ca-pubkey | ssh list
//   custos sign --format sshsig
//   custos -Y sign|verify|find-principals|check-novalidate|match-principals
// The last is the ssh-keygen subset git calls through gpg.ssh.program:
// "sign" signs through custosd, every other verb runs ssh-keygen itself.
// Files are hashed here (SHA-512, streamed); only the digest is sent.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli.h"

namespace custos::cli {

namespace v1 = custos::v1;

namespace {

// The largest public-key file read (OpenSSH caps key lines at 8 KiB).
constexpr std::size_t kMaxPubkeyFile = 16 * 1024;

Failure Usage(std::string message) { return Failure{kExitUsage, std::move(message)}; }

std::string Trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// The first line of a public-key file that is not blank or a comment.
std::optional<Failure> ReadKeyLine(const std::string& path, std::string* line) {
  std::string text;
  if (auto f = ReadSmallFile(path, kMaxPubkeyFile, "public key file", &text)) return f;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string l = Trim(std::string_view(text).substr(at, nl - at));
    at = nl + 1;
    if (l.empty() || l[0] == '#') continue;
    *line = std::move(l);
    return std::nullopt;
  }
  return Failure{kExitFile, path + " holds no public key line"};
}

// "type base64" of a key line, without the comment.
std::string KeyPart(std::string_view line) {
  const auto first = line.find(' ');
  if (first == std::string_view::npos) return std::string(line);
  const auto second = line.find(' ', first + 1);
  return std::string(line.substr(0, second));
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    std::size_t c = s.find(',', at);
    if (c == std::string::npos) c = s.size();
    std::string item = Trim(std::string_view(s).substr(at, c - at));
    if (!item.empty()) out.push_back(std::move(item));
    at = c + 1;
  }
  return out;
}

std::string Basename(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string CertificateJson(const v1::SshCertificateInfo& c, const std::string& out_path) {
  std::vector<std::string> principals, extensions;
  for (const auto& p : c.principals()) principals.push_back(JsonString(p));
  for (const auto& e : c.extensions()) extensions.push_back(JsonString(e));
  JsonObject o;
  o.Add("key", c.key())
      .Add("serial", std::to_string(c.serial()))
      .Add("key_id", c.key_id())
      .Add("cert_type", c.cert_type())
      .AddRaw("principals", JsonArray(principals))
      .Add("valid_after", c.valid_after())
      .Add("valid_after_utc", FormatUtc(c.valid_after()))
      .Add("valid_before", c.valid_before())
      .Add("valid_before_utc", FormatUtc(c.valid_before()))
      .Add("requester", c.requester())
      .Add("profile", c.profile())
      .Add("subject_fingerprint", c.subject_fingerprint())
      .Add("issued_at", c.issued_at());
  if (!c.certificate().empty()) {
    o.AddRaw("extensions", JsonArray(extensions));
    if (!c.force_command().empty()) o.Add("force_command", c.force_command());
    if (!c.source_address().empty()) o.Add("source_address", c.source_address());
    o.Add("certificate", c.certificate());
  }
  if (!out_path.empty()) o.Add("out", out_path);
  return o.str();
}

std::string JoinList(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

// Hashes `path` ("-": stdin) with SHA-512 and asks custosd for an SSHSIG.
std::optional<Failure> RequestSshsig(Invocation& inv, const std::string& key, const std::string& ns,
                                     const std::string& path, v1::SignSshsigResponse* out) {
  std::string digest;
  if (path == "-") {
    if (auto f = HashFile("/dev/stdin", "SHA512", &digest)) return f;
  } else if (auto f = HashFile(path, "SHA512", &digest)) {
    return f;
  }
  v1::Request req;
  auto* s = req.mutable_sign_sshsig();
  s->set_key(key);
  s->set_namespace_(ns);
  s->set_sha512_digest(digest);
  if (path != "-") s->set_file_name(Basename(path).substr(0, 256));
  req.set_note(inv.note);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  *out = resp.sign_sshsig();
  if (out->armored().rfind("-----BEGIN SSH SIGNATURE-----\n", 0) != 0) {
    return Failure{kExitRefused, "server sent something that is not an SSH signature"};
  }
  return std::nullopt;
}

}  // namespace

std::optional<Failure> SshSign(Invocation& inv) {
  const char* usage =
      "usage: custos ssh sign --key CA[@V] --pubkey ID.pub --principals A[,B...] "
      "[--validity DURATION] [--type user|host] [--force-command CMD] [--source-address LIST] "
      "[--extension NAME]... [--key-id ID] [--profile P] [--out FILE] [--note TEXT] [--json]";
  if (!inv.args.empty() || inv.key_name.empty() || inv.pubkey.empty() || inv.principals.empty()) {
    return Usage(usage);
  }
  if (!inv.wait.empty()) {
    return Usage(
        "--wait does not apply to ssh sign: SSH certificates are never queued for "
        "approval (a profile under quorum is refused)");
  }
  const std::string type = inv.type.empty() ? "user" : inv.type;
  if (type != "user" && type != "host") return Usage("--type must be user or host");
  std::uint64_t validity = 0;
  if (!inv.validity.empty()) {
    if (auto f = ParseDuration(inv.validity, "validity", &validity)) return f;
  }
  std::string line;
  if (auto f = ReadKeyLine(inv.pubkey, &line)) return f;
  const std::vector<std::string> principals = SplitCommas(inv.principals);
  if (principals.empty()) return Usage("--principals names no principal");

  v1::Request req;
  auto* s = req.mutable_ssh_sign_certificate();
  s->set_key(inv.key_name);
  s->set_public_key(line);
  s->set_cert_type(type);
  for (const auto& p : principals) s->add_principals(p);
  s->set_validity_seconds(validity);
  s->set_key_id(inv.key_id);
  s->set_force_command(inv.force_command);
  s->set_source_address(inv.source_address);
  for (const auto& e : inv.extensions) {
    for (const auto& name : SplitCommas(e)) s->add_extensions(name);
  }
  s->set_profile(inv.profile);
  req.set_note(inv.note);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::SshCertificateInfo& c = resp.ssh_sign_certificate();
  if (c.certificate().find("-cert-v01@openssh.com ") == std::string::npos) {
    return Failure{kExitRefused, "server sent something that is not an OpenSSH certificate"};
  }
  // As ssh-keygen -s: id.pub -> id-cert.pub beside it.
  std::string out = inv.out;
  if (out.empty()) {
    const std::string& p = inv.pubkey;
    out =
        (p.size() > 4 && p.compare(p.size() - 4, 4, ".pub") == 0 ? p.substr(0, p.size() - 4) : p) +
        "-cert.pub";
  }
  if (out == "-") {
    std::printf("%s\n", c.certificate().c_str());
    return std::nullopt;
  }
  if (auto f = WriteFile(out, c.certificate() + "\n")) return f;
  if (inv.json) {
    std::printf("%s\n", CertificateJson(c, out).c_str());
  } else {
    std::printf(
        "signed %s certificate serial %llu key id \"%s\" for %s, valid %s to %s, by %s; "
        "written to %s\n",
        c.cert_type().c_str(), static_cast<unsigned long long>(c.serial()), c.key_id().c_str(),
        JoinList(c.principals()).c_str(), FormatUtc(c.valid_after()).c_str(),
        FormatUtc(c.valid_before()).c_str(), c.key().c_str(), out.c_str());
  }
  return std::nullopt;
}

std::optional<Failure> SshCaPubkey(Invocation& inv) {
  if (!inv.args.empty() || inv.key_name.empty()) {
    return Usage("usage: custos ssh ca-pubkey --key CA[@V] [--out FILE] [--json]");
  }
  v1::Request req;
  req.mutable_get_public_key()->set_key(inv.key_name);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const std::string& line = resp.get_public_key().ssh_public_key();
  if (line.empty()) {
    return Failure{kExitRefused, "key " + inv.key_name + " (" + resp.get_public_key().key_type() +
                                     ") has no OpenSSH form"};
  }
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("key", resp.get_public_key().key())
                            .Add("key_version", std::int64_t{resp.get_public_key().key_version()})
                            .Add("ssh_public_key", line)
                            .Add("out", inv.out)
                            .str()
                            .c_str());
  }
  if (!inv.out.empty()) return WriteFile(inv.out, line + "\n");
  if (!inv.json) std::printf("%s\n", line.c_str());
  return std::nullopt;
}

std::optional<Failure> SshList(Invocation& inv) {
  if (!inv.args.empty()) {
    return Usage("usage: custos ssh list [--key CA] [--requester PRINCIPAL] [--json]");
  }
  v1::Request req;
  req.mutable_list_ssh_certificates()->set_key(inv.key_name);
  req.mutable_list_ssh_certificates()->set_requester(inv.requester);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const auto& list = resp.list_ssh_certificates().certificates();
  if (inv.json) {
    std::vector<std::string> items;
    for (const auto& c : list) items.push_back(CertificateJson(c, ""));
    std::printf("%s\n", JsonArray(items).c_str());
    return std::nullopt;
  }
  std::printf("%-20s %-20s %-4s %-20s %-20s %-24s %s\n", "SERIAL", "CA", "TYPE", "VALID-BEFORE",
              "PRINCIPALS", "REQUESTER", "KEY-ID");
  for (const auto& c : list) {
    std::printf("%-20llu %-20s %-4s %-20s %-20s %-24s %s\n",
                static_cast<unsigned long long>(c.serial()), c.key().c_str(), c.cert_type().c_str(),
                FormatUtc(c.valid_before()).c_str(), JoinList(c.principals()).c_str(),
                c.requester().c_str(), c.key_id().c_str());
  }
  return std::nullopt;
}

std::optional<Failure> SignSshsig(Invocation& inv) {
  const char* usage =
      "usage: custos sign --format sshsig --namespace NS --key NAME[@V] --in FILE "
      "[--out FILE.sig] [--note TEXT] [--json]";
  if (!inv.args.empty() || inv.key_name.empty() || inv.in.empty()) return Usage(usage);
  if (inv.sig_namespace.empty()) {
    return Usage(
        "--namespace is required with --format sshsig (git signs in \"git\", files "
        "conventionally in \"file\")");
  }
  if (!inv.algorithm.empty()) {
    return Usage("--algorithm does not apply to sshsig: the key's type decides");
  }
  if (!inv.wait.empty()) {
    return Usage("--wait does not apply to sshsig: keys under quorum are refused for SSHSIG");
  }
  v1::SignSshsigResponse r;
  if (auto f = RequestSshsig(inv, inv.key_name, inv.sig_namespace, inv.in, &r)) return f;
  const std::string out = inv.out.empty() ? inv.in + ".sig" : inv.out;
  if (out == "-") {
    std::fwrite(r.armored().data(), 1, r.armored().size(), stdout);
    return std::nullopt;
  }
  if (auto f = WriteFile(out, r.armored())) return f;
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("key", r.key())
                            .Add("key_version", std::int64_t{r.key_version()})
                            .Add("namespace", inv.sig_namespace)
                            .Add("in", inv.in)
                            .Add("out", out)
                            .Add("ssh_public_key", r.ssh_public_key())
                            .str()
                            .c_str());
  } else {
    std::printf("signed %s (sshsig, namespace %s) with %s@%u: %s\n", inv.in.c_str(),
                inv.sig_namespace.c_str(), r.key().c_str(), r.key_version(), out.c_str());
  }
  return std::nullopt;
}

namespace {

int CompatFail(const std::string& message) {
  std::fprintf(stderr, "custos -Y: %s\n", message.c_str());
  return 255;
}

// Runs ssh-keygen with the same arguments (verify, find-principals, ...).
int ExecSshKeygen(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string name = "ssh-keygen";
  argv.push_back(name.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  execvp(argv[0], argv.data());
  return CompatFail(std::string("cannot run ssh-keygen: ") + std::strerror(errno));
}

}  // namespace

int SshKeygenCompat(const std::vector<std::string>& args) {
  if (args.size() < 2 || args[0] != "-Y") {
    return CompatFail("usage: custos -Y sign -n NAMESPACE -f PUBKEY [-U] [FILE...]");
  }
  if (args[1] != "sign") return ExecSshKeygen(args);
  std::string ns, key_file;
  std::vector<std::string> files;
  for (std::size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "-n" || a == "-f") && i + 1 < args.size()) {
      (a == "-n" ? ns : key_file) = args[++i];
    } else if (a == "-U" || a == "-q") {
      // -U: the key is in an agent; here it is in custosd's HSM either way.
    } else if (a == "-O" && i + 1 < args.size()) {
      return CompatFail("option -O " + args[i + 1] + " is not supported by custos -Y sign");
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      return CompatFail("unknown option " + a +
                        " (custos -Y sign takes -n NAMESPACE -f PUBKEY [-U] [FILE...])");
    } else {
      files.push_back(a);
    }
  }
  if (ns.empty() || key_file.empty()) {
    return CompatFail("usage: custos -Y sign -n NAMESPACE -f PUBKEY [-U] [FILE...]");
  }
  // The Custos key: the pubkey file's comment "custos:NAME" (as `custos keys
  // pubkey --format ssh` writes it), else $CUSTOS_SIGNING_KEY.
  std::string line;
  if (auto f = ReadKeyLine(key_file, &line)) return CompatFail(f->message);
  std::string key;
  if (const auto at = line.find(" custos:"); at != std::string::npos) {
    key = Trim(std::string_view(line).substr(at + 8));
    key = key.substr(0, key.find(' '));
  }
  if (key.empty()) {
    if (const char* env = std::getenv("CUSTOS_SIGNING_KEY"); env != nullptr) key = env;
  }
  if (key.empty()) {
    return CompatFail(key_file +
                      " names no Custos key (no \"custos:NAME\" comment; write it with `custos "
                      "keys pubkey NAME --format ssh`) and CUSTOS_SIGNING_KEY is not set");
  }

  Invocation inv;
  std::string config_path;
  if (const char* env = std::getenv("CUSTOS_CONFIG"); env != nullptr) config_path = env;
  if (!config_path.empty()) {
    auto loaded = client::LoadClientConfig(config_path);
    if (!loaded.ok()) return CompatFail(loaded.error().message());
    inv.config = std::move(loaded).value();
  }
  const bool from_env = client::ApplyEnvironment(&inv.config);
  inv.configured = !config_path.empty() || from_env;
  if (!inv.configured) {
    return CompatFail(
        "no connection settings: set CUSTOS_CONFIG (a client config file) or "
        "CUSTOS_SERVER, CUSTOS_CERT, CUSTOS_KEY and CUSTOS_CA");
  }
  if (files.empty()) files.push_back("-");
  for (const std::string& file : files) {
    v1::SignSshsigResponse r;
    if (auto f = RequestSshsig(inv, key, ns, file, &r)) return CompatFail(f->message);
    // The signature must be by the key the caller named (git compares later).
    if (KeyPart(r.ssh_public_key()) != KeyPart(line)) {
      return CompatFail("custos key " + key + " is not the key in " + key_file + " (" +
                        KeyPart(r.ssh_public_key()) + ")");
    }
    if (file == "-") {
      std::fwrite(r.armored().data(), 1, r.armored().size(), stdout);
      continue;
    }
    const std::string out = file + ".sig";
    if (auto f = WriteFile(out, r.armored())) return CompatFail(f->message);
    std::fprintf(stderr, "Signing file %s\nWrite signature to %s\n", file.c_str(), out.c_str());
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace custos::cli
