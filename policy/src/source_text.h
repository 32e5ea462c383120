// Maps positions reported by protobuf's text-format parser back to the policy
// text, and finds the values of `field: [a, b, c]` lists, which the parser's
// ParseInfoTree records as one location. Internal to policy/.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace custos::policy::internal {

// 1-based line and byte column; {0, 0} when unknown.
struct Position {
  int line = 0;
  int column = 0;
};

// A view of the policy text; the text must outlive this object.
class SourceText {
 public:
  explicit SourceText(std::string_view text);

  // Byte offset of a protobuf tokenizer position: 0-based line, 0-based column
  // in which a tab advances to the next multiple of 8. Clamped to the text.
  std::size_t OffsetOf(int line, int column) const;
  // 1-based line and byte column of a byte offset (clamped to the text).
  Position PositionOf(std::size_t offset) const;
  // PositionOf(OffsetOf(line, column)); {0, 0} when line < 0.
  Position FromProtobuf(int line, int column) const;

  // `field_offset` is where a field occurrence starts (its name). Returns the
  // offset of each value in that occurrence: one for `name: v` or
  // `name { ... }`, one per element for `name: [v1, v2]`. Tolerant: the text
  // has already been parsed, but this never reads outside it whatever it is.
  // `*is_list` (when given) tells whether the occurrence was a `[...]` list.
  std::vector<std::size_t> ValueOffsets(std::size_t field_offset, bool* is_list = nullptr) const;

  // Protobuf reports some errors at the token after the one at fault. If the
  // bytes before `offset`, skipping whitespace and one ':', end with `token`,
  // returns where that token starts; otherwise returns `offset`.
  std::size_t TokenBefore(std::size_t offset, std::string_view token) const;

 private:
  std::size_t SkipSpaceAndComments(std::size_t i) const;
  std::size_t SkipValue(std::size_t i) const;
  std::size_t SkipString(std::size_t i) const;

  std::string_view text_;
  std::vector<std::size_t> line_starts_;
};

}  // namespace custos::policy::internal
