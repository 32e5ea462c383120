// GlobMatch and PrincipalFromIdentity: the two pure helpers of policy.h.
#include <string>
#include <string_view>
#include <vector>

#include "custos/policy/policy.h"

namespace custos::policy {

namespace {

// Does `segment` ('?' matches any byte, no '*') match text at `at`?
bool SegmentMatchesAt(std::string_view segment, std::string_view text, std::size_t at) {
  if (at > text.size() || text.size() - at < segment.size()) return false;
  for (std::size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] != '?' && segment[i] != text[at + i]) return false;
  }
  return true;
}

// Leftmost position >= from where `segment` matches inside text, or npos.
// Candidates come from std::string_view::find on the segment's longest literal
// run (memchr/memcmp speed), so even hostile patterns cost a fraction of a
// second on 20 KB of text; only candidates are checked byte by byte.
std::size_t FindSegment(std::string_view segment, std::string_view text, std::size_t from) {
  if (from > text.size() || text.size() - from < segment.size()) return std::string_view::npos;
  std::size_t run_start = 0;
  std::size_t run_size = 0;
  for (std::size_t i = 0; i < segment.size();) {
    if (segment[i] == '?') {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < segment.size() && segment[j] != '?') ++j;
    if (j - i > run_size) {
      run_start = i;
      run_size = j - i;
    }
    i = j;
  }
  if (run_size == 0) return from;  // only '?': any position with room fits
  const std::string_view run = segment.substr(run_start, run_size);
  const std::size_t last_start = text.size() - segment.size();
  for (std::size_t hit = text.find(run, from + run_start);
       hit != std::string_view::npos && hit - run_start <= last_start;
       hit = text.find(run, hit + 1)) {
    if (SegmentMatchesAt(segment, text, hit - run_start)) return hit - run_start;
  }
  return std::string_view::npos;
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Split at '*': the first segment is anchored at the start, the last at the
  // end, and each middle one matches at its leftmost place after the previous
  // one (taking the leftmost match never loses a match a later one could make,
  // because the following star absorbs whatever lies between).
  const std::size_t first_star = pattern.find('*');
  if (first_star == std::string_view::npos) {
    return pattern.size() == text.size() && SegmentMatchesAt(pattern, text, 0);
  }
  const std::size_t last_star = pattern.rfind('*');
  const std::string_view head = pattern.substr(0, first_star);
  const std::string_view tail = pattern.substr(last_star + 1);
  if (head.size() + tail.size() > text.size()) return false;
  if (!SegmentMatchesAt(head, text, 0)) return false;
  if (!SegmentMatchesAt(tail, text, text.size() - tail.size())) return false;

  // Middle segments must fit between head and tail.
  const std::string_view middle_text = text.substr(0, text.size() - tail.size());
  std::size_t t = head.size();
  std::size_t p = first_star + 1;
  while (p < last_star) {
    const std::size_t next_star = pattern.find('*', p);
    const std::string_view segment = pattern.substr(p, next_star - p);
    p = next_star + 1;
    if (segment.empty()) continue;
    const std::size_t at = FindSegment(segment, middle_text, t);
    if (at == std::string_view::npos) return false;
    t = at + segment.size();
  }
  return true;
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
