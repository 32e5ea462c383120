#include "view.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "custos/policy/approval.h"

namespace custos::officer {
namespace {

namespace v1 = custos::v1;

constexpr int kLabelWidth = 22;

std::string Line(std::string_view label, std::string_view value) {
  std::string out = "  ";
  out.append(label);
  out.push_back(':');
  const int pad = kLabelWidth - static_cast<int>(label.size()) - 1;
  out.append(static_cast<std::size_t>(std::max(pad, 1)), ' ');
  out.append(value);
  out.push_back('\n');
  return out;
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

// "create a key (create-key)"; the name alone when it is not known.
std::string OperationText(std::string_view op) {
  static const std::map<std::string_view, std::string_view> kWords = {
      {"sign", "sign a digest with a key"},
      {"sign-batch", "sign a batch of digests with a key"},
      {"create-key", "create a key"},
      {"rotate-key", "rotate a key (make a new version)"},
      {"enable-key", "enable a key version"},
      {"disable-key", "disable a key version"},
      {"destroy-key", "destroy a key version (final)"},
      {"mark-compromised", "mark a key version compromised"},
      {"policy-change", "change the policy"},
      {"issue-certificate", "issue a certificate"},
      {"create-ca", "create a CA certificate"},
      {"revoke-certificate", "revoke a certificate"},
  };
  const auto it = kWords.find(op);
  if (it == kWords.end()) return std::string(op);
  return std::string(it->second) + " (" + std::string(op) + ")";
}

std::string OrDash(std::string s) { return s.empty() ? "-" : s; }

}  // namespace

std::string TerminalSafe(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || u == '%') {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::variant<CheckedRequest, std::string> CheckRequest(const v1::PendingRequestInfo& info) {
  const std::string id = TerminalSafe(info.id());
  auto parsed = policy::ParsePendingRequest(info.canonical());
  if (auto* error = std::get_if<std::string>(&parsed)) {
    return "request " + id + ": the server's canonical encoding does not parse (" +
           TerminalSafe(*error) + "); not shown, nothing signed";
  }
  CheckedRequest out;
  out.info = info;
  out.text = std::move(std::get<policy::PendingRequestText>(parsed));
  if (out.text.id != info.id()) {
    return "request " + id + ": its canonical encoding names request " + TerminalSafe(out.text.id) +
           "; not shown, nothing signed";
  }
  out.digest = policy::RequestDigest(info.canonical());
  const std::string local = policy::DigestToString(out.digest);
  if (local != info.digest()) {
    return "request " + id + ": the server says its digest is " + TerminalSafe(info.digest()) +
           " but its canonical encoding hashes to " + local + " here; not shown, nothing signed";
  }
  if (auto want = out.text.Get("payload-sha256")) {
    if (info.payload().empty()) {
      return "request " + id +
             ": the server sent no payload to check against payload-sha256; nothing signed";
    }
    const std::string got = Sha256Hex(info.payload());
    if (got != *want && "sha256:" + got != *want) {
      return "request " + id + ": its payload hashes to " + got + " but the request says " +
             TerminalSafe(*want) + "; not shown, nothing signed";
    }
  }
  const std::string operation = out.text.Get("operation").value_or("");
  if (IsCertificateOperation(operation)) {
    const bool bound = out.text.Get("payload-sha256").has_value();
    if (!bound && operation != "revoke-certificate") {
      return "request " + id + ": a " + TerminalSafe(operation) +
             " request without payload-sha256 does not bind the certificate to be signed; not "
             "shown, nothing signed";
    }
    if (bound) {
      auto parsed = ParseCertificatePayload(info.payload());
      if (auto* error = std::get_if<std::string>(&parsed)) {
        return "request " + id + ": its payload cannot be shown: " + *error + "; nothing signed";
      }
      out.certificate = std::move(std::get<CertificateView>(parsed));
      if (auto mismatch = CompareWithRequest(*out.certificate, out.text)) {
        return "request " + id + ": " + *mismatch + "; not shown, nothing signed";
      }
    }
  }
  return out;
}

std::string TimeLeftText(std::chrono::seconds left) {
  const long long s = left.count();
  if (s <= 0) return "expired";
  const long long days = s / 86400, hours = (s % 86400) / 3600, minutes = (s % 3600) / 60;
  // Hours up to a full day ("24 h 0 min" for a request made just now).
  if (s > 86400) return std::to_string(days) + " d " + std::to_string(hours) + " h";
  if (s >= 3600) return std::to_string(s / 3600) + " h " + std::to_string(minutes) + " min";
  if (minutes > 0) return std::to_string(minutes) + " min";
  return std::to_string(s) + " s";
}

std::optional<std::chrono::sys_seconds> ParseUtc(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SSZ
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || text[19] != 'Z') {
    return std::nullopt;
  }
  auto num = [&](std::size_t pos, std::size_t len, int* v) {
    *v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      *v = *v * 10 + (text[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, s;
  if (!num(0, 4, &y) || !num(5, 2, &mo) || !num(8, 2, &d) || !num(11, 2, &h) || !num(14, 2, &mi) ||
      !num(17, 2, &s)) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year(y),
                                        std::chrono::month(static_cast<unsigned>(mo)),
                                        std::chrono::day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 59) return std::nullopt;
  return std::chrono::sys_days(ymd) + std::chrono::hours(h) + std::chrono::minutes(mi) +
         std::chrono::seconds(s);
}

std::string FormatUtc(std::chrono::sys_seconds t) {
  const std::time_t tt = static_cast<std::time_t>(t.time_since_epoch().count());
  std::tm tm{};
  if (gmtime_r(&tt, &tm) == nullptr) return std::to_string(tt);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string FieldLabel(std::string_view field) {
  static const std::map<std::string_view, std::string_view> kLabels = {
      {"operation", "Operation"},
      {"requester", "Requester"},
      {"created", "Created"},
      {"expires", "Expires"},
      {"policy-version", "Policy version"},
      {"quorum", "Quorum"},
      {"key", "Key"},
      {"key-type", "Key type"},
      {"usage", "Usage"},
      {"algorithm", "Algorithm"},
      {"digest", "Digest to be signed"},
      {"message-sha256", "Message SHA-256"},
      {"file", "File"},
      {"item", "Item"},
      {"proposed-version", "Proposed version"},
      {"payload-sha256", "Policy text SHA-256"},
      {"profile", "Profile"},
      {"ca", "CA"},
      {"subject", "Subject"},
      {"san", "SAN"},
      {"not-before", "Not before"},
      {"not-after", "Not after"},
      {"key-algorithm", "Key algorithm"},
      {"serial", "Serial"},
      {"parent", "Parent CA"},
      {"path-len", "Path length"},
      {"reason", "Reason"},
      {"revokes-ca", "Revokes the CA"},
      {"name", "CA name"},
      {"basic-constraints", "Basic constraints"},
      {"policy-diff", "Change"},
      {"note", "Note"},
  };
  const auto it = kLabels.find(field);
  return it == kLabels.end() ? std::string(field) : std::string(it->second);
}

std::string ApprovalsText(const v1::PendingRequestInfo& info) {
  std::uint64_t have = 0, need = 0;
  for (const auto& q : info.quorum()) {
    have +=
        std::min<std::uint64_t>(static_cast<std::uint64_t>(q.approved_by_size()), q.threshold());
    need += q.threshold();
  }
  return std::to_string(have) + "/" + std::to_string(need);
}

std::string DescribeRequest(const CheckedRequest& request,
                            std::chrono::system_clock::time_point now) {
  const v1::PendingRequestInfo& info = request.info;
  const auto now_s = std::chrono::floor<std::chrono::seconds>(now);
  std::string out = "Request " + TerminalSafe(request.text.id) + "\n";
  bool time_left_shown = false;
  for (const auto& [name, value] : request.text.fields) {
    std::string label = FieldLabel(name);
    if (name == "payload-sha256" && request.certificate) {
      label = request.certificate->to_be_signed ? "TBS SHA-256" : "Certificate SHA-256";
    }
    if (name == "operation") {
      out += Line(label, TerminalSafe(OperationText(value)));
    } else {
      out += Line(label, TerminalSafe(value));
    }
    if (name == "expires") {
      if (auto t = ParseUtc(value)) {
        out += Line("Time left", TimeLeftText(*t - now_s));
        time_left_shown = true;
      }
    }
  }
  if (!time_left_shown && info.expires_at() != 0) {
    out += Line("Time left",
                TimeLeftText(std::chrono::seconds(info.expires_at()) - now_s.time_since_epoch()));
  }
  out += Line("Request digest",
              policy::DigestToString(request.digest) + " (computed here from the request)");
  if (request.certificate) {
    out += request.certificate->to_be_signed
               ? "Certificate to be signed (parsed here from the payload that payload-sha256 "
                 "binds):\n"
               : "Certificate concerned (parsed here from the payload that payload-sha256 "
                 "binds):\n";
    for (const auto& [label, value] : CertificateLines(*request.certificate)) {
      out += Line(label, TerminalSafe(value));
    }
  }
  out += "Status (reported by the server, not part of what you sign):\n";
  std::string state = TerminalSafe(info.state());
  if (!info.state_reason().empty()) state += ": " + TerminalSafe(info.state_reason());
  out += Line("State", state);
  std::string progress = ApprovalsText(info);
  for (const auto& q : info.quorum()) {
    std::string by;
    for (const auto& o : q.approved_by()) by += (by.empty() ? "" : ", ") + TerminalSafe(o);
    progress += " (" + TerminalSafe(q.rule()) + ": " + (by.empty() ? "none yet" : by) + ")";
  }
  out += Line("Approvals", progress);
  for (const auto& v : info.votes()) {
    std::string vote = TerminalSafe(v.officer()) + " " + TerminalSafe(v.decision()) + " at " +
                       TerminalSafe(v.time());
    if (!v.reason().empty()) vote += ": " + TerminalSafe(v.reason());
    out += Line("Vote", vote);
  }
  return out;
}

std::string ListHeader() {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%3s  %-35s  %-11s  %-16s  %-24s  %-40s  %-9s  %s\n", "#", "ID",
                "STATE", "OPERATION", "KEY", "REQUESTER", "APPROVALS", "TIME LEFT");
  return buf;
}

std::string ListLine(std::size_t number, const v1::PendingRequestInfo& info,
                     std::chrono::system_clock::time_point now) {
  const auto left = std::chrono::seconds(info.expires_at()) -
                    std::chrono::floor<std::chrono::seconds>(now).time_since_epoch();
  std::string out = std::to_string(number);
  if (out.size() < 3) out.insert(0, 3 - out.size(), ' ');
  auto col = [&out](const std::string& value, std::size_t width) {
    out += "  " + value;
    if (value.size() < width) out.append(width - value.size(), ' ');
  };
  col(TerminalSafe(info.id()), 35);
  col(TerminalSafe(info.state()), 11);
  col(TerminalSafe(info.operation()), 16);
  col(OrDash(TerminalSafe(info.key())), 24);
  col(TerminalSafe(info.requester()), 40);
  col(ApprovalsText(info), 9);
  out += "  " + TimeLeftText(left);
  out += "\n";
  return out;
}

}  // namespace custos::officer
