// Policy::Parse (text format + semantic validation) and Policy::Check.
#include "custos/policy/policy.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "custos/policy/approval.h"
#include "custos/policy/quorum.h"
#include "custos/policy/v1/policy.pb.h"
#include "policy_impl.h"
#include "profile_rules.h"
#include "source_text.h"

namespace custos::policy {
namespace {

namespace pb = ::custos::policy::v1;
using ::custos::policy::internal::Position;
using ::custos::policy::internal::RoleSet;
using ::custos::policy::internal::SourceText;
using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::TextFormat;
using ParseInfoTree = ::google::protobuf::TextFormat::ParseInfoTree;

// A policy is written by people; anything this large is a mistake, and the
// bound keeps the text within protobuf's int-sized streams.
constexpr std::size_t kMaxPolicyBytes = 4 << 20;

// Our own name tables: policy/ depends on nothing of ours (see
// pkcs11/include/custos/pkcs11/algorithms.h for the same names).
constexpr std::array<std::string_view, 5> kUsages = {"code-signing", "ca", "ssh-ca", "timestamping",
                                                     "audit"};
constexpr std::array<std::string_view, 9> kSignAlgorithms = {
    "ecdsa-p256-sha256", "ecdsa-p384-sha384", "rsa-pkcs1-sha256",
    "rsa-pkcs1-sha384",  "rsa-pkcs1-sha512",  "rsa-pss-sha256",
    "rsa-pss-sha384",    "rsa-pss-sha512",    "ed25519"};
constexpr std::array<std::string_view, 6> kKeyTypes = {"ec-p256",  "ec-p384",  "rsa-2048",
                                                       "rsa-3072", "rsa-4096", "ed25519"};

template <std::size_t N>
bool Contains(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

template <std::size_t N>
std::string JoinNames(const std::array<std::string_view, N>& names) {
  std::string out;
  for (auto name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// [a-z0-9][a-z0-9._-]{0,63}: role and key rule names (and key names).
bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [&](char c) { return lower_or_digit(c) || c == '.' || c == '_' || c == '-'; });
}

// Key patterns may use the key-name alphabet plus the two wildcards; anything
// else could never match a key and would silently narrow access.
bool IsValidKeyPattern(std::string_view pattern) {
  return !pattern.empty() && std::all_of(pattern.begin(), pattern.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
           c == '*' || c == '?';
  });
}

bool HasControlCharacter(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// Request fields end up in logs and must not be able to forge lines: bytes
// outside printable ASCII, '"' and '\\' are escaped.
void AppendEscaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
}

void AppendQuoted(std::string& out, std::string_view s) {
  out += '"';
  AppendEscaped(out, s);
  out += '"';
}

std::string Quoted(std::string_view s) {
  std::string out;
  AppendQuoted(out, s);
  return out;
}

// Keeps the first error protobuf reports (the parser stops there anyway).
class FirstErrorCollector final : public ::google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, ::google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (error_) return;
    error_ = Error{line, column, message};
  }
  void AddWarning(int, ::google::protobuf::io::ColumnNumber, const std::string&) override {}

  struct Error {
    int line;
    int column;
    std::string message;
  };
  const std::optional<Error>& error() const { return error_; }

 private:
  std::optional<Error> error_;
};

unsigned OperationBit(Operation op) { return 1u << static_cast<unsigned>(op); }

constexpr std::string_view kAdminOperationNames =
    "READ_POLICY, PROPOSE_POLICY, MANAGE_CA, REVOKE_CERTIFICATE or READ_CERTIFICATES";

}  // namespace

std::string ParseError::ToString(std::string_view file_name) const {
  std::string out(file_name);
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  out += ": ";
  out += message;
  return out;
}

std::string_view OperationName(Operation op) {
  switch (op) {
    case Operation::kSign:
      return "sign";
    case Operation::kCreate:
      return "create";
    case Operation::kRead:
      return "read";
    case Operation::kRotate:
      return "rotate";
    case Operation::kDisable:
      return "disable";
    case Operation::kEnable:
      return "enable";
    case Operation::kDestroy:
      return "destroy";
    case Operation::kMarkCompromised:
      return "mark-compromised";
  }
  return "unknown";
}

namespace {

// Semantic validation of a parsed PolicyFile into Policy::Impl. Every error
// carries the position of the offending value when the ParseInfoTree has it.
class Compiler {
 public:
  Compiler(const SourceText& source, const ParseInfoTree& tree) : source_(source), tree_(tree) {}

  std::optional<ParseError> Compile(const pb::PolicyFile& file, internal::CompiledPolicy& impl);

 private:
  // Position of the index-th value of `field` (index -1 for a singular field)
  // in the message described by `tree`. For a message-typed field, the
  // position of its name (or of its element in a `[...]` list).
  Position Locate(const ParseInfoTree* tree, const FieldDescriptor* field, int index) const;

  ParseError ErrorAt(Position pos, std::string message) const {
    return ParseError{pos.line, pos.column, std::move(message)};
  }

  std::string DeclaredRoles() const {
    if (role_ids_.empty()) return "no roles are declared";
    std::string out = "declared roles: ";
    for (std::size_t i = 0; i < impl_roles_->size(); ++i) {
      if (i > 0) out += ", ";
      out += (*impl_roles_)[i];
    }
    return out;
  }

