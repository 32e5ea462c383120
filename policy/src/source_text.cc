#include "source_text.h"

#include <algorithm>

namespace custos::policy::internal {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool IsBareTokenChar(char c) {
  switch (c) {
    case ',':
    case ']':
    case '[':
    case '{':
    case '}':
    case '<':
    case '>':
    case '#':
    case ';':
    case ':':
    case '"':
    case '\'':
      return false;
    default:
      return !IsSpace(c);
  }
}

}  // namespace

SourceText::SourceText(std::string_view text) : text_(text) {
  line_starts_.push_back(0);
  for (std::size_t i = 0; i < text_.size(); ++i) {
    if (text_[i] == '\n') line_starts_.push_back(i + 1);
  }
}

std::size_t SourceText::OffsetOf(int line, int column) const {
  if (line < 0) return 0;
  if (static_cast<std::size_t>(line) >= line_starts_.size()) return text_.size();
  std::size_t offset = line_starts_[static_cast<std::size_t>(line)];
  int col = 0;
  while (offset < text_.size() && text_[offset] != '\n' && col < column) {
    col = text_[offset] == '\t' ? col + 8 - col % 8 : col + 1;
    ++offset;
  }
  return offset;
}

Position SourceText::PositionOf(std::size_t offset) const {
  offset = std::min(offset, text_.size());
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
  const auto line = static_cast<std::size_t>(it - line_starts_.begin());  // >= 1
  return Position{static_cast<int>(line), static_cast<int>(offset - line_starts_[line - 1] + 1)};
}

Position SourceText::FromProtobuf(int line, int column) const {
  if (line < 0) return Position{};
  return PositionOf(OffsetOf(line, std::max(column, 0)));
}

std::size_t SourceText::SkipSpaceAndComments(std::size_t i) const {
  while (i < text_.size()) {
    if (IsSpace(text_[i])) {
      ++i;
    } else if (text_[i] == '#') {
      while (i < text_.size() && text_[i] != '\n') ++i;
    } else {
      break;
    }
  }
  return i;
}

std::size_t SourceText::SkipString(std::size_t i) const {
  const char quote = text_[i++];
  while (i < text_.size() && text_[i] != quote && text_[i] != '\n') {
    i += text_[i] == '\\' ? 2 : 1;
  }
  return std::min(i + 1, text_.size());
}

std::size_t SourceText::SkipValue(std::size_t i) const {
  if (i >= text_.size()) return i;
  const char c = text_[i];
  if (c == '"' || c == '\'') {
    // Adjacent string literals form one value: "a" "b".
    i = SkipString(i);
    for (std::size_t next = SkipSpaceAndComments(i);
         next < text_.size() && (text_[next] == '"' || text_[next] == '\'');
         next = SkipSpaceAndComments(i)) {
      i = SkipString(next);
    }
    return i;
  }
  if (c == '{' || c == '<') {
    int depth = 0;
    while (i < text_.size()) {
      const char d = text_[i];
      if (d == '"' || d == '\'') {
        i = SkipString(i);
        continue;
      }
      if (d == '#') {
        i = SkipSpaceAndComments(i);
        continue;
      }
      if (d == '{' || d == '<') ++depth;
      if (d == '}' || d == '>') --depth;
      ++i;
      if (depth == 0) break;
    }
    return i;
  }
  const std::size_t start = i;
  while (i < text_.size() && IsBareTokenChar(text_[i])) ++i;
  return i == start ? i + 1 : i;  // always advance
}

std::vector<std::size_t> SourceText::ValueOffsets(std::size_t field_offset, bool* is_list) const {
  if (is_list != nullptr) *is_list = false;
  std::size_t i = std::min(field_offset, text_.size());
  while (i < text_.size() && IsBareTokenChar(text_[i])) ++i;  // the field name
  i = SkipSpaceAndComments(i);
  if (i < text_.size() && text_[i] == ':') i = SkipSpaceAndComments(i + 1);
  if (i >= text_.size() || text_[i] != '[') return {i};
  if (is_list != nullptr) *is_list = true;
  std::vector<std::size_t> offsets;
  i = SkipSpaceAndComments(i + 1);
  while (i < text_.size() && text_[i] != ']') {
    offsets.push_back(i);
    i = SkipSpaceAndComments(SkipValue(i));
    if (i < text_.size() && text_[i] == ',') i = SkipSpaceAndComments(i + 1);
  }
  return offsets;
}

std::size_t SourceText::TokenBefore(std::size_t offset, std::string_view token) const {
  std::size_t i = std::min(offset, text_.size());
  auto skip_space = [&] {
    while (i > 0 && IsSpace(text_[i - 1])) --i;
  };
  skip_space();
  if (i > 0 && text_[i - 1] == ':') {
    --i;
    skip_space();
  }
  if (token.empty() || i < token.size() || text_.substr(i - token.size(), token.size()) != token)
    return offset;
  return i - token.size();
}

}  // namespace custos::policy::internal
