// custos: command-line client for custosd. See `custos --help` and
// client/README.md.
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>

#include "cli.h"

namespace po = boost::program_options;

namespace custos::cli {
namespace {

constexpr const char* kHelp = R"(usage: custos [GLOBAL OPTIONS] COMMAND [ARGS] [OPTIONS]

Commands:
  keys list [--check] [--expiring DURATION] [--json]
        one line per key version; --check compares with the token (TOKEN
        column, unknown token objects); --expiring lists only versions that
        expire within DURATION or have expired
  keys create NAME --type TYPE --usage USAGE [--expires DURATION] [--note TEXT] [--json]
        TYPE: ec-p256 ec-p384 rsa-2048 rsa-3072 rsa-4096 ed25519
        USAGE: code-signing ca ssh-ca timestamping audit
        DURATION: a number with a unit s, m, h or d (365d, 12h, 30s)
  keys show NAME [--json]
  keys rotate NAME [--expires DURATION] [--note TEXT] [--json]
        makes version n+1 active; the previous active version is deactivated
  keys disable NAME[@V]                  active -> deactivated (verify only)
  keys enable NAME[@V]                   deactivated/pre-activation -> active
  keys mark-compromised NAME[@V]         never signs again
  keys destroy NAME[@V]                  deletes the token objects; final
        without @V: the active version, else the highest
        (create, rotate, disable, enable, mark-compromised and destroy take
        --note TEXT, shown to the officers when quorum approval is needed)
  keys pubkey NAME[@V] [--format pem|ssh] [--out FILE]
        PEM SubjectPublicKeyInfo, or (ssh) one OpenSSH line commented
        custos:NAME, for allowed_signers and git's user.signingkey
  keys certify NAME[@V] --profile P [--subject DN] [--validity DURATION]
       [--san TYPE:VALUE]... [--out CERT] [--chain FILE] [--note TEXT] [--json]
        a certificate for a code-signing key from the profile's Custos CA
        (custosd makes the CSR with the key); needed by sign --format cms;
        DN default: OU=NAME (or CN=NAME), within the profile's subject rules
  keys attach-cert NAME[@V] CERT [--chain FILE] [--note TEXT] [--json]
        attaches a certificate issued elsewhere (PEM or DER; its public key
        must be the key's; the chain nearest first, each signed by the next)
  sign --key NAME[@V] [--algorithm ALG] --in FILE --out SIG [--wait DURATION]
       [--note TEXT] [--json]
        --wait: when the key needs quorum approval, wait up to DURATION for
        it and then write the signature; without --wait exit 6 with the id
  sign --key NAME[@V] [--algorithm ALG] [--out-dir DIR] [--wait DURATION]
       [--note TEXT] [--json] FILE... | --files-from LIST
        many files: hashes them in parallel, signs them in batches and writes
        each signature to FILE.sig (or DIR/BASENAME.sig; two files with one
        base name are refused); LIST has one path per line, "-" reads stdin;
        progress on stderr (a bar on a terminal, else a line every 10%); exit
        4 when any file failed (each named on stderr), the others are signed
        --wait: batches held for quorum approval are waited for (one deadline
        for all) and their signatures written once executed
  sign --key NAME[@V] [--algorithm ALG] --manifest OUT [--wait DURATION]
       FILE... | --files-from LIST
        one signature over a manifest: sorted "SHA256  PATH" lines (the
        sha256sum format) written to OUT, its signature to OUT.sig
  sign --format cms --key NAME[@V] --in FILE [--out FILE.p7s]
       [--algorithm sha256|sha384|sha512] [--no-chain] [--note TEXT] [--json]
        detached CMS/PKCS#7 SignedData (DER; default FILE.p7s) with the key's
        certificate and its chain (not with --no-chain); the key needs a
        certificate (keys certify / attach-cert); default digest: sha384 for
        ec-p384 keys, else sha256; keys under quorum are refused. Verify:
        openssl cms -verify -binary -content FILE -inform DER -in FILE.p7s
        -CAfile ROOT -out /dev/null
  verify --key NAME[@V] [--algorithm ALG] --in FILE --sig SIG [--pubkey PEM] [--json]
  ping [--json]
  audit checkpoint [--out FILE] [--json]  latest signed audit checkpoint, to pin
                                          for custos-audit verify --checkpoint

Quorum (operations that need officers' approval; docs/quorum.md):
  request list [--state STATE|all] [--json]
        your requests and, for an officer, those you may vote on (default:
        pending); columns ID STATE OPERATION KEY REQUESTER APPROVALS EXPIRES
  request show ID [--json]
  request wait ID [--timeout DURATION] [--out FILE] [--chain FILE] [--der] [--json]
        until executed (exit 0), denied/expired/invalidated/failed (exit 4)
        or DURATION (default 10m) passes (exit 6); a sign request writes the
        signature to --out, a certificate issuance the certificate (and
        --chain), a CA creation the CA certificate
  policy show [--out FILE] [--json]     the active policy (needs READ_POLICY)
  policy check FILE [--json]            validates FILE offline; with a server,
                                        prints the changes and the quorum needed
  policy propose FILE [--note TEXT] [--json]

SSH (docs/codesigning.md "SSH"):
  ssh sign --key CA[@V] --pubkey ID.pub --principals A[,B...] [--validity DURATION]
       [--type user|host] [--force-command CMD] [--source-address CIDRS]
       [--extension NAME]... [--key-id ID] [--profile P] [--out FILE] [--note TEXT]
       [--json]
        an OpenSSH certificate signed by an ssh-ca key, within the policy's
        ssh profile (principals, validity, extensions); written to ID-cert.pub
        beside ID.pub unless --out (- for stdout); --extension replaces the
        profile's default extensions (user certificates)
  ssh ca-pubkey --key CA[@V] [--out FILE] [--json]
        the CA's OpenSSH line, for sshd's TrustedUserCAKeys and
        "@cert-authority * LINE" in known_hosts
  ssh list [--key CA] [--requester PRINCIPAL] [--json]
        certificates signed (without READ_CERTIFICATES: your own)
  sign --format sshsig --namespace NS --key NAME[@V] --in FILE [--out FILE.sig]
       [--note TEXT] [--json]
        an SSHSIG signature (ssh-keygen -Y sign) with a code-signing key;
        verify with ssh-keygen -Y verify -n NS
  -Y sign -n NS -f PUBKEY [-U] [FILE...]
        ssh-keygen compatible, for git's gpg.ssh.program: signs FILE into
        FILE.sig (stdin to stdout without FILE) with the key named by
        PUBKEY's comment custos:NAME (or $CUSTOS_SIGNING_KEY), connecting with
        $CUSTOS_CONFIG / CUSTOS_* variables; -Y verify, find-principals,
        check-novalidate and match-principals run ssh-keygen itself

CA back-end (docs/operations.md "Certificates and CAs"; DN: RFC 4514, e.g.
"CN=Example Root,O=Example"; certificates in PEM unless --der):
  ca create-root NAME --key KEY[@V] --subject DN --validity DURATION
       [--path-len N] [--out FILE] [--wait DURATION] [--note TEXT] [--json]
  ca create-intermediate NAME --key KEY[@V] --parent CA --subject DN
       [--path-len N] [--validity DURATION] [--out FILE] [--wait DURATION]
       [--note TEXT] [--json]
        KEY: an active key of usage ca; creating a CA needs quorum approval
        (exit 6 with the request id; --wait waits for it); --out writes the
        CA certificate
  ca list [--json]
  ca show NAME [--out FILE] [--der] [--json]
  ca chain NAME [--out FILE] [--json]   the CA certificate and the chain above
                                        it (PEM, nearest first)
  ca csr NAME --key KEY[@V] --subject DN --out FILE [--der] [--note TEXT] [--json]
        a CSR for an external CA; the CA waits in state pending-certificate
  ca import-cert NAME CERT [--chain FILE] [--note TEXT] [--json]
  cert issue --profile P --csr FILE --out CERT [--validity DURATION]
       [--san TYPE:VALUE]... [--chain FILE] [--renews SERIAL] [--der]
       [--wait DURATION] [--note TEXT] [--json]
        CSR in PEM or DER; --san (dns:, ip:, uri:, email:) replaces the CSR's
        names; --chain writes the issuing CA's certificate and those above it
  cert list [--ca NAME] [--requester PRINCIPAL] [--profile P]
       [--expiring DURATION] [--json]
  cert show SERIAL [--ca NAME] [--out FILE] [--der] [--json]
  cert revoke SERIAL --reason REASON [--ca NAME] [--wait DURATION] [--note TEXT] [--json]
        REASON: unspecified keyCompromise cACompromise affiliationChanged
        superseded cessationOfOperation certificateHold privilegeWithdrawn
        aACompromise
  crl --ca NAME [--out FILE] [--der] [--json]
        the CA's current CRL (PEM on stdout without --out)
  After cert, crl and ca commands, --ca names a CA: give the TLS CA file
  with --tls-ca (or before the command). DURATION also takes y (365 days).

  ALG: ecdsa-p256-sha256 ecdsa-p384-sha384 rsa-pkcs1-sha256 rsa-pkcs1-sha384
       rsa-pkcs1-sha512 rsa-pss-sha256 rsa-pss-sha384 rsa-pss-sha512 ed25519
  sign hashes FILE locally and sends only the digest (Ed25519: the file itself,
  at most 64 KiB). Without --algorithm, EC and Ed25519 keys use their only
  algorithm; RSA keys need --algorithm. verify checks locally with the public
  key from the server, or from --pubkey without contacting the server.

Connection settings (from --config FILE, else $CUSTOS_CONFIG; then the
environment variables CUSTOS_SERVER, CUSTOS_CERT, CUSTOS_KEY (TLS private key)
and CUSTOS_CA; flags override both):
  --config FILE          INI file with keys server, cert, key, ca, server-name,
                         timeout-ms, retries (relative paths are relative to FILE)
  --server HOST:PORT     custosd address
  --cert FILE            client certificate (PEM)
  --key FILE             client private key (PEM); after `sign` or `verify`,
                         --key names the signing key instead: use --tls-key
  --tls-key FILE         client private key (PEM), anywhere on the line
  --ca FILE              CA that the server certificate must chain to
                         (--tls-ca FILE anywhere on the line)
  --server-name NAME     name to verify in the server certificate
  --timeout-ms N         request deadline in milliseconds
  --retries N            retries (with backoff) when the server answers
                         UNAVAILABLE or the connection drops; default 3
  --json                 one JSON object on stdout
  -h, --help             this text

Exit codes:
  0  success
  1  signature did not verify
  2  usage or configuration error
  3  could not connect, TLS failed, or no response in time
  4  the server refused (shows status code, message, CKR name / policy rule)
  5  local file error
  6  pending approval: the server holds the operation for quorum approval
     (the request id is printed; see `custos request wait`), or request wait
     timed out while it was still pending
)";

struct Settings {
  std::string config, server, cert, tls_key, ca, server_name;
  std::uint32_t timeout_ms = 0;
  int retries = -1;  // -1: not given
};

// Options that hold connection settings, valid before and after the command.
// `with_key`, `with_ca`: whether --key means the TLS private key and --ca the
// TLS CA file here (else the command gives them another meaning).
po::options_description ConnectionOptions(Settings* s, bool with_key, bool with_ca) {
  po::options_description d;
  d.add_options()("help,h", "")("json", "")("config", po::value(&s->config))(
      "server", po::value(&s->server))("cert", po::value(&s->cert))(
      "tls-key", po::value(&s->tls_key))("server-name", po::value(&s->server_name))(
      "timeout-ms", po::value(&s->timeout_ms))("tls-ca", po::value(&s->ca))("retries",
                                                                            po::value(&s->retries));
  if (with_key) d.add_options()("key", po::value(&s->tls_key));
  if (with_ca) d.add_options()("ca", po::value(&s->ca));
  return d;
}

bool TakesValue(std::string_view option) {
  static const std::set<std::string_view> kValued = {
      "--config", "--server", "--cert",        "--key",        "--tls-key",
      "--ca",     "--tls-ca", "--server-name", "--timeout-ms", "--retries"};
  return kValued.count(option) > 0;
}

struct Command {
  const char* name;
  std::set<std::string> options;  // beyond the connection options
};

const Command kCommands[] = {
    {"keys list", {"check", "expiring"}},
    {"keys create", {"type", "usage", "expires", "note"}},
    {"keys rotate", {"expires", "note"}},
    {"keys disable", {"note"}},
    {"keys enable", {"note"}},
    {"keys destroy", {"note"}},
    {"keys mark-compromised", {"note"}},
    {"keys show", {}},
    {"keys pubkey", {"out", "format"}},
    {"keys certify", {"profile", "subject", "validity", "san", "out", "chain", "wait", "note"}},
    {"keys attach-cert", {"chain", "note"}},
    {"sign",
     {"key", "algorithm", "in", "out", "wait", "note", "files-from", "out-dir", "manifest",
      "format", "namespace", "no-chain"}},
    {"verify", {"key", "algorithm", "in", "sig", "pubkey"}},
    {"ping", {}},
    {"audit checkpoint", {"out"}},
    {"request list", {"state"}},
    {"request show", {}},
    {"request wait", {"timeout", "out", "chain", "der"}},
    {"policy show", {"out"}},
    {"policy check", {}},
    {"policy propose", {"note"}},
    {"ca create-root", {"key", "subject", "validity", "path-len", "out", "wait", "note"}},
    {"ca create-intermediate",
     {"key", "parent", "subject", "validity", "path-len", "out", "wait", "note"}},
    {"ca list", {}},
    {"ca show", {"out", "der"}},
    {"ca chain", {"out"}},
    {"ca csr", {"key", "subject", "out", "der", "note"}},
    {"ca import-cert", {"chain", "note"}},
    {"cert issue",
     {"profile", "csr", "validity", "san", "out", "chain", "renews", "der", "wait", "note"}},
    {"cert list", {"ca", "requester", "profile", "expiring"}},
    {"cert show", {"ca", "out", "der"}},
    {"cert revoke", {"ca", "reason", "wait", "note"}},
    {"crl", {"ca", "out", "der"}},
    {"ssh sign",
     {"key", "pubkey", "principals", "validity", "type", "key-id", "force-command",
      "source-address", "extension", "profile", "out", "wait", "note"}},
    {"ssh ca-pubkey", {"key", "out"}},
    {"ssh list", {"key", "requester"}},
};

int Fail(const Failure& f) {
  std::fflush(stdout);
  if (!f.message.empty()) std::fprintf(stderr, "custos: error: %s\n", f.message.c_str());
  return f.exit_code;
}

int UsageError(const std::string& message) {
  return Fail(Failure{kExitUsage, message + " (see custos --help)"});
}

void Apply(const Settings& s, client::ClientConfig* c) {
  if (!s.server.empty()) c->server = s.server;
  if (!s.cert.empty()) c->cert = s.cert;
  if (!s.tls_key.empty()) c->key = s.tls_key;
  if (!s.ca.empty()) c->ca = s.ca;
  if (!s.server_name.empty()) c->server_name = s.server_name;
  if (s.timeout_ms != 0) c->request_timeout = std::chrono::milliseconds(s.timeout_ms);
  if (s.retries >= 0) c->retries = s.retries;
}

int Run(int argc, char** argv) {
  std::vector<std::string> all(argv + 1, argv + argc);
  // git runs gpg.ssh.program as ssh-keygen: `custos -Y sign -n git -f KEY FILE`.
  if (!all.empty() && all[0] == "-Y") return SshKeygenCompat(all);
  // Split at the first word that is neither an option nor an option's value.
  std::size_t cmd = 0;
  while (cmd < all.size()) {
    const std::string& a = all[cmd];
    if (a.size() < 2 || a[0] != '-') break;
    cmd += (a.find('=') == std::string::npos && TakesValue(a)) ? 2 : 1;
  }
  cmd = std::min(cmd, all.size());
  const std::vector<std::string> global_args(all.begin(), all.begin() + static_cast<long>(cmd));
  const std::vector<std::string> command_args(all.begin() + static_cast<long>(cmd), all.end());

  Settings global, local;
  po::variables_map global_vm, local_vm;
  try {
    po::store(
        po::command_line_parser(global_args)
            .options(ConnectionOptions(&global, /*with_key=*/true, /*with_ca=*/true))
            .style(po::command_line_style::unix_style ^ po::command_line_style::allow_guessing)
            .run(),
        global_vm);
    po::notify(global_vm);
  } catch (const po::error& e) {
    return UsageError(e.what());
  }
  if (global_vm.count("help") || (!command_args.empty() && command_args[0] == "help")) {
    std::fputs(kHelp, stdout);
    return kExitOk;
  }
  if (command_args.empty()) {
    std::fputs(kHelp, stderr);
    return kExitUsage;
  }

  // Command words.
  std::string name = command_args[0];
  std::size_t words = 1;
  if (name == "keys") {
    if (command_args.size() < 2 || command_args[1][0] == '-') {
      return UsageError(
          "keys needs a subcommand: list, create, show, pubkey, rotate, disable, enable, "
          "destroy or mark-compromised");
    }
    name += " " + command_args[1];
    words = 2;
  } else if (name == "audit" || name == "request" || name == "policy" || name == "ca" ||
             name == "cert" || name == "ssh") {
    if (command_args.size() < 2 || command_args[1][0] == '-') {
      const char* subcommands =
          name == "audit"     ? "checkpoint"
          : name == "request" ? "list, show or wait"
          : name == "policy"  ? "show, check or propose"
          : name == "ca" ? "create-root, create-intermediate, list, show, chain, csr or import-cert"
          : name == "ssh" ? "sign, ca-pubkey or list"
                          : "issue, list, show or revoke";
      return UsageError(name + " needs a subcommand: " + subcommands);
    }
    name += " " + command_args[1];
    words = 2;
  }
  const Command* command = nullptr;
  for (const auto& c : kCommands) {
    if (name == c.name) command = &c;
  }
  if (command == nullptr) return UsageError("unknown command '" + name + "'");
  const bool key_is_signing_key = command->options.count("key") > 0;
  const bool ca_is_ca_name = command->options.count("ca") > 0;

  Invocation inv;
  po::options_description local_desc =
      ConnectionOptions(&local, !key_is_signing_key, !ca_is_ca_name);
  if (key_is_signing_key) local_desc.add_options()("key", po::value(&inv.key_name));
  if (ca_is_ca_name) local_desc.add_options()("ca", po::value(&inv.ca_name));
  local_desc.add_options()("type", po::value(&inv.type))("usage", po::value(&inv.usage))(
      "out", po::value(&inv.out))("algorithm", po::value(&inv.algorithm))("in", po::value(&inv.in))(
      "sig", po::value(&inv.sig))("pubkey", po::value(&inv.pubkey))("args", po::value(&inv.args))(
      "expires", po::value(&inv.expires))("expiring", po::value(&inv.expiring))("check", "")(
      "note", po::value(&inv.note))("wait", po::value(&inv.wait))("state", po::value(&inv.state))(
      "timeout", po::value(&inv.timeout))("subject", po::value(&inv.subject))(
      "parent", po::value(&inv.parent))("validity", po::value(&inv.validity))(
      "path-len", po::value(&inv.path_len))("profile", po::value(&inv.profile))(
      "csr", po::value(&inv.csr))("chain", po::value(&inv.chain))("renews", po::value(&inv.renews))(
      "requester", po::value(&inv.requester))("reason", po::value(&inv.reason))(
      "san", po::value(&inv.sans)->composing())("der", "")(
      "files-from", po::value(&inv.files_from))("out-dir", po::value(&inv.out_dir))(
      "manifest", po::value(&inv.manifest))("format", po::value(&inv.format))(
      "namespace", po::value(&inv.sig_namespace))("no-chain", "")(
      "principals", po::value(&inv.principals))("key-id", po::value(&inv.key_id))(
      "force-command", po::value(&inv.force_command))(
      "source-address", po::value(&inv.source_address))("extension",
                                                        po::value(&inv.extensions)->composing());
  po::positional_options_description positional;
  positional.add("args", -1);
  try {
    const std::vector<std::string> rest(command_args.begin() + static_cast<long>(words),
                                        command_args.end());
    po::parsed_options parsed =
        po::command_line_parser(rest)
            .options(local_desc)
            .positional(positional)
            .style(po::command_line_style::unix_style ^ po::command_line_style::allow_guessing)
            .run();
    static const std::set<std::string> kConnection = {
        "help",   "json",        "config",     "server",  "cert", "tls-key",
        "tls-ca", "server-name", "timeout-ms", "retries", "args"};
    for (const auto& o : parsed.options) {
      const bool allowed = kConnection.count(o.string_key) > 0 ||
                           command->options.count(o.string_key) > 0 ||
                           (o.string_key == "key" && !key_is_signing_key) ||
                           (o.string_key == "ca" && !ca_is_ca_name);
      if (!allowed) {
        return UsageError("option --" + o.string_key + " does not apply to '" + name + "'");
      }
    }
    po::store(parsed, local_vm);
    po::notify(local_vm);
  } catch (const po::error& e) {
    return UsageError(e.what());
  }
  if (local_vm.count("help")) {
    std::fputs(kHelp, stdout);
    return kExitOk;
  }
  for (const Settings* given : {&global, &local}) {
    if (given->retries < -1 || given->retries > 100)
      return UsageError("--retries must be 0 to 100");
  }
  inv.json = global_vm.count("json") > 0 || local_vm.count("json") > 0;
  inv.check = local_vm.count("check") > 0;
  inv.der = local_vm.count("der") > 0;
  inv.no_chain = local_vm.count("no-chain") > 0;

  std::string config_path = !local.config.empty() ? local.config : global.config;
  if (config_path.empty()) {
    if (const char* env = std::getenv("CUSTOS_CONFIG"); env != nullptr) config_path = env;
  }
  if (!config_path.empty()) {
    auto loaded = client::LoadClientConfig(config_path);
    if (!loaded.ok()) return Fail(Failure{kExitUsage, loaded.error().message()});
    inv.config = std::move(loaded).value();
  }
  // flags > environment > config file.
  const bool from_env = client::ApplyEnvironment(&inv.config);
  Apply(global, &inv.config);
  Apply(local, &inv.config);
  inv.configured = !config_path.empty() || from_env || !inv.config.server.empty();

  std::optional<Failure> failure;
  int exit_code = kExitOk;
  if (name == "keys list") {
    failure = KeysList(inv);
  } else if (name == "keys create") {
    failure = KeysCreate(inv);
  } else if (name == "keys show") {
    failure = KeysShow(inv);
  } else if (name == "keys pubkey") {
    failure = KeysPubkey(inv);
  } else if (name == "keys rotate") {
    failure = KeysRotate(inv);
  } else if (name == "keys disable" || name == "keys enable" || name == "keys destroy" ||
             name == "keys mark-compromised") {
    failure = KeysStateChange(inv, std::string_view(name).substr(5));
  } else if (name == "keys certify") {
    failure = KeysCertify(inv);
  } else if (name == "keys attach-cert") {
    failure = KeysAttachCert(inv);
  } else if (name == "sign" && inv.format == "cms") {
    failure = SignCms(inv);
  } else if (name == "sign" && inv.format == "sshsig") {
    failure = SignSshsig(inv);
  } else if (name == "sign" && !inv.format.empty() && inv.format != "raw") {
    failure = Failure{kExitUsage, "--format must be raw, cms or sshsig (see custos --help)"};
  } else if (name == "sign") {
    const bool many = !inv.args.empty() || !inv.files_from.empty() || !inv.manifest.empty() ||
                      !inv.out_dir.empty();
    failure = many ? SignMany(inv, &exit_code) : Sign(inv);
  } else if (name == "verify") {
    failure = Verify(inv, &exit_code);
  } else if (name == "ping") {
    failure = Ping(inv);
  } else if (name == "audit checkpoint") {
    failure = AuditCheckpoint(inv);
  } else if (name == "request list") {
    failure = RequestList(inv);
  } else if (name == "request show") {
    failure = RequestShow(inv);
  } else if (name == "request wait") {
    failure = RequestWait(inv);
  } else if (name == "policy show") {
    failure = PolicyShow(inv);
  } else if (name == "policy check") {
    failure = PolicyCheck(inv);
  } else if (name == "policy propose") {
    failure = PolicyPropose(inv);
  } else if (name == "ca create-root" || name == "ca create-intermediate") {
    failure = CaCreate(inv, name == "ca create-root");
  } else if (name == "ca list") {
    failure = CaList(inv);
  } else if (name == "ca show") {
    failure = CaShow(inv);
  } else if (name == "ca chain") {
    failure = CaChain(inv);
  } else if (name == "ca csr") {
    failure = CaCsr(inv);
  } else if (name == "ca import-cert") {
    failure = CaImportCert(inv);
  } else if (name == "cert issue") {
    failure = CertIssue(inv);
  } else if (name == "cert list") {
    failure = CertList(inv);
  } else if (name == "cert show") {
    failure = CertShow(inv);
  } else if (name == "cert revoke") {
    failure = CertRevoke(inv);
  } else if (name == "crl") {
    failure = CrlGet(inv);
  } else if (name == "ssh sign") {
    failure = SshSign(inv);
  } else if (name == "ssh ca-pubkey") {
    failure = SshCaPubkey(inv);
  } else if (name == "ssh list") {
    failure = SshList(inv);
  }
  if (failure) return Fail(*failure);
  if (std::fflush(stdout) != 0) return Fail(Failure{kExitFile, "cannot write to standard output"});
  return exit_code;
}

}  // namespace
}  // namespace custos::cli

int main(int argc, char** argv) { return custos::cli::Run(argc, argv); }