  std::optional<ParseError> CompileRoles(const pb::PolicyFile& file,
                                         internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileBindings(const pb::PolicyFile& file,
                                            internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileRules(const pb::PolicyFile& file,
                                         internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileOfficers(const pb::PolicyFile& file,
                                            internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileQuorumSettings(const pb::PolicyFile& file,
                                                  internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileQuorumRules(const pb::PolicyFile& file,
                                               internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileAdminRules(const pb::PolicyFile& file,
                                              internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileProfiles(const pb::PolicyFile& file,
                                            internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileProfile(const pb::Profile& profile, const ParseInfoTree* tree,
                                           Position at, CertProfile& out,
                                           std::vector<std::uint32_t>& roles) const;
  std::optional<ParseError> CompileSanRules(const pb::SanRules& san, const ParseInfoTree* tree,
                                            Position at, const std::string& what,
                                            CertSanRules& out) const;
  std::optional<ParseError> CompileSubjectRules(const pb::SubjectRules& subject,
                                                const ParseInfoTree* tree, Position at,
                                                const std::string& what,
                                                CertSubjectRules& out) const;
  std::optional<ParseError> CompileCaSettings(const pb::PolicyFile& file,
                                              internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileSshProfiles(const pb::PolicyFile& file,
                                               internal::CompiledPolicy& impl);
  std::optional<ParseError> CompileSshProfile(const pb::SshProfile& profile,
                                              const ParseInfoTree* tree, Position at,
                                              SshProfile& out,
                                              std::vector<std::uint32_t>& roles) const;

  // Resolves the role names of repeated field `field` in `tree` to ids
  // (sorted, without duplicates); `what` names the owner in messages
  // ("binding for \"p\""). `names` must not be empty.
  std::optional<ParseError> ResolveRoles(
      const google::protobuf::RepeatedPtrField<std::string>& names, const ParseInfoTree* tree,
      const FieldDescriptor* field, const std::string& what, std::vector<std::uint32_t>& out) const;

  const SourceText& source_;
  const ParseInfoTree& tree_;
  std::vector<std::pair<std::string_view, std::uint32_t>> role_ids_;  // sorted by name
  const std::vector<std::string>* impl_roles_ = nullptr;
};

Position Compiler::Locate(const ParseInfoTree* tree, const FieldDescriptor* field,
                          int index) const {
  if (tree == nullptr || field == nullptr) return Position{};
  const bool is_message = field->type() == FieldDescriptor::TYPE_MESSAGE;
  if (!field->is_repeated()) {
    const auto loc = tree->GetLocation(field, -1);
    if (loc.line < 0) return Position{};
    if (is_message) return source_.FromProtobuf(loc.line, loc.column);
    const auto values = source_.ValueOffsets(source_.OffsetOf(loc.line, loc.column));
    return source_.PositionOf(values.empty() ? source_.OffsetOf(loc.line, loc.column) : values[0]);
  }
  // The ParseInfoTree records one location per occurrence of the field, and a
  // `field: [a, b]` list is one occurrence: count the values in each.
  Position first{};
  int seen = 0;
  for (int j = 0;; ++j) {
    const auto loc = tree->GetLocation(field, j);
    if (loc.line < 0) break;
    const std::size_t start = source_.OffsetOf(loc.line, loc.column);
    if (j == 0) first = source_.PositionOf(start);
    bool is_list = false;
    const auto values = source_.ValueOffsets(start, &is_list);
    if (index < seen + static_cast<int>(values.size())) {
      const auto offset = values[static_cast<std::size_t>(index - seen)];
      // `role { ... }` points at "role"; a list element at the element.
      return source_.PositionOf(is_message && !is_list ? start : offset);
    }
    seen += static_cast<int>(values.size());
  }
  return first;
}

std::optional<ParseError> Compiler::Compile(const pb::PolicyFile& file,
                                            internal::CompiledPolicy& impl) {
  const Descriptor* d = pb::PolicyFile::descriptor();
  if (file.version() == 0) {
    return ErrorAt(Locate(&tree_, d->FindFieldByName("version"), -1),
                   "missing \"version\": set version: 1 and increase it with every change");
  }
  impl.version = file.version();
  if (auto error = CompileRoles(file, impl)) return error;
  if (auto error = CompileBindings(file, impl)) return error;
  if (auto error = CompileRules(file, impl)) return error;
  if (auto error = CompileOfficers(file, impl)) return error;
  if (auto error = CompileQuorumSettings(file, impl)) return error;
  if (auto error = CompileQuorumRules(file, impl)) return error;
  if (auto error = CompileAdminRules(file, impl)) return error;
  if (auto error = CompileProfiles(file, impl)) return error;
  if (auto error = CompileSshProfiles(file, impl)) return error;
  return CompileCaSettings(file, impl);
}

std::optional<ParseError> Compiler::CompileRoles(const pb::PolicyFile& file,
                                                 internal::CompiledPolicy& impl) {
  const FieldDescriptor* role_field = pb::PolicyFile::descriptor()->FindFieldByName("role");
  const FieldDescriptor* name_field = pb::Role::descriptor()->FindFieldByName("name");
  impl_roles_ = &impl.roles;
  // Views into `file`, which outlives this function's use of them.
  std::unordered_map<std::string_view, int> first_index;
  for (int i = 0; i < file.role_size(); ++i) {
    const pb::Role& role = file.role(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(role_field, i);
    auto at = [&] { return Locate(&tree_, role_field, i); };
    if (role.name().empty()) return ErrorAt(at(), "role has no name");
    const Position name_at = Locate(tree, name_field, -1);
    if (!IsValidName(role.name())) {
      return ErrorAt(name_at, "role name " + Quoted(role.name()) +
                                  " is not valid: use 1 to 64 characters from [a-z0-9._-], "
                                  "starting with a letter or digit");
    }
    if (auto [it, inserted] = first_index.emplace(role.name(), i); !inserted) {
      const Position first = Locate(tree_.GetTreeForNested(role_field, it->second), name_field, -1);
      return ErrorAt(name_at, "duplicate role " + Quoted(role.name()) +
                                  " (first declared at line " + std::to_string(first.line) + ")");
    }
    impl.roles.push_back(role.name());
  }
  for (std::size_t i = 0; i < impl.roles.size(); ++i) {
    role_ids_.emplace_back(impl.roles[i], static_cast<std::uint32_t>(i));
  }
  std::sort(role_ids_.begin(), role_ids_.end());
  return std::nullopt;
}

std::optional<ParseError> Compiler::ResolveRoles(
    const google::protobuf::RepeatedPtrField<std::string>& names, const ParseInfoTree* tree,
    const FieldDescriptor* field, const std::string& what, std::vector<std::uint32_t>& out) const {
  for (int i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    auto it = std::lower_bound(role_ids_.begin(), role_ids_.end(),
                               std::pair<std::string_view, std::uint32_t>(name, 0));
    if (it == role_ids_.end() || it->first != name) {
      return ErrorAt(Locate(tree, field, i),
                     what + " names unknown role " + Quoted(name) + " (" + DeclaredRoles() + ")");
    }
    out.push_back(it->second);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileBindings(const pb::PolicyFile& file,
                                                    internal::CompiledPolicy& impl) {
  const FieldDescriptor* binding_field = pb::PolicyFile::descriptor()->FindFieldByName("binding");
  const Descriptor* d = pb::Binding::descriptor();
  const FieldDescriptor* principal_field = d->FindFieldByName("principal");
  const FieldDescriptor* roles_field = d->FindFieldByName("roles");
  for (int i = 0; i < file.binding_size(); ++i) {
    const pb::Binding& binding = file.binding(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(binding_field, i);
    auto at = [&] { return Locate(&tree_, binding_field, i); };
    if (binding.principal().empty()) {
      return ErrorAt(at(), "binding has no principal pattern (use \"*\" to match every principal)");
    }
    if (HasControlCharacter(binding.principal())) {
      return ErrorAt(Locate(tree, principal_field, -1), "binding principal pattern " +
                                                            Quoted(binding.principal()) +
                                                            " contains a control character");
    }
    const std::string what = "binding for " + Quoted(binding.principal());
    if (binding.roles().empty()) return ErrorAt(at(), what + " names no roles");
    internal::CompiledPolicy::Binding compiled;
    compiled.principal = binding.principal();
    if (auto error = ResolveRoles(binding.roles(), tree, roles_field, what, compiled.roles)) {
      return error;
    }
    impl.bindings.push_back(std::move(compiled));
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileRules(const pb::PolicyFile& file,
                                                 internal::CompiledPolicy& impl) {
  const FieldDescriptor* rule_field = pb::PolicyFile::descriptor()->FindFieldByName("key_rule");
  const Descriptor* d = pb::KeyRule::descriptor();
  const FieldDescriptor* name_field = d->FindFieldByName("name");
  const FieldDescriptor* roles_field = d->FindFieldByName("roles");
  const FieldDescriptor* operations_field = d->FindFieldByName("operations");
  const FieldDescriptor* keys_field = d->FindFieldByName("keys");
  const FieldDescriptor* usages_field = d->FindFieldByName("usages");
  const FieldDescriptor* algorithms_field = d->FindFieldByName("algorithms");
  std::unordered_map<std::string_view, int> first_index;  // views into `file`

  for (int i = 0; i < file.key_rule_size(); ++i) {
    const pb::KeyRule& rule = file.key_rule(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(rule_field, i);
    auto at = [&] { return Locate(&tree_, rule_field, i); };
    if (rule.name().empty()) return ErrorAt(at(), "key_rule has no name");
    const Position name_at = Locate(tree, name_field, -1);
    if (!IsValidName(rule.name())) {
      return ErrorAt(name_at, "key_rule name " + Quoted(rule.name()) +
                                  " is not valid: use 1 to 64 characters from [a-z0-9._-], "
                                  "starting with a letter or digit");
    }
    if (rule.name() == kDefaultDenyRule) {
      return ErrorAt(name_at, "key_rule name \"default-deny\" is reserved for refusals");
    }
    if (auto [it, inserted] = first_index.emplace(rule.name(), i); !inserted) {
      const Position first = Locate(tree_.GetTreeForNested(rule_field, it->second), name_field, -1);
      return ErrorAt(name_at, "duplicate key_rule name " + Quoted(rule.name()) +
                                  " (first defined at line " + std::to_string(first.line) + ")");
    }
    const std::string what = "key_rule " + Quoted(rule.name());

    internal::CompiledPolicy::Rule compiled;
    compiled.name = rule.name();
    if (rule.roles().empty()) return ErrorAt(at(), what + " names no roles");
    if (auto error = ResolveRoles(rule.roles(), tree, roles_field, what, compiled.roles)) {
      return error;
    }

    if (rule.operations().empty()) {
      return ErrorAt(at(), what +
                               " lists no operations (use SIGN, CREATE, READ, ROTATE, DISABLE, "
                               "ENABLE, DESTROY or MARK_COMPROMISED)");
    }
    for (int j = 0; j < rule.operations_size(); ++j) {
      switch (rule.operations(j)) {
        case pb::SIGN:
          compiled.operations |= OperationBit(Operation::kSign);
          break;
        case pb::CREATE:
          compiled.operations |= OperationBit(Operation::kCreate);
          break;
        case pb::READ:
          compiled.operations |= OperationBit(Operation::kRead);
          break;
        case pb::ROTATE:
          compiled.operations |= OperationBit(Operation::kRotate);
          break;
        case pb::DISABLE:
          compiled.operations |= OperationBit(Operation::kDisable);
          break;
        case pb::ENABLE:
          compiled.operations |= OperationBit(Operation::kEnable);
          break;
        case pb::DESTROY:
          compiled.operations |= OperationBit(Operation::kDestroy);
          break;
        case pb::MARK_COMPROMISED:
          compiled.operations |= OperationBit(Operation::kMarkCompromised);
          break;
        default:
          return ErrorAt(
              Locate(tree, operations_field, j),
              what + " lists operation " +
                  (rule.operations(j) == pb::OPERATION_UNSPECIFIED
                       ? std::string("OPERATION_UNSPECIFIED")
                       : std::to_string(rule.operations(j))) +
                  "; use SIGN, CREATE, READ, ROTATE, DISABLE, ENABLE, DESTROY or MARK_COMPROMISED");
      }
    }

    if (rule.keys().empty()) {
      return ErrorAt(at(), what + " lists no keys (use keys: \"*\" for every key)");
    }
    for (int j = 0; j < rule.keys_size(); ++j) {
      const std::string& pattern = rule.keys(j);
      if (pattern.empty()) {
        return ErrorAt(Locate(tree, keys_field, j), what + " has an empty key pattern");
      }
      if (!IsValidKeyPattern(pattern)) {
        return ErrorAt(Locate(tree, keys_field, j),
                       what + " key pattern " + Quoted(pattern) +
                           " can never match: key names use only [a-z0-9._-], "
                           "with '*' and '?' as wildcards");
      }
      compiled.keys.push_back(pattern);
    }

    if (rule.usages().empty()) {
      return ErrorAt(at(),
                     what + " lists no usages (use \"*\" or one of " + JoinNames(kUsages) + ")");
    }
    for (int j = 0; j < rule.usages_size(); ++j) {
      const std::string& usage = rule.usages(j);
      if (usage == "*") {
        compiled.any_usage = true;
      } else if (Contains(kUsages, usage)) {
        compiled.usages.push_back(usage);
      } else {
        return ErrorAt(Locate(tree, usages_field, j), what + " names unknown usage " +
                                                          Quoted(usage) + " (known: *, " +
                                                          JoinNames(kUsages) + ")");
      }
    }

    if (rule.algorithms().empty()) {
      return ErrorAt(at(), what +
                               " lists no algorithms (use \"*\" or signing algorithm and key "
                               "type names)");
    }
    bool names_sign_algorithm = false;
    bool names_key_type = false;
    for (int j = 0; j < rule.algorithms_size(); ++j) {
      const std::string& algorithm = rule.algorithms(j);
      const bool is_sign = Contains(kSignAlgorithms, algorithm);
      const bool is_type = Contains(kKeyTypes, algorithm);
      if (algorithm == "*") {
        compiled.any_algorithm = true;
      } else if (is_sign || is_type) {
        compiled.algorithms.push_back(algorithm);
        names_sign_algorithm |= is_sign;
        names_key_type |= is_type;
      } else {
        return ErrorAt(Locate(tree, algorithms_field, j),
                       what + " names unknown algorithm " + Quoted(algorithm) +
                           " (signing algorithms: " + JoinNames(kSignAlgorithms) +
                           "; key types: " + JoinNames(kKeyTypes) + ")");
      }
    }
    // A rule that allows SIGN but names only key types (or CREATE and only
    // signing algorithms) could never allow that operation: a typo, not intent.
    if (!compiled.any_algorithm) {
      if ((compiled.operations & OperationBit(Operation::kSign)) && !names_sign_algorithm) {
        return ErrorAt(Locate(tree, algorithms_field, 0),
                       what + " allows SIGN but names no signing algorithm (e.g. " +
                           std::string(kSignAlgorithms[0]) + ") or \"*\"");
      }
      const bool creates = (compiled.operations & OperationBit(Operation::kCreate)) != 0;
      const bool rotates = (compiled.operations & OperationBit(Operation::kRotate)) != 0;
      if ((creates || rotates) && !names_key_type) {
        return ErrorAt(Locate(tree, algorithms_field, 0),
                       what + (creates ? " allows CREATE" : " allows ROTATE") +
                           " but names no key type (e.g. " + std::string(kKeyTypes[0]) +
                           ") or \"*\"");
      }
    }

    impl.rules.push_back(std::move(compiled));
  }
  return std::nullopt;
}

// Bounds for durations in the policy: a year is longer than any request should
// wait, and keeps every sum with a time point far from overflow.
constexpr std::uint64_t kMaxExpirySeconds = 366ull * 86400;
constexpr std::uint64_t kMaxSkewSeconds = 86400;

std::optional<ParseError> Compiler::CompileOfficers(const pb::PolicyFile& file,
                                                    internal::CompiledPolicy& impl) {
  const FieldDescriptor* officer_field = pb::PolicyFile::descriptor()->FindFieldByName("officer");
  const Descriptor* d = pb::Officer::descriptor();
  const FieldDescriptor* id_field = d->FindFieldByName("id");
  const FieldDescriptor* name_field = d->FindFieldByName("name");
  const FieldDescriptor* groups_field = d->FindFieldByName("groups");
  const FieldDescriptor* principals_field = d->FindFieldByName("principals");
  const FieldDescriptor* key_field = d->FindFieldByName("public_key");
  std::unordered_map<std::string_view, int> first_index;  // views into `file`
  for (int i = 0; i < file.officer_size(); ++i) {
    const pb::Officer& officer = file.officer(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(officer_field, i);
    auto at = [&] { return Locate(&tree_, officer_field, i); };
    if (officer.id().empty()) return ErrorAt(at(), "officer has no id");
    const Position id_at = Locate(tree, id_field, -1);
    if (!IsValidApprovalId(officer.id())) {
      return ErrorAt(id_at, "officer id " + Quoted(officer.id()) +
                                " is not valid: use 1 to 128 characters from [a-z0-9._-], "
                                "starting with a letter or digit");
    }
    if (auto [it, inserted] = first_index.emplace(officer.id(), i); !inserted) {
      const Position first =
          Locate(tree_.GetTreeForNested(officer_field, it->second), id_field, -1);
      return ErrorAt(id_at, "duplicate officer id " + Quoted(officer.id()) +
                                " (first declared at line " + std::to_string(first.line) + ")");
    }
    const std::string what = "officer " + Quoted(officer.id());
    if (HasControlCharacter(officer.name())) {
      return ErrorAt(Locate(tree, name_field, -1), what + " name contains a control character");
    }
    std::vector<std::string> groups;
    std::vector<std::string> principals;
    for (int j = 0; j < officer.groups_size(); ++j) {
      const std::string& group = officer.groups(j);
      if (!IsValidName(group)) {
        return ErrorAt(Locate(tree, groups_field, j),
                       what + " group " + Quoted(group) +
                           " is not valid: use 1 to 64 characters from [a-z0-9._-], "
                           "starting with a letter or digit");
      }
      if (std::find(groups.begin(), groups.end(), group) == groups.end()) {
        groups.push_back(group);
      }
    }
    for (int j = 0; j < officer.principals_size(); ++j) {
      const std::string& principal = officer.principals(j);
      if (principal.empty()) {
        return ErrorAt(Locate(tree, principals_field, j), what + " has an empty principal pattern");
      }
      if (HasControlCharacter(principal)) {
        return ErrorAt(
            Locate(tree, principals_field, j),
            what + " principal pattern " + Quoted(principal) + " contains a control character");
      }
      principals.push_back(principal);
    }
    if (officer.public_key().empty()) {
      return ErrorAt(at(), what +
                               " has no public_key (a PEM \"PUBLIC KEY\" block: ECDSA P-256, "
                               "Ed25519 or RSA)");
    }
    auto key = OfficerPublicKey::Parse(officer.public_key());
    if (const auto* e = std::get_if<ApprovalError>(&key)) {
      return ErrorAt(Locate(tree, key_field, -1), what + " public_key: " + e->message);
    }
    impl.officers.push_back(Officer{officer.id(), officer.name(), std::move(groups),
                                    std::move(principals),
                                    std::get<OfficerPublicKey>(std::move(key))});
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileQuorumSettings(const pb::PolicyFile& file,
                                                          internal::CompiledPolicy& impl) {
  if (!file.has_quorum_settings()) return std::nullopt;
  const FieldDescriptor* settings_field =
      pb::PolicyFile::descriptor()->FindFieldByName("quorum_settings");
  const ParseInfoTree* tree = tree_.GetTreeForNested(settings_field, -1);
  const Descriptor* d = pb::QuorumSettings::descriptor();
  const pb::QuorumSettings& settings = file.quorum_settings();
  if (settings.default_expiry_seconds() > kMaxExpirySeconds) {
    return ErrorAt(Locate(tree, d->FindFieldByName("default_expiry_seconds"), -1),
                   "quorum_settings default_expiry_seconds " +
                       std::to_string(settings.default_expiry_seconds()) + " is more than " +
                       std::to_string(kMaxExpirySeconds) + " (366 days)");
  }
  if (settings.max_statement_skew_seconds() > kMaxSkewSeconds) {
    return ErrorAt(Locate(tree, d->FindFieldByName("max_statement_skew_seconds"), -1),
                   "quorum_settings max_statement_skew_seconds " +
                       std::to_string(settings.max_statement_skew_seconds()) + " is more than " +
                       std::to_string(kMaxSkewSeconds) + " (1 day)");
  }
  if (settings.default_expiry_seconds() != 0) {
    impl.default_expiry = std::chrono::seconds(settings.default_expiry_seconds());
  }
  if (settings.max_statement_skew_seconds() != 0) {
    impl.max_statement_skew = std::chrono::seconds(settings.max_statement_skew_seconds());
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileQuorumRules(const pb::PolicyFile& file,
                                                       internal::CompiledPolicy& impl) {
  const FieldDescriptor* rule_field = pb::PolicyFile::descriptor()->FindFieldByName("quorum_rule");
  const Descriptor* d = pb::QuorumRule::descriptor();
  const FieldDescriptor* name_field = d->FindFieldByName("name");
  const FieldDescriptor* operation_field = d->FindFieldByName("operation");
  const FieldDescriptor* keys_field = d->FindFieldByName("keys");
  const FieldDescriptor* usages_field = d->FindFieldByName("usages");
  const FieldDescriptor* profiles_field = d->FindFieldByName("profiles");
  const FieldDescriptor* group_field = d->FindFieldByName("group");
  const FieldDescriptor* threshold_field = d->FindFieldByName("threshold");
  const FieldDescriptor* expiry_field = d->FindFieldByName("expiry_seconds");
  std::unordered_map<std::string_view, int> first_index;  // views into `file`

  for (int i = 0; i < file.quorum_rule_size(); ++i) {
    const pb::QuorumRule& rule = file.quorum_rule(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(rule_field, i);
    auto at = [&] { return Locate(&tree_, rule_field, i); };
    if (rule.name().empty()) return ErrorAt(at(), "quorum_rule has no name");
    const Position name_at = Locate(tree, name_field, -1);
    if (!IsValidName(rule.name())) {
      return ErrorAt(name_at, "quorum_rule name " + Quoted(rule.name()) +
                                  " is not valid: use 1 to 64 characters from [a-z0-9._-], "
                                  "starting with a letter or digit");
    }
    if (auto [it, inserted] = first_index.emplace(rule.name(), i); !inserted) {
      const Position first = Locate(tree_.GetTreeForNested(rule_field, it->second), name_field, -1);
      return ErrorAt(name_at, "duplicate quorum_rule name " + Quoted(rule.name()) +
                                  " (first defined at line " + std::to_string(first.line) + ")");
    }
    const std::string what = "quorum_rule " + Quoted(rule.name());
    internal::CompiledPolicy::QuorumRule compiled;
    compiled.name = rule.name();

    switch (rule.operation()) {
      case pb::QuorumRule::KEY_CREATE:
        compiled.operation = QuorumOperation::kKeyCreate;
        break;
      case pb::QuorumRule::KEY_DESTROY:
        compiled.operation = QuorumOperation::kKeyDestroy;
        break;
      case pb::QuorumRule::KEY_STATE_CHANGE:
        compiled.operation = QuorumOperation::kKeyStateChange;
        break;
      case pb::QuorumRule::POLICY_CHANGE:
        compiled.operation = QuorumOperation::kPolicyChange;
        break;
      case pb::QuorumRule::OFFICER_CHANGE:
        compiled.operation = QuorumOperation::kOfficerChange;
        break;
      case pb::QuorumRule::CERT_ISSUE:
        compiled.operation = QuorumOperation::kCertIssue;
        break;
      case pb::QuorumRule::SIGN:
        compiled.operation = QuorumOperation::kSign;
        break;
      default: {
        const Position op_at = Locate(tree, operation_field, -1);
        return ErrorAt(op_at.line > 0 ? op_at : at(),
                       what +
                           " has no operation (use KEY_CREATE, KEY_DESTROY, KEY_STATE_CHANGE, "
                           "POLICY_CHANGE, OFFICER_CHANGE, CERT_ISSUE or SIGN)");
      }
    }
    const std::string op_name(QuorumOperationName(compiled.operation));
    const bool about_keys = compiled.operation == QuorumOperation::kKeyCreate ||
                            compiled.operation == QuorumOperation::kKeyDestroy ||
                            compiled.operation == QuorumOperation::kKeyStateChange ||
                            compiled.operation == QuorumOperation::kSign;
    const bool about_profiles = compiled.operation == QuorumOperation::kCertIssue;

    if (about_keys) {
      if (rule.keys().empty()) {
        return ErrorAt(at(),
                       what + " (" + op_name + ") lists no keys (use keys: \"*\" for every key)");
      }
      for (int j = 0; j < rule.keys_size(); ++j) {
        const std::string& pattern = rule.keys(j);
        if (!IsValidKeyPattern(pattern)) {
          return ErrorAt(Locate(tree, keys_field, j),
                         what + " key pattern " + Quoted(pattern) +
                             " can never match: key names use only [a-z0-9._-], "
                             "with '*' and '?' as wildcards");
        }
        compiled.keys.push_back(pattern);
      }
      if (rule.usages().empty()) {
        return ErrorAt(at(), what + " (" + op_name + ") lists no usages (use \"*\" or one of " +
                                 JoinNames(kUsages) + ")");
      }
      for (int j = 0; j < rule.usages_size(); ++j) {
        const std::string& usage = rule.usages(j);
        if (usage == "*") {
          compiled.any_usage = true;
        } else if (Contains(kUsages, usage)) {
          compiled.usages.push_back(usage);
        } else {
          return ErrorAt(Locate(tree, usages_field, j), what + " names unknown usage " +
                                                            Quoted(usage) + " (known: *, " +
                                                            JoinNames(kUsages) + ")");
        }
      }
    } else if (!rule.keys().empty() || !rule.usages().empty()) {
      const bool keys = !rule.keys().empty();
      return ErrorAt(Locate(tree, keys ? keys_field : usages_field, 0),
                     what + " (" + op_name + ") cannot list " + (keys ? "keys" : "usages") +
                         ": they apply to KEY_CREATE, KEY_DESTROY, KEY_STATE_CHANGE and SIGN");
    }

    if (about_profiles) {
      if (rule.profiles().empty()) {
        return ErrorAt(at(), what +
                                 " (CERT_ISSUE) lists no profiles (use profiles: \"*\" for "
                                 "every profile)");
      }
      for (int j = 0; j < rule.profiles_size(); ++j) {
        const std::string& pattern = rule.profiles(j);
        // CA operations are judged as the pseudo-profiles "ca:root",
        // "ca:intermediate" and "ca:revoke", SSH profiles as "ssh:<name>"
        // (docs/policy.md).
        const std::string_view name_part =
            pattern.rfind("ca:", 0) == 0    ? std::string_view(pattern).substr(3)
            : pattern.rfind("ssh:", 0) == 0 ? std::string_view(pattern).substr(4)
                                            : std::string_view(pattern);
        if (!IsValidKeyPattern(name_part)) {
          return ErrorAt(Locate(tree, profiles_field, j),
                         what + " profile pattern " + Quoted(pattern) +
                             " can never match: profile names use only [a-z0-9._-] (CA "
                             "operations: \"ca:root\", \"ca:intermediate\", \"ca:revoke\"; "
                             "SSH profiles: \"ssh:<name>\"), with '*' and '?' as wildcards");
        }
        compiled.profiles.push_back(pattern);
      }
    } else if (!rule.profiles().empty()) {
      return ErrorAt(Locate(tree, profiles_field, 0),
                     what + " (" + op_name + ") cannot list profiles: they apply to CERT_ISSUE");
    }

    if (rule.group().empty()) {
      return ErrorAt(at(), what + " names no group (the officers' group whose approvals count)");
    }
    const Position group_at = Locate(tree, group_field, -1);
    if (rule.threshold() == 0) {
      const Position threshold_at = Locate(tree, threshold_field, -1);
      return ErrorAt(threshold_at.line > 0 ? threshold_at : at(),
                     what + " needs a threshold of at least 1 (the number of approvals)");
    }
    std::uint32_t members = 0;
    std::vector<std::string> all_groups;
    for (const Officer& officer : impl.officers) {
      for (const std::string& g : officer.groups) {
        if (g == rule.group()) ++members;
        if (std::find(all_groups.begin(), all_groups.end(), g) == all_groups.end()) {
          all_groups.push_back(g);
        }
      }
    }
    if (members == 0) {
      std::string known = "officers' groups: ";
      if (all_groups.empty()) known = "no officer has a group";
      for (std::size_t j = 0; j < all_groups.size(); ++j) {
        if (j > 0) known += ", ";
        known += all_groups[j];
      }
      return ErrorAt(group_at, what + " names group " + Quoted(rule.group()) +
                                   " that no officer is in (" + known + ")");
    }
    if (members < rule.threshold()) {
      return ErrorAt(Locate(tree, threshold_field, -1),
                     what + " needs " + std::to_string(rule.threshold()) +
                         " approvals from group " + Quoted(rule.group()) + " but only " +
                         std::to_string(members) +
                         (members == 1 ? " officer is" : " officers are") +
                         " in it: the rule could never pass");
    }
    compiled.group = rule.group();
    compiled.threshold = rule.threshold();
    compiled.deny_rejects = !rule.has_deny_rejects() || rule.deny_rejects();
    if (rule.expiry_seconds() > kMaxExpirySeconds) {
      return ErrorAt(Locate(tree, expiry_field, -1),
                     what + " expiry_seconds " + std::to_string(rule.expiry_seconds()) +
                         " is more than " + std::to_string(kMaxExpirySeconds) + " (366 days)");
    }
    compiled.expiry = rule.expiry_seconds() == 0 ? impl.default_expiry
                                                 : std::chrono::seconds(rule.expiry_seconds());
    impl.quorum_rules.push_back(std::move(compiled));
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileAdminRules(const pb::PolicyFile& file,
                                                      internal::CompiledPolicy& impl) {
  const FieldDescriptor* rule_field = pb::PolicyFile::descriptor()->FindFieldByName("admin_rule");
  const Descriptor* d = pb::AdminRule::descriptor();
  const FieldDescriptor* name_field = d->FindFieldByName("name");
  const FieldDescriptor* roles_field = d->FindFieldByName("roles");
  const FieldDescriptor* operations_field = d->FindFieldByName("operations");
  std::unordered_map<std::string_view, int> first_index;  // views into `file`
  for (int i = 0; i < file.admin_rule_size(); ++i) {
    const pb::AdminRule& rule = file.admin_rule(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(rule_field, i);
    auto at = [&] { return Locate(&tree_, rule_field, i); };
    if (rule.name().empty()) return ErrorAt(at(), "admin_rule has no name");
    const Position name_at = Locate(tree, name_field, -1);
    if (!IsValidName(rule.name())) {
      return ErrorAt(name_at, "admin_rule name " + Quoted(rule.name()) +
                                  " is not valid: use 1 to 64 characters from [a-z0-9._-], "
                                  "starting with a letter or digit");
    }
    if (rule.name() == kDefaultDenyRule) {
      return ErrorAt(name_at, "admin_rule name \"default-deny\" is reserved for refusals");
    }
    if (auto [it, inserted] = first_index.emplace(rule.name(), i); !inserted) {
      const Position first = Locate(tree_.GetTreeForNested(rule_field, it->second), name_field, -1);
      return ErrorAt(name_at, "duplicate admin_rule name " + Quoted(rule.name()) +
                                  " (first defined at line " + std::to_string(first.line) + ")");
    }
    const std::string what = "admin_rule " + Quoted(rule.name());
    internal::CompiledPolicy::AdminRule compiled;
    compiled.name = rule.name();
    if (rule.roles().empty()) return ErrorAt(at(), what + " names no roles");
    if (auto error = ResolveRoles(rule.roles(), tree, roles_field, what, compiled.roles)) {
      return error;
    }
    if (rule.operations().empty()) {
      return ErrorAt(at(),
                     what + " lists no operations (use " + std::string(kAdminOperationNames) + ")");
    }
    for (int j = 0; j < rule.operations_size(); ++j) {
      switch (rule.operations(j)) {
        case pb::READ_POLICY:
          compiled.operations |= 1u << static_cast<unsigned>(AdminOperation::kReadPolicy);
          break;
        case pb::PROPOSE_POLICY:
          compiled.operations |= 1u << static_cast<unsigned>(AdminOperation::kProposePolicy);
          break;
        case pb::MANAGE_CA:
          compiled.operations |= 1u << static_cast<unsigned>(AdminOperation::kManageCa);
          break;
        case pb::REVOKE_CERTIFICATE:
          compiled.operations |= 1u << static_cast<unsigned>(AdminOperation::kRevokeCertificate);
          break;
        case pb::READ_CERTIFICATES:
          compiled.operations |= 1u << static_cast<unsigned>(AdminOperation::kReadCertificates);
          break;
        default:
          return ErrorAt(Locate(tree, operations_field, j),
                         what + " lists operation " +
                             (rule.operations(j) == pb::ADMIN_OPERATION_UNSPECIFIED
                                  ? std::string("ADMIN_OPERATION_UNSPECIFIED")
                                  : std::to_string(rule.operations(j))) +
                             "; use " + std::string(kAdminOperationNames));
      }
    }
    impl.admin_rules.push_back(std::move(compiled));
  }
  return std::nullopt;
}

// Bounds for CA settings: a CRL valid for more than a year is a mistake.
constexpr std::chrono::seconds kMaxCrlValidity{366LL * 86400};

std::string DurationError(std::string_view field, std::string_view value) {
  return std::string(field) + " " + Quoted(value) +
         " is not a duration (use <n>s, <n>m, <n>h, <n>d or <n>y, e.g. \"90d\"; at most 100y)";
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::optional<ParseError> Compiler::CompileProfiles(const pb::PolicyFile& file,
                                                    internal::CompiledPolicy& impl) {
  const FieldDescriptor* profile_field = pb::PolicyFile::descriptor()->FindFieldByName("profile");
  const Descriptor* d = pb::Profile::descriptor();
  const FieldDescriptor* name_field = d->FindFieldByName("name");
  const FieldDescriptor* is_ca_field = d->FindFieldByName("is_ca");
  std::unordered_map<std::string_view, int> first_index;  // views into `file`
  for (int i = 0; i < file.profile_size(); ++i) {
    const pb::Profile& profile = file.profile(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(profile_field, i);
    const Position at = Locate(&tree_, profile_field, i);
    if (profile.name().empty()) return ErrorAt(at, "profile has no name");
    const Position name_at = Locate(tree, name_field, -1);
    if (!IsValidName(profile.name())) {
      return ErrorAt(name_at, "profile name " + Quoted(profile.name()) +
                                  " is not valid: use 1 to 64 characters from [a-z0-9._-], "
                                  "starting with a letter or digit");
    }
    if (auto [it, inserted] = first_index.emplace(profile.name(), i); !inserted) {
      const Position first =
          Locate(tree_.GetTreeForNested(profile_field, it->second), name_field, -1);
      return ErrorAt(name_at, "duplicate profile name " + Quoted(profile.name()) +
                                  " (first defined at line " + std::to_string(first.line) + ")");
    }
    CertProfile compiled;
    std::vector<std::uint32_t> roles;
    if (auto error = CompileProfile(profile, tree, at, compiled, roles)) return error;
    // Sub-CA certificates always need officers' approval: refuse a policy in
    // which issuing one would not.
    if (compiled.is_ca) {
      const bool covered = std::any_of(
          impl.quorum_rules.begin(), impl.quorum_rules.end(),
          [&](const internal::CompiledPolicy::QuorumRule& rule) {
            return rule.operation == QuorumOperation::kCertIssue &&
                   std::any_of(rule.profiles.begin(), rule.profiles.end(),
                               [&](const std::string& p) { return GlobMatch(p, compiled.name); });
          });
      if (!covered) {
        const Position is_ca_at = Locate(tree, is_ca_field, -1);
        return ErrorAt(is_ca_at.line > 0 ? is_ca_at : at,
                       "profile " + Quoted(compiled.name) +
                           " issues CA certificates (is_ca: true) but no CERT_ISSUE quorum_rule "
                           "covers it: sub-CA profiles always need quorum; add " +
                           Quoted(compiled.name) + " to the profiles of a CERT_ISSUE quorum_rule");
      }
    }
    impl.profiles.push_back(std::move(compiled));
    impl.profile_roles.push_back(std::move(roles));
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileProfile(const pb::Profile& profile,
                                                   const ParseInfoTree* tree, Position at,
                                                   CertProfile& out,
                                                   std::vector<std::uint32_t>& roles) const {
  const Descriptor* d = pb::Profile::descriptor();
  auto field = [&](const char* name) { return d->FindFieldByName(name); };
  // Where a singular field is, or the profile when it is absent.
  auto at_field = [&](const char* name) {
    const Position pos = Locate(tree, field(name), -1);
    return pos.line > 0 ? pos : at;
  };
  const std::string what = "profile " + Quoted(profile.name());
  out.name = profile.name();

  if (profile.ca().empty()) {
    return ErrorAt(at, what + " names no ca (the name of the CA that issues under it)");
  }
  if (!IsValidName(profile.ca())) {
    return ErrorAt(at_field("ca"), what + " ca " + Quoted(profile.ca()) +
                                       " is not a valid CA name: use 1 to 64 characters from "
                                       "[a-z0-9._-], starting with a letter or digit");
  }
  out.ca = profile.ca();

  if (profile.roles().empty()) {
    return ErrorAt(at, what + " names no roles (the roles that may issue under it)");
  }
  if (auto error = ResolveRoles(profile.roles(), tree, field("roles"), what, roles)) return error;
  for (auto role : roles) out.roles.push_back((*impl_roles_)[role]);

  if (profile.key_algorithms().empty()) {
    return ErrorAt(
        at, what + " lists no key_algorithms (use " + internal::ProfileKeyAlgorithmNames() + ")");
  }
  for (int j = 0; j < profile.key_algorithms_size(); ++j) {
    const std::string& algorithm = profile.key_algorithms(j);
    const Position pos = Locate(tree, field("key_algorithms"), j);
    if (!internal::IsProfileKeyAlgorithm(algorithm)) {
      return ErrorAt(pos, what + " names unknown key algorithm " + Quoted(algorithm) +
                              " (known: " + internal::ProfileKeyAlgorithmNames() + ")");
    }
    if (std::find(out.key_algorithms.begin(), out.key_algorithms.end(), algorithm) !=
        out.key_algorithms.end()) {
      return ErrorAt(pos, what + " lists key algorithm " + Quoted(algorithm) + " twice");
    }
    out.key_algorithms.push_back(algorithm);
  }
  if (profile.rsa_min_bits() != 0) {
    if (profile.rsa_min_bits() < 2048 || profile.rsa_min_bits() > 16384) {
      return ErrorAt(at_field("rsa_min_bits"), what + " rsa_min_bits " +
                                                   std::to_string(profile.rsa_min_bits()) +
                                                   " is outside 2048..16384");
    }
    out.rsa_min_bits = static_cast<int>(profile.rsa_min_bits());
  }

  if (profile.max_validity().empty()) {
    return ErrorAt(at, what + " has no max_validity (e.g. max_validity: \"90d\")");
  }
  if (!ParsePolicyDuration(profile.max_validity(), &out.max_validity)) {
    return ErrorAt(at_field("max_validity"),
                   what + " " + DurationError("max_validity", profile.max_validity()));
  }
  if (out.max_validity.count() <= 0) {
    return ErrorAt(at_field("max_validity"), what + " max_validity must be more than 0");
  }
  if (profile.default_validity().empty()) {
    out.default_validity = out.max_validity;
  } else {
    if (!ParsePolicyDuration(profile.default_validity(), &out.default_validity)) {
      return ErrorAt(at_field("default_validity"),
                     what + " " + DurationError("default_validity", profile.default_validity()));
    }
    if (out.default_validity.count() <= 0) {
      return ErrorAt(at_field("default_validity"), what + " default_validity must be more than 0");
    }
    if (out.default_validity > out.max_validity) {
      return ErrorAt(at_field("default_validity"),
                     what + " default_validity " + Quoted(profile.default_validity()) +
                         " is longer than max_validity " + Quoted(profile.max_validity()));
    }
  }

  if (profile.key_usage().empty()) {
    return ErrorAt(
        at, what + " lists no key_usage (RFC 5280 names: " + internal::KeyUsageNames() + ")");
  }
  for (int j = 0; j < profile.key_usage_size(); ++j) {
    const std::string& name = profile.key_usage(j);
    const Position pos = Locate(tree, field("key_usage"), j);
    const auto bit = internal::KeyUsageBit(name);
    if (!bit) {
      return ErrorAt(pos, what + " names unknown key usage " + Quoted(name) +
                              " (known: " + internal::KeyUsageNames() + ")");
    }
    if (out.key_usage_bits & *bit) {
      return ErrorAt(pos, what + " lists key usage " + Quoted(name) + " twice");
    }
    out.key_usage_bits = static_cast<std::uint16_t>(out.key_usage_bits | *bit);
    out.key_usage.push_back(name);
  }

  out.is_ca = profile.is_ca();
  if (out.is_ca) {
    if ((out.key_usage_bits & kKuKeyCertSign) == 0) {
      return ErrorAt(Locate(tree, field("key_usage"), 0),
                     what +
                         " issues CA certificates (is_ca: true) but key_usage lacks "
                         "keyCertSign");
    }
  } else if (out.key_usage_bits & (kKuKeyCertSign | kKuCrlSign)) {
    return ErrorAt(Locate(tree, field("key_usage"), 0),
                   what +
                       " issues end-entity certificates (is_ca: false) and so may not have "
                       "keyCertSign or cRLSign");
  }
  if (profile.has_path_len()) {
    if (profile.path_len() < -1) {
      return ErrorAt(at_field("path_len"), what + " path_len " +
                                               std::to_string(profile.path_len()) +
                                               " is not valid: use -1 (no limit) or 0 and above");
    }
    if (!out.is_ca && profile.path_len() != -1) {
      return ErrorAt(at_field("path_len"),
                     what + " sets path_len but is not a CA profile (is_ca: false)");
    }
    out.path_len = profile.path_len();
  }

  for (int j = 0; j < profile.ext_key_usage_size(); ++j) {
    const std::string& name = profile.ext_key_usage(j);
    const Position pos = Locate(tree, field("ext_key_usage"), j);
    auto oid = internal::ExtKeyUsageOid(name);
    if (!oid) {
      return ErrorAt(pos, what + " names unknown extended key usage " + Quoted(name) + " (use " +
                              internal::ExtKeyUsageNames() + " or a dotted OID)");
    }
    if (*oid == "2.5.29.37.0") {
      return ErrorAt(pos, what + " may not use anyExtendedKeyUsage (2.5.29.37.0)");
    }
    if (std::find(out.ext_key_usages.begin(), out.ext_key_usages.end(), *oid) !=
        out.ext_key_usages.end()) {
      return ErrorAt(pos, what + " lists extended key usage " + Quoted(name) + " twice");
    }
    out.ext_key_usages.push_back(*std::move(oid));
  }
  if (!out.is_ca && out.ext_key_usages.empty()) {
    return ErrorAt(at, what + " issues end-entity certificates and lists no ext_key_usage (use " +
                           internal::ExtKeyUsageNames() + " or a dotted OID)");
  }

  const FieldDescriptor* san_field = field("san");
  if (profile.has_san()) {
    const Position san_at = Locate(tree, san_field, -1);
    if (auto error = CompileSanRules(
            profile.san(), tree == nullptr ? nullptr : tree->GetTreeForNested(san_field, -1),
            san_at.line > 0 ? san_at : at, what, out.san)) {
      return error;
    }
  } else if (out.is_ca) {
    // A CA certificate needs no subject alternative names: admit none.
    out.san.min_count = 0;
    out.san.max_count = 0;
  } else {
    return ErrorAt(at, what +
                           " has no san rules: add san { ... } with dns_suffix, dns_exact, "
                           "ip_range, uri_prefix or email_domain");
  }

  const FieldDescriptor* subject_field = field("subject");
  if (profile.has_subject()) {
    const Position subject_at = Locate(tree, subject_field, -1);
    if (auto error = CompileSubjectRules(
            profile.subject(),
            tree == nullptr ? nullptr : tree->GetTreeForNested(subject_field, -1),
            subject_at.line > 0 ? subject_at : at, what, out.subject)) {
      return error;
    }
  }
  if (out.subject.mode == CertSubjectMode::kEmpty && out.san.min_count < 1) {
    const Position san_at = Locate(tree, san_field, -1);
    return ErrorAt(san_at.line > 0 ? san_at : at,
                   what +
                       " has an empty subject (mode EMPTY) and so needs san min_count of at "
                       "least 1");
  }

  struct UrlList {
    const char* field;
    const google::protobuf::RepeatedPtrField<std::string>* values;
    std::vector<std::string>* out;
  };
  for (const UrlList& list :
       {UrlList{"crl_url", &profile.crl_url(), &out.crl_urls},
        UrlList{"ocsp_url", &profile.ocsp_url(), &out.ocsp_urls},
        UrlList{"ca_issuers_url", &profile.ca_issuers_url(), &out.ca_issuers_urls}}) {
    for (int j = 0; j < list.values->size(); ++j) {
      const std::string& url = (*list.values)[j];
      if (!internal::IsDistributionUrl(url)) {
        return ErrorAt(Locate(tree, field(list.field), j),
                       what + " " + list.field + " " + Quoted(url) +
                           " is not an http://, https:// or ldap:// URL without spaces");
      }
      list.out->push_back(url);
    }
  }

  for (int j = 0; j < profile.csr_extension_allowlist_size(); ++j) {
    const std::string& oid = profile.csr_extension_allowlist(j);
    const Position pos = Locate(tree, field("csr_extension_allowlist"), j);
    if (!internal::IsDottedOid(oid)) {
      return ErrorAt(pos, what + " csr_extension_allowlist entry " + Quoted(oid) +
                              " is not a dotted OID (e.g. \"1.3.6.1.4.1.311.20.2\")");
    }
    if (internal::IsProfileBuiltExtension(oid)) {
      return ErrorAt(pos, what + " csr_extension_allowlist names " + Quoted(oid) +
                              ", an extension the profile builds itself; it is never copied "
                              "from CSRs");
    }
    if (std::find(out.csr_extension_allowlist.begin(), out.csr_extension_allowlist.end(), oid) !=
        out.csr_extension_allowlist.end()) {
      return ErrorAt(pos, what + " csr_extension_allowlist lists " + Quoted(oid) + " twice");
    }
    out.csr_extension_allowlist.push_back(oid);
  }
  out.public_tls = profile.public_tls();
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileSanRules(const pb::SanRules& san,
                                                    const ParseInfoTree* tree, Position at,
                                                    const std::string& what,
                                                    CertSanRules& out) const {
  const Descriptor* d = pb::SanRules::descriptor();
  auto field = [&](const char* name) { return d->FindFieldByName(name); };
  auto at_field = [&](const char* name) {
    const Position pos = Locate(tree, field(name), -1);
    return pos.line > 0 ? pos : at;
  };
  out.allow_wildcards = san.allow_wildcards();
  for (int j = 0; j < san.dns_suffix_size(); ++j) {
    std::string suffix = Lower(san.dns_suffix(j));
    if (suffix.empty() || suffix.front() != '.') suffix.insert(suffix.begin(), '.');
    if (!internal::IsDnsName(std::string_view(suffix).substr(1), false)) {
      return ErrorAt(Locate(tree, field("dns_suffix"), j),
                     what + " san dns_suffix " + Quoted(san.dns_suffix(j)) +
                         " is not a domain name of at least two labels (e.g. \".dev.example\")");
    }
    out.dns_suffixes.push_back(std::move(suffix));
  }
  for (int j = 0; j < san.dns_exact_size(); ++j) {
    std::string name = Lower(san.dns_exact(j));
    if (!internal::IsDnsName(name, out.allow_wildcards)) {
      return ErrorAt(Locate(tree, field("dns_exact"), j),
                     what + " san dns_exact " + Quoted(san.dns_exact(j)) + " is not a DNS name" +
                         (out.allow_wildcards ? "" : " (wildcards need allow_wildcards: true)"));
    }
    out.dns_exact.push_back(std::move(name));
  }
  for (int j = 0; j < san.ip_range_size(); ++j) {
    if (!internal::IsCidr(san.ip_range(j))) {
      return ErrorAt(Locate(tree, field("ip_range"), j),
                     what + " san ip_range " + Quoted(san.ip_range(j)) +
                         " is not CIDR notation (e.g. \"10.0.0.0/8\" or \"fd00::/8\")");
    }
    out.ip_ranges.push_back(san.ip_range(j));
  }
  for (int j = 0; j < san.uri_prefix_size(); ++j) {
    if (!internal::IsAbsoluteUri(san.uri_prefix(j))) {
      return ErrorAt(Locate(tree, field("uri_prefix"), j),
                     what + " san uri_prefix " + Quoted(san.uri_prefix(j)) +
                         " is not an absolute URI (e.g. \"spiffe://example.test/\")");
    }
    out.uri_prefixes.push_back(san.uri_prefix(j));
  }
  for (int j = 0; j < san.email_domain_size(); ++j) {
    std::string domain = Lower(san.email_domain(j));
    if (!internal::IsDnsName(domain, false)) {
      return ErrorAt(
          Locate(tree, field("email_domain"), j),
          what + " san email_domain " + Quoted(san.email_domain(j)) + " is not a domain name");
    }
    out.email_domains.push_back(std::move(domain));
  }
  if (san.has_min_count()) out.min_count = san.min_count();
  if (san.has_max_count()) out.max_count = san.max_count();
  if (san.has_max_uri_count()) out.max_uri_count = san.max_uri_count();
  if (out.min_count < 0) {
    return ErrorAt(at_field("min_count"), what + " san min_count must be 0 or more");
  }
  if (out.max_count > 1000) {
    return ErrorAt(at_field("max_count"), what + " san max_count must be at most 1000");
  }
  if (out.max_count < out.min_count) {
    return ErrorAt(at_field("max_count"), what + " san max_count " + std::to_string(out.max_count) +
                                              " is less than min_count " +
                                              std::to_string(out.min_count));
  }
  if (out.max_uri_count < -1 || out.max_uri_count > 1000) {
    return ErrorAt(at_field("max_uri_count"),
                   what + " san max_uri_count must be -1 (no own limit) or 0..1000");
  }
  const bool admits_any = !out.dns_suffixes.empty() || !out.dns_exact.empty() ||
                          !out.ip_ranges.empty() || !out.uri_prefixes.empty() ||
                          !out.email_domains.empty();
  if (out.min_count > 0 && !admits_any) {
    return ErrorAt(at, what + " san needs at least " + std::to_string(out.min_count) +
                           " name(s) but admits none: set dns_suffix, dns_exact, ip_range, "
                           "uri_prefix or email_domain");
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileSubjectRules(const pb::SubjectRules& subject,
                                                        const ParseInfoTree* tree, Position at,
                                                        const std::string& what,
                                                        CertSubjectRules& out) const {
  const Descriptor* d = pb::SubjectRules::descriptor();
  const FieldDescriptor* allowed_field = d->FindFieldByName("allowed_from_csr");
  const FieldDescriptor* fixed_field = d->FindFieldByName("fixed");
  switch (subject.mode()) {
    case pb::SubjectRules::MODE_UNSPECIFIED:
    case pb::SubjectRules::FROM_CSR:
      out.mode = CertSubjectMode::kFromCsr;
      break;
    case pb::SubjectRules::EMPTY:
      out.mode = CertSubjectMode::kEmpty;
      break;
    default: {
      const Position pos = Locate(tree, d->FindFieldByName("mode"), -1);
      return ErrorAt(pos.line > 0 ? pos : at, what + " subject mode " +
                                                  std::to_string(subject.mode()) +
                                                  " is not known (use FROM_CSR or EMPTY)");
    }
  }
  out.allowed_from_csr.clear();
  out.fixed.clear();
  if (out.mode == CertSubjectMode::kEmpty) {
    if (!subject.allowed_from_csr().empty() || !subject.fixed().empty()) {
      const bool allowed = !subject.allowed_from_csr().empty();
      return ErrorAt(Locate(tree, allowed ? allowed_field : fixed_field, 0),
                     what + " subject mode EMPTY cannot have " +
                         (allowed ? "allowed_from_csr" : "fixed") + " attributes");
    }
    return std::nullopt;
  }
  for (int j = 0; j < subject.allowed_from_csr_size(); ++j) {
    const std::string& type = subject.allowed_from_csr(j);
    const Position pos = Locate(tree, allowed_field, j);
    if (!internal::IsSubjectAttributeType(type)) {
      return ErrorAt(pos, what + " subject allowed_from_csr names unknown attribute type " +
                              Quoted(type) + " (known: " + internal::SubjectAttributeTypes() + ")");
    }
    if (std::find(out.allowed_from_csr.begin(), out.allowed_from_csr.end(), type) !=
        out.allowed_from_csr.end()) {
      return ErrorAt(pos, what + " subject allowed_from_csr lists " + Quoted(type) + " twice");
    }
    out.allowed_from_csr.push_back(type);
  }
  const Descriptor* ad = pb::SubjectAttribute::descriptor();
  for (int j = 0; j < subject.fixed_size(); ++j) {
    const pb::SubjectAttribute& attribute = subject.fixed(j);
    const ParseInfoTree* attribute_tree =
        tree == nullptr ? nullptr : tree->GetTreeForNested(fixed_field, j);
    const Position fixed_at = Locate(tree, fixed_field, j);
    auto at_attr = [&](const char* name) {
      const Position pos = Locate(attribute_tree, ad->FindFieldByName(name), -1);
      return pos.line > 0 ? pos : fixed_at;
    };
    if (!internal::IsSubjectAttributeType(attribute.type())) {
      return ErrorAt(at_attr("type"),
                     what + " subject fixed attribute type " + Quoted(attribute.type()) +
                         " is not known (known: " + internal::SubjectAttributeTypes() + ")");
    }
    const std::string why =
        internal::CheckSubjectAttributeValue(attribute.type(), attribute.value());
    if (!why.empty()) {
      return ErrorAt(at_attr("value"), what + " subject fixed " + attribute.type() + " value " +
                                           Quoted(attribute.value()) + " " + why);
    }
    out.fixed.push_back(CertSubjectAttribute{attribute.type(), attribute.value()});
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileCaSettings(const pb::PolicyFile& file,
                                                      internal::CompiledPolicy& impl) {
  if (!file.has_ca_settings()) return std::nullopt;
  const FieldDescriptor* settings_field =
      pb::PolicyFile::descriptor()->FindFieldByName("ca_settings");
  const ParseInfoTree* tree = tree_.GetTreeForNested(settings_field, -1);
  const Position at = Locate(&tree_, settings_field, -1);
  const Descriptor* d = pb::CaSettings::descriptor();
  auto at_field = [&](const char* name) {
    const Position pos = Locate(tree, d->FindFieldByName(name), -1);
    return pos.line > 0 ? pos : at;
  };
  const pb::CaSettings& settings = file.ca_settings();
  CaSettings out;
  if (!settings.crl_validity().empty()) {
    if (!ParsePolicyDuration(settings.crl_validity(), &out.crl_validity)) {
      return ErrorAt(at_field("crl_validity"),
                     "ca_settings " + DurationError("crl_validity", settings.crl_validity()));
    }
    if (out.crl_validity.count() <= 0 || out.crl_validity > kMaxCrlValidity) {
      return ErrorAt(at_field("crl_validity"),
                     "ca_settings crl_validity must be more than 0 and at most 366d");
    }
  }
  if (!settings.crl_resign_before().empty()) {
    if (!ParsePolicyDuration(settings.crl_resign_before(), &out.crl_resign_before)) {
      return ErrorAt(
          at_field("crl_resign_before"),
          "ca_settings " + DurationError("crl_resign_before", settings.crl_resign_before()));
    }
    if (out.crl_resign_before.count() <= 0) {
      return ErrorAt(at_field("crl_resign_before"),
                     "ca_settings crl_resign_before must be more than 0");
    }
  }
  if (out.crl_resign_before >= out.crl_validity) {
    return ErrorAt(
        at_field(settings.crl_resign_before().empty() ? "crl_validity" : "crl_resign_before"),
        "ca_settings crl_resign_before (" + std::to_string(out.crl_resign_before.count()) +
            " s) must be less than crl_validity (" + std::to_string(out.crl_validity.count()) +
            " s), or every CRL would be re-signed at once");
  }
  impl.ca_settings = out;
  return std::nullopt;
}

// SSH principal patterns: printable ASCII without space, '"', '\\' or ','
// (OpenSSH joins principals with commas in authorized_principals and in
// ssh-keygen -n).
bool IsValidSshPrincipalPattern(std::string_view pattern) {
  return !pattern.empty() && pattern.size() <= 256 &&
         std::all_of(
             pattern.begin(), pattern.end(),
             [](char c) { return c > ' ' && c < 0x7f && c != ',' && c != '"' && c != '\\'; }) &&
         SshPrincipalPatternIsWellFormed(pattern);
}

bool IsSshExtensionName(std::string_view name) {
  return std::find(std::begin(kSshExtensionNames), std::end(kSshExtensionNames), name) !=
         std::end(kSshExtensionNames);
}

std::string SshExtensionNames() {
  std::string out;
  for (auto name : kSshExtensionNames) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

std::optional<ParseError> Compiler::CompileSshProfiles(const pb::PolicyFile& file,
                                                       internal::CompiledPolicy& impl) {
  const FieldDescriptor* profile_field =
      pb::PolicyFile::descriptor()->FindFieldByName("ssh_profile");
  const FieldDescriptor* name_field = pb::SshProfile::descriptor()->FindFieldByName("name");
  std::unordered_map<std::string_view, int> first_index;  // views into `file`
  for (int i = 0; i < file.ssh_profile_size(); ++i) {
    const pb::SshProfile& profile = file.ssh_profile(i);
    const ParseInfoTree* tree = tree_.GetTreeForNested(profile_field, i);
    const Position at = Locate(&tree_, profile_field, i);
    if (profile.name().empty()) return ErrorAt(at, "ssh_profile has no name");
    const Position name_at = Locate(tree, name_field, -1);
    if (!IsValidName(profile.name())) {
      return ErrorAt(name_at, "ssh_profile name " + Quoted(profile.name()) +
                                  " is not valid: use 1 to 64 characters from [a-z0-9._-], "
                                  "starting with a letter or digit");
    }
    if (auto [it, inserted] = first_index.emplace(profile.name(), i); !inserted) {
      const Position first =
          Locate(tree_.GetTreeForNested(profile_field, it->second), name_field, -1);
      return ErrorAt(name_at, "duplicate ssh_profile name " + Quoted(profile.name()) +
                                  " (first defined at line " + std::to_string(first.line) + ")");
    }
    SshProfile compiled;
    std::vector<std::uint32_t> roles;
    if (auto error = CompileSshProfile(profile, tree, at, compiled, roles)) return error;
    impl.ssh_profiles.push_back(std::move(compiled));
    impl.ssh_profile_roles.push_back(std::move(roles));
  }
  return std::nullopt;
}

std::optional<ParseError> Compiler::CompileSshProfile(const pb::SshProfile& profile,
                                                      const ParseInfoTree* tree, Position at,
                                                      SshProfile& out,
                                                      std::vector<std::uint32_t>& roles) const {
  const Descriptor* d = pb::SshProfile::descriptor();
  auto field = [&](const char* name) { return d->FindFieldByName(name); };
  auto at_field = [&](const char* name) {
    const Position pos = Locate(tree, field(name), -1);
    return pos.line > 0 ? pos : at;
  };
  const std::string what = "ssh_profile " + Quoted(profile.name());
  out.name = profile.name();

  if (profile.keys().empty()) {
    return ErrorAt(at, what + " names no keys (globs of the ssh-ca keys that sign under it)");
  }
  for (int j = 0; j < profile.keys_size(); ++j) {
    const std::string& pattern = profile.keys(j);
    if (!IsValidKeyPattern(pattern)) {
      return ErrorAt(Locate(tree, field("keys"), j),
                     what + " key pattern " + Quoted(pattern) +
                         " can never match: key names use only [a-z0-9._-], with '*' and '?' "
                         "as wildcards");
    }
    out.keys.push_back(pattern);
  }

  if (profile.roles().empty()) {
    return ErrorAt(at, what + " names no roles (the roles that may sign under it)");
  }
  if (auto error = ResolveRoles(profile.roles(), tree, field("roles"), what, roles)) return error;
  for (auto role : roles) out.roles.push_back((*impl_roles_)[role]);

  if (profile.cert_types().empty()) {
    return ErrorAt(at, what + " lists no cert_types (USER, HOST or both)");
  }
  for (int j = 0; j < profile.cert_types_size(); ++j) {
    switch (profile.cert_types(j)) {
      case pb::SshProfile::USER:
        out.user = true;
        break;
      case pb::SshProfile::HOST:
        out.host = true;
        break;
      default:
        return ErrorAt(Locate(tree, field("cert_types"), j),
                       what + " cert_types must be USER or HOST");
    }
  }

  if (profile.principals().empty()) {
    return ErrorAt(at, what +
                           " lists no principals (patterns the certificate's user or host "
                           "names must match, e.g. \"[a-z]*\" or \"*.dev.example\")");
  }
  for (int j = 0; j < profile.principals_size(); ++j) {
    const std::string& pattern = profile.principals(j);
    if (!IsValidSshPrincipalPattern(pattern)) {
      return ErrorAt(Locate(tree, field("principals"), j),
                     what + " principal pattern " + Quoted(pattern) +
                         " is not valid: use 1 to 256 printable characters without space, "
                         "comma, quote or backslash, and close every '[' class");
    }
    out.principals.push_back(pattern);
  }

  if (profile.max_principals() != 0) {
    if (profile.max_principals() > kSshMaxPrincipalsBound) {
      return ErrorAt(at_field("max_principals"),
                     what + " max_principals " + std::to_string(profile.max_principals()) +
                         " is more than " + std::to_string(kSshMaxPrincipalsBound));
    }
    out.max_principals = profile.max_principals();
  }

  if (profile.max_validity().empty()) {
    return ErrorAt(at, what + " has no max_validity (e.g. max_validity: \"24h\")");
  }
  if (!ParsePolicyDuration(profile.max_validity(), &out.max_validity)) {
    return ErrorAt(at_field("max_validity"),
                   what + " " + DurationError("max_validity", profile.max_validity()));
  }
  if (out.max_validity.count() <= 0) {
    return ErrorAt(at_field("max_validity"), what + " max_validity must be more than 0");
  }
  if (profile.default_validity().empty()) {
    out.default_validity = out.max_validity;
  } else {
    if (!ParsePolicyDuration(profile.default_validity(), &out.default_validity)) {
      return ErrorAt(at_field("default_validity"),
                     what + " " + DurationError("default_validity", profile.default_validity()));
    }
    if (out.default_validity.count() <= 0) {
      return ErrorAt(at_field("default_validity"), what + " default_validity must be more than 0");
    }
    if (out.default_validity > out.max_validity) {
      return ErrorAt(at_field("default_validity"),
                     what + " default_validity " + Quoted(profile.default_validity()) +
                         " is longer than max_validity " + Quoted(profile.max_validity()));
    }
  }

  auto extensions = [&](const char* name,
                        const google::protobuf::RepeatedPtrField<std::string>& names,
                        std::vector<std::string>& list) -> std::optional<ParseError> {
    for (int j = 0; j < names.size(); ++j) {
      const Position pos = Locate(tree, field(name), j);
      if (!IsSshExtensionName(names[j])) {
        return ErrorAt(pos, what + " " + name + " names unknown extension " + Quoted(names[j]) +
                                " (known: " + SshExtensionNames() + ")");
      }
      if (std::find(list.begin(), list.end(), names[j]) != list.end()) {
        return ErrorAt(pos, what + " " + name + " lists " + Quoted(names[j]) + " twice");
      }
      if (!out.user) {
        return ErrorAt(pos, what + " " + name +
                                ": extensions apply to user certificates, and the profile has "
                                "no USER cert_type");
      }
      list.push_back(names[j]);
    }
    return std::nullopt;
  };
  if (auto error =
          extensions("allowed_extensions", profile.allowed_extensions(), out.allowed_extensions)) {
    return error;
  }
  if (auto error =
          extensions("default_extensions", profile.default_extensions(), out.default_extensions)) {
    return error;
  }
  for (std::size_t j = 0; j < out.default_extensions.size(); ++j) {
    if (std::find(out.allowed_extensions.begin(), out.allowed_extensions.end(),
                  out.default_extensions[j]) == out.allowed_extensions.end()) {
      return ErrorAt(Locate(tree, field("default_extensions"), static_cast<int>(j)),
                     what + " default extension " + Quoted(out.default_extensions[j]) +
                         " is not in allowed_extensions");
    }
  }
  out.allow_force_command = profile.allow_force_command();
  out.allow_source_address = profile.allow_source_address();
  if ((out.allow_force_command || out.allow_source_address) && !out.user) {
    return ErrorAt(
        at_field(out.allow_force_command ? "allow_force_command" : "allow_source_address"),
        what +
            ": force-command and source-address apply to user certificates, and "
            "the profile has no USER cert_type");
  }
  return std::nullopt;
}

}  // namespace

Policy::Policy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Policy::Policy(Policy&&) noexcept = default;
Policy& Policy::operator=(Policy&&) noexcept = default;
Policy::~Policy() = default;

std::variant<Policy, ParseError> Policy::Parse(std::string_view text) {
  if (text.size() > kMaxPolicyBytes) {
    return ParseError{0, 0,
                      "policy is " + std::to_string(text.size()) + " bytes; the limit is " +
                          std::to_string(kMaxPolicyBytes) + " bytes"};
  }
  const SourceText source(text);
  pb::PolicyFile file;
  ParseInfoTree tree;
  FirstErrorCollector errors;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  parser.AllowUnknownField(false);
  parser.AllowUnknownExtension(false);
  parser.AllowFieldNumber(false);
  ::google::protobuf::io::ArrayInputStream input(text.data(), static_cast<int>(text.size()));
  if (!parser.Parse(&input, &file)) {
    if (!errors.error()) return ParseError{0, 0, "policy text is not valid Protobuf text format"};
    const auto& e = *errors.error();
    // Protobuf reports an unknown field or enum value, or a repeated singular
    // field, at the token after it; point at the token the message quotes.
    std::size_t offset = source.OffsetOf(e.line, e.column);
    const std::string_view message(e.message);
    const bool reported_late =
        message.find("has no field named") != std::string_view::npos ||
        message.find("Unknown enumeration value") != std::string_view::npos ||
        message.find("specified multiple times") != std::string_view::npos;
    for (std::size_t open = reported_late ? message.find('"') : std::string_view::npos;
         open != std::string_view::npos;) {
      const std::size_t close = message.find('"', open + 1);
      if (close == std::string_view::npos) break;
      const std::size_t moved =
          source.TokenBefore(offset, message.substr(open + 1, close - open - 1));
      if (moved != offset) {
        offset = moved;
        break;
      }
      open = message.find('"', close + 1);
    }
    const Position pos = e.line < 0 ? Position{} : source.PositionOf(offset);
    return ParseError{pos.line, pos.column, e.message};
  }

  auto impl = std::make_unique<Impl>();
  Compiler compiler(source, tree);
  if (auto error = compiler.Compile(file, *impl)) return *std::move(error);
  impl->file = std::move(file);
  return Policy(std::move(impl));
}

std::uint64_t Policy::version() const { return impl_->version; }

std::string_view AdminOperationName(AdminOperation op) {
  switch (op) {
    case AdminOperation::kReadPolicy:
      return "READ_POLICY";
    case AdminOperation::kProposePolicy:
      return "PROPOSE_POLICY";
    case AdminOperation::kManageCa:
      return "MANAGE_CA";
    case AdminOperation::kRevokeCertificate:
      return "REVOKE_CERTIFICATE";
    case AdminOperation::kReadCertificates:
      return "READ_CERTIFICATES";
  }
  return "UNKNOWN";
}

Decision Policy::CheckAdmin(std::string_view principal, AdminOperation op) const {
  const Impl& impl = *impl_;
  if (principal.empty()) {
    return Decision{false, std::string(kDefaultDenyRule),
                    "request has no principal (the client certificate has no URI SAN, DNS SAN "
                    "or CN)"};
  }
  const RoleSet roles = impl.RolesFor(principal);
  const unsigned op_bit = 1u << static_cast<unsigned>(op);
  for (const auto& rule : impl.admin_rules) {
    if ((rule.operations & op_bit) == 0) continue;
    auto role = std::find_if(rule.roles.begin(), rule.roles.end(),
                             [&](std::uint32_t r) { return roles.Has(r); });
    if (role == rule.roles.end()) continue;
    std::string reason = "allowed by admin_rule ";
    AppendQuoted(reason, rule.name);
    reason += " for role ";
    AppendQuoted(reason, impl.roles[*role]);
    return Decision{true, rule.name, std::move(reason)};
  }
  std::string reason = "principal ";
  AppendQuoted(reason, principal);
  reason += " (roles: ";
  bool any_role = false;
  for (std::uint32_t i = 0; i < impl.roles.size(); ++i) {
    if (!roles.Has(i)) continue;
    if (any_role) reason += ", ";
    reason += impl.roles[i];
    any_role = true;
  }
  if (!any_role) reason += "none";
  reason += ") has no admin_rule allowing ";
  reason += AdminOperationName(op);
  if (!any_role) reason += "; no binding matches this principal";
  return Decision{false, std::string(kDefaultDenyRule), std::move(reason)};
}

std::vector<std::string> Policy::RolesOf(std::string_view principal) const {
  std::vector<std::string> out;
  if (principal.empty()) return out;
  const RoleSet set = impl_->RolesFor(principal);
  for (std::uint32_t i = 0; i < impl_->roles.size(); ++i) {
    if (set.Has(i)) out.push_back(impl_->roles[i]);
  }
  return out;
}

Decision Policy::Check(const KeyRequest& request) const {
  const Impl& impl = *impl_;
  const bool needs_algorithm = request.operation == Operation::kSign ||
                               request.operation == Operation::kCreate ||
                               request.operation == Operation::kRotate;
  auto deny = [](std::string reason) {
    return Decision{false, std::string(kDefaultDenyRule), std::move(reason)};
  };
  if (request.principal.empty()) {
    return deny("request has no principal (the client certificate has no URI SAN, DNS SAN or CN)");
  }
  if (request.key_name.empty()) return deny("request names no key");
  if (needs_algorithm && request.algorithm.empty()) {
    return deny(std::string("request to ") + std::string(OperationName(request.operation)) +
                " names no algorithm");
  }

  const RoleSet roles = impl.RolesFor(request.principal);
  const unsigned op_bit = OperationBit(request.operation);
  const internal::CompiledPolicy::Rule* usage_miss = nullptr;
  const internal::CompiledPolicy::Rule* algorithm_miss = nullptr;
  for (const auto& rule : impl.rules) {
    if ((rule.operations & op_bit) == 0) continue;
    auto role = std::find_if(rule.roles.begin(), rule.roles.end(),
                             [&](std::uint32_t r) { return roles.Has(r); });
    if (role == rule.roles.end()) continue;
    if (std::none_of(rule.keys.begin(), rule.keys.end(),
                     [&](const std::string& k) { return GlobMatch(k, request.key_name); })) {
      continue;
    }
    if (!rule.any_usage &&
        std::find(rule.usages.begin(), rule.usages.end(), request.key_usage) == rule.usages.end()) {
      if (usage_miss == nullptr) usage_miss = &rule;
      continue;
    }
    if (needs_algorithm && !rule.any_algorithm &&
        std::find(rule.algorithms.begin(), rule.algorithms.end(), request.algorithm) ==
            rule.algorithms.end()) {
      if (algorithm_miss == nullptr) algorithm_miss = &rule;
      continue;
    }
    std::string reason = "allowed by key_rule ";
    AppendQuoted(reason, rule.name);
    reason += " for role ";
    AppendQuoted(reason, impl.roles[*role]);
    return Decision{true, rule.name, std::move(reason)};
  }

  // Refusal: say what was asked and what is missing.
  std::string reason = "principal ";
  AppendQuoted(reason, request.principal);
  reason += " (roles: ";
  bool any_role = false;
  for (std::uint32_t i = 0; i < impl.roles.size(); ++i) {
    if (!roles.Has(i)) continue;
    if (any_role) reason += ", ";
    reason += impl.roles[i];
    any_role = true;
  }
  if (!any_role) reason += "none";
  reason += ") has no rule allowing ";
  reason += OperationName(request.operation);
  reason += " on key ";
  AppendQuoted(reason, request.key_name);
  reason += " (usage ";
  if (request.key_usage.empty()) {
    reason += "none";
  } else {
    AppendEscaped(reason, request.key_usage);
  }
  reason += ")";
  if (needs_algorithm) {
    reason += " with ";
    AppendEscaped(reason, request.algorithm);
  }
  auto join = [](const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) {
      if (!out.empty()) out += ", ";
      out += n;
    }
    return out;
  };
  if (!any_role) {
    reason += "; no binding matches this principal";
  } else if (usage_miss != nullptr) {
    reason += "; key_rule ";
    AppendQuoted(reason, usage_miss->name);
    reason += " allows usages " + join(usage_miss->usages) + " only";
  } else if (algorithm_miss != nullptr) {
    reason += "; key_rule ";
    AppendQuoted(reason, algorithm_miss->name);
    reason += " allows " + join(algorithm_miss->algorithms) + " only";
  }
  return deny(std::move(reason));
}

}  // namespace custos::policy
