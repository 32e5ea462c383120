// The pure parts of `custos sign` for many files (multi_sign_plan.cc):
// reading a --files-from list, planning where signatures go, the manifest
// text, batch sizes and the progress display. Unit-tested in
// tests/unit/client/multi_sign_test.cc; the command itself is multi_sign.cc.
#pragma once

#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace custos::cli {

// Most items the CLI puts in one sign_batch request (the server takes 1024).
inline constexpr std::size_t kMaxBatchItems = 256;

// A --files-from list: one path per line, "\n" or "\r\n" endings, empty lines
// skipped; everything else on a line (spaces included) is the path.
std::vector<std::string> ParseFileList(std::string_view text);

// Where each file's signature goes: FILE.sig, or DIR/BASENAME.sig when
// `out_dir` is set. Returns the end of an error sentence when two files would
// write the same signature file ("a/x and b/x both sign to out/x.sig"), or a
// file has no base name.
std::optional<std::string> PlanSignaturePaths(const std::vector<std::string>& files,
                                              const std::string& out_dir,
                                              std::vector<std::string>* sig_paths);

// The manifest: one "HEX  PATH\n" line per (path, raw SHA-256) entry, sorted
// by path (bytewise), the format `sha256sum` writes and `sha256sum -c`
// checks. Returns the end of an error sentence for a path with a line break
// (it cannot be written in this format), else std::nullopt.
std::optional<std::string> ManifestText(std::vector<std::pair<std::string, std::string>> entries,
                                        std::string* text);

// Items per sign_batch request for `n` files: about n/20 (so progress moves in
// ~5% steps and several requests are in flight), at least 1, at most
// kMaxBatchItems.
std::size_t BatchSize(std::size_t n);

// "[#######-------------] 300/1000 files signed" with a bar of `width` cells.
std::string ProgressBarText(std::size_t done, std::size_t total, std::size_t width);

// Progress of `total` files on `out` (stderr). On a terminal one line redrawn
// with "\r"; otherwise "signed K/N files" lines each time K passes another
// 10% of N. Note() prints a whole line (a per-file error) without breaking
// the bar.
class Progress {
 public:
  Progress(std::size_t total, bool terminal, std::FILE* out);
  void Update(std::size_t done);
  void Note(const std::string& line);
  // Ends the bar's line (terminal) so later output starts on its own line.
  void Finish();

 private:
  std::size_t total_;
  bool terminal_;
  std::FILE* out_;
  std::size_t done_ = 0;
  std::size_t last_decile_ = 0;
  bool drawn_ = false;
};

}  // namespace custos::cli
