// GlobMatch and PrincipalFromIdentity: the two pure helpers of policy.h.
#include <string>
#include <string_view>
#include <vector>

#include "custos/policy/policy.h"

namespace custos::policy {

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Greedy match with one backtrack point: on a mismatch, the most recent '*'
  // absorbs one more character of text. Earlier stars never need revisiting,
  // because a later star can absorb anything an earlier one could.
  constexpr std::size_t kNone = std::string_view::npos;
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = kNone;  // index in pattern of the last '*' seen
  std::size_t mark = 0;      // text index that star currently matches up to
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (star != kNone) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string PrincipalFromIdentity(const std::vector<std::string>& uri_sans,
                                  const std::vector<std::string>& dns_sans,
                                  std::string_view common_name) {
  for (const auto& uri : uri_sans) {
    if (!uri.empty()) return uri;
  }
  for (const auto& dns : dns_sans) {
    if (!dns.empty()) return dns;
  }
  return std::string(common_name);
}

}  // namespace custos::policy
