#include <algorithm>
#include <filesystem>
#include <map>

#include "multi_sign.h"

namespace custos::cli {

std::vector<std::string> ParseFileList(std::string_view text) {
  std::vector<std::string> files;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) files.emplace_back(line);
  }
  return files;
}

std::optional<std::string> PlanSignaturePaths(const std::vector<std::string>& files,
                                              const std::string& out_dir,
                                              std::vector<std::string>* sig_paths) {
  sig_paths->clear();
  std::map<std::string, std::size_t> seen;  // signature path -> file index
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::string sig;
    if (out_dir.empty()) {
      sig = files[i] + ".sig";
    } else {
      const std::string base = std::filesystem::path(files[i]).filename().string();
      if (base.empty() || base == "." || base == "..") {
        return files[i] + " has no file name to sign to in " + out_dir;
      }
      sig = (std::filesystem::path(out_dir) / (base + ".sig")).string();
    }
    const auto [it, inserted] = seen.emplace(sig, i);
    if (!inserted) {
      return files[it->second] + " and " + files[i] + " both sign to " + sig +
             " (give each file once" + (out_dir.empty() ? "" : ", with distinct base names") + ")";
    }
    sig_paths->push_back(std::move(sig));
  }
  return std::nullopt;
}

std::optional<std::string> ManifestText(std::vector<std::pair<std::string, std::string>> entries,
                                        std::string* text) {
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  static const char kHex[] = "0123456789abcdef";
  text->clear();
  for (const auto& [path, digest] : entries) {
    if (path.find_first_of("\r\n") != std::string::npos) {
      return "file name with a line break cannot go in a manifest: " + path;
    }
    for (unsigned char c : digest) {
      text->push_back(kHex[c >> 4]);
      text->push_back(kHex[c & 0xf]);
    }
    *text += "  " + path + "\n";
  }
  return std::nullopt;
}

std::size_t BatchSize(std::size_t n) {
  return std::clamp<std::size_t>((n + 19) / 20, 1, kMaxBatchItems);
}

std::string ProgressBarText(std::size_t done, std::size_t total, std::size_t width) {
  const std::size_t filled = total == 0 ? width : std::min(width, done * width / total);
  return "[" + std::string(filled, '#') + std::string(width - filled, '-') + "] " +
         std::to_string(done) + "/" + std::to_string(total) + " files signed";
}

Progress::Progress(std::size_t total, bool terminal, std::FILE* out)
    : total_(total), terminal_(terminal), out_(out) {}

void Progress::Update(std::size_t done) {
  done_ = std::min(done, total_);
  if (terminal_) {
    std::fprintf(out_, "\r%s", ProgressBarText(done_, total_, 30).c_str());
    drawn_ = true;
  } else if (total_ > 0) {
    const std::size_t decile = done_ * 10 / total_;
    if (decile > last_decile_) {
      last_decile_ = decile;
      std::fprintf(out_, "signed %zu/%zu files\n", done_, total_);
    }
  }
  std::fflush(out_);
}

void Progress::Note(const std::string& line) {
  if (terminal_ && drawn_) std::fputs("\r\033[K", out_);
  std::fprintf(out_, "%s\n", line.c_str());
  if (terminal_ && drawn_) std::fprintf(out_, "%s", ProgressBarText(done_, total_, 30).c_str());
  std::fflush(out_);
}

void Progress::Finish() {
  if (terminal_ && drawn_) std::fputc('\n', out_);
  drawn_ = false;
  std::fflush(out_);
}

}  // namespace custos::cli
