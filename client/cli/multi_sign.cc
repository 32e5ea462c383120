// `custos sign` for many files: FILE..., --files-from LIST, --out-dir DIR and
// --manifest OUT. Files are hashed on a thread pool, then signed through
// sign_batch requests that are all in flight at once; each answer is written
// out as it arrives, so one failed file or batch never loses the others.
#include <unistd.h>

#include <openssl/rand.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <mutex>
#include <thread>

#include "cli.h"
#include "multi_sign.h"

namespace custos::cli {
namespace {

Failure Usage(std::string message) { return Failure{kExitUsage, std::move(message)}; }

// One file to sign and what became of it.
struct Item {
  std::string path;
  std::string sig_path;
  std::string input;  // digest, or the message itself for Ed25519
  std::string error;  // non-empty: failed, with this reason
  bool hashed = false;
  bool signed_ok = false;
  bool pending = false;  // held, in a batch that waits for quorum approval
};

// Reads the file list: positional FILEs, then --files-from ("-" = stdin).
std::optional<Failure> CollectFiles(const Invocation& inv, std::vector<std::string>* files) {
  *files = inv.args;
  if (inv.files_from.empty()) return std::nullopt;
  std::string text;
  if (inv.files_from == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (std::cin.bad()) return Failure{kExitFile, "cannot read the file list from stdin"};
  } else if (auto f = ReadSmallFile(inv.files_from, 256u << 20, "a --files-from list", &text)) {
    return f;
  }
  const std::vector<std::string> listed = ParseFileList(text);
  files->insert(files->end(), listed.begin(), listed.end());
  return std::nullopt;
}

// Fills items[i].input (or .error) on min(n, hardware threads) threads. With
// `ed25519`, the input is the file itself (at most kMaxEd25519Message).
void HashAll(std::vector<Item>* items, const char* digest, bool ed25519) {
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < items->size(); i = next++) {
      Item& item = (*items)[i];
      std::optional<Failure> f =
          ed25519
              ? ReadSmallFile(item.path, kMaxEd25519Message,
                              "Ed25519 (sign a manifest, or use an ECDSA or RSA key)", &item.input)
              : HashFile(item.path, digest, &item.input);
      if (f) {
        item.error = f->message;
      } else {
        item.hashed = true;
      }
    }
  };
  const std::size_t threads =
      std::min<std::size_t>(items->size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

std::string RandomHex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    // The client library assigns one itself when this is empty.
    return "";
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex.push_back(kHex[c >> 4]);
    hex.push_back(kHex[c & 0xf]);
  }
  return hex;
}

// Answers of in-flight requests, handed from the client's I/O thread (which
// must not block) to the main thread.
class Inbox {
 public:
  void Put(std::size_t batch, client::Result<v1::Response> result) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.emplace_back(batch, std::move(result));
    }
    cv_.notify_one();
  }
  std::pair<std::size_t, client::Result<v1::Response>> Take() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !queue_.empty(); });
    auto front = std::move(queue_.front());
    queue_.pop_front();
    return front;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::size_t, client::Result<v1::Response>>> queue_;
};

struct Batch {
  std::vector<std::size_t> items;
  v1::Request request;
  int attempts = 0;
  std::string held_id;  // the pending request when the batch awaits approval
};

std::string ResultsJson(const std::vector<Item>& items) {
  std::vector<std::string> out;
  out.reserve(items.size());
  for (const Item& item : items) {
    JsonObject o;
    o.Add("file", item.path);
    if (item.signed_ok) {
      o.AddBool("ok", true).Add("sig", item.sig_path);
    } else if (item.pending) {
      o.AddBool("ok", false).AddBool("pending", true);
    } else {
      o.AddBool("ok", false).Add("error", item.error);
    }
    out.push_back(o.str());
  }
  return JsonArray(out);
}

std::optional<Failure> SignManifest(Invocation& inv, const AlgorithmInfo& alg,
                                    const std::vector<std::string>& files,
                                    std::uint64_t wait_seconds) {
  std::vector<Item> items(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) items[i].path = files[i];
  HashAll(&items, "SHA256", /*ed25519=*/false);
  std::size_t unreadable = 0;
  std::vector<std::pair<std::string, std::string>> entries;
  for (const Item& item : items) {
    if (!item.hashed) {
      std::fprintf(stderr, "custos: error: %s\n", item.error.c_str());
      ++unreadable;
    } else {
      entries.emplace_back(item.path, item.input);
    }
  }
  if (unreadable > 0) {
    return Failure{kExitFile, "manifest " + inv.manifest +
                                  " not written: " + std::to_string(unreadable) + " of " +
                                  std::to_string(files.size()) + " files could not be read"};
  }
  std::string text;
  if (auto error = ManifestText(std::move(entries), &text)) return Usage(*error);
  if (auto f = WriteFile(inv.manifest, text)) return f;

  v1::Request req;
  req.set_note(inv.note);
  auto* sign = req.mutable_sign();
  sign->set_key(inv.key_name);
  sign->set_file_name(std::filesystem::path(inv.manifest).filename().string());
  sign->set_algorithm(alg.name);
  if (alg.family == SigFamily::kEd25519) {
    std::string message;
    if (auto f = ReadSmallFile(inv.manifest, kMaxEd25519Message,
                               "an Ed25519 manifest (use an ECDSA or RSA key for more files)",
                               &message)) {
      return f;
    }
    sign->set_message(std::move(message));
  } else {
    std::string digest;
    if (auto f = HashFile(inv.manifest, alg.digest, &digest)) return f;
    sign->set_digest(std::move(digest));
  }
  v1::SignResponse result;
  if (auto f = CallSign(inv, std::move(req), wait_seconds, &result)) return f;
  const std::string sig_path = inv.manifest + ".sig";
  if (auto f = WriteFile(sig_path, result.signature())) return f;
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("key", result.key())
                            .Add("key_version", static_cast<std::int64_t>(result.key_version()))
                            .Add("algorithm", result.algorithm())
                            .Add("manifest", inv.manifest)
                            .Add("sig", sig_path)
                            .Add("files", static_cast<std::int64_t>(files.size()))
                            .Add("signature_base64", Base64(result.signature()))
                            .str()
                            .c_str());
  } else {
    std::printf("signed manifest %s (%zu files) with %s@%u (%s): %s\n", inv.manifest.c_str(),
                files.size(), result.key().c_str(), result.key_version(),
                result.algorithm().c_str(), sig_path.c_str());
  }
  return std::nullopt;
}

}  // namespace

std::optional<Failure> SignMany(Invocation& inv, int* exit_code) {
  const char* usage =
      "custos sign --key NAME[@V] [--algorithm ALG] [--out-dir DIR | --manifest OUT] "
      "[--wait DURATION] [--note TEXT] [--json] FILE... | --files-from LIST";
  if (inv.key_name.empty()) return Usage(std::string("usage: ") + usage);
  if (!inv.in.empty() || !inv.out.empty()) {
    return Usage(
        "--in/--out sign one file; give many files as FILE... or --files-from, "
        "without --in and --out");
  }
  // --wait: batches held for quorum approval are waited for (all within one
  // deadline) and their signatures written once executed.
  std::uint64_t wait_seconds = 0;
  if (!inv.wait.empty()) {
    if (auto f = ParseDuration(inv.wait, "wait", &wait_seconds)) return f;
  }
  if (!inv.manifest.empty() && !inv.out_dir.empty()) {
    return Usage("--manifest writes one signature to OUT.sig; it does not take --out-dir");
  }
  std::vector<std::string> files;
  if (auto f = CollectFiles(inv, &files)) return f;
  if (files.empty()) {
    return Usage("no files to sign: name them after the options or with --files-from LIST");
  }
  std::vector<std::string> sig_paths;
  if (inv.manifest.empty()) {
    if (auto error = PlanSignaturePaths(files, inv.out_dir, &sig_paths)) {
      return Usage("refusing to sign: " + *error);
    }
    if (!inv.out_dir.empty()) {
      std::error_code ec;
      if (!std::filesystem::is_directory(inv.out_dir, ec)) {
        return Failure{kExitFile, "--out-dir " + inv.out_dir + " is not a directory"};
      }
    }
  }
  const AlgorithmInfo* alg = nullptr;
  if (auto f = ResolveSignAlgorithm(inv, &alg)) return f;
  if (!inv.manifest.empty()) return SignManifest(inv, *alg, files, wait_seconds);

  client::Client* client = nullptr;
  if (auto f = inv.Connected(&client)) return f;

  std::vector<Item> items(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    items[i].path = files[i];
    items[i].sig_path = sig_paths[i];
  }
  const bool ed25519 = alg->family == SigFamily::kEd25519;
  HashAll(&items, alg->digest, ed25519);

  Progress progress(items.size(), isatty(STDERR_FILENO) == 1, stderr);
  std::size_t done = 0;
  for (const Item& item : items) {
    if (!item.hashed) {
      progress.Note("custos: error: " + item.error);
      ++done;
    }
  }
  progress.Update(done);

  // Batches of hashed files, all sent at once (the client keeps at most
  // max_in_flight on the wire and queues the rest).
  // A key under quorum: every request becomes one pending request for the
  // officers, so send as few as the batch limit allows.
  bool needs_quorum = false;
  {
    v1::Request req;
    req.mutable_get_key()->set_key(inv.key_name.substr(0, inv.key_name.find('@')));
    v1::Response resp;
    if (auto f = inv.Call(req, &resp)) return f;
    needs_quorum = resp.get_key().sign_quorum_rules_size() > 0;
  }
  std::vector<Batch> batches;
  const std::size_t per_batch = needs_quorum ? kMaxBatchItems : BatchSize(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!items[i].hashed) continue;
    if (batches.empty() || batches.back().items.size() == per_batch) {
      Batch b;
      b.request.set_note(inv.note);
      b.request.set_idempotency_key(RandomHex(16));
      b.request.mutable_sign_batch()->set_key(inv.key_name);
      b.request.mutable_sign_batch()->set_algorithm(alg->name);
      batches.push_back(std::move(b));
    }
    Batch& b = batches.back();
    b.items.push_back(i);
    auto* bi = b.request.mutable_sign_batch()->add_items();
    bi->set_ref(items[i].path);
    if (ed25519) {
      bi->set_message(items[i].input);
    } else {
      bi->set_digest(items[i].input);
    }
  }
  Inbox inbox;
  auto send = [&](std::size_t index) {
    ++batches[index].attempts;
    client->Send(batches[index].request, [&inbox, index](client::Result<v1::Response> r) {
      inbox.Put(index, std::move(r));
    });
  };
  for (std::size_t i = 0; i < batches.size(); ++i) send(i);

  std::string key_label = inv.key_name, alg_name = alg->name;
  std::vector<v1::Response> held;  // PENDING_APPROVAL answers
  // Writes each signature of a batch's answer beside its file.
  auto write_answer = [&](const Batch& batch, const v1::SignBatchResponse& answer) {
    if (answer.results_size() != static_cast<int>(batch.items.size())) {
      for (std::size_t i : batch.items) {
        items[i].error = "server answered " + std::to_string(answer.results_size()) +
                         " results for " + std::to_string(batch.items.size()) + " items";
      }
      return;
    }
    key_label = answer.key() + "@" + std::to_string(answer.key_version());
    alg_name = answer.algorithm();
    for (std::size_t k = 0; k < batch.items.size(); ++k) {
      Item& item = items[batch.items[k]];
      const v1::BatchResult& r = answer.results(static_cast<int>(k));
      if (r.status().code() != v1::OK) {
        item.error = RefusalText(r.status());
      } else if (r.signature().empty()) {
        item.error = "server sent an empty signature";
      } else if (auto f = WriteFile(item.sig_path, r.signature())) {
        item.error = f->message;
      } else {
        item.signed_ok = true;
      }
    }
  };
  const int retries = inv.config.retries;
  std::size_t outstanding = batches.size();
  while (outstanding > 0) {
    auto [index, result] = inbox.Take();
    Batch& batch = batches[index];
    const bool retry =
        batch.attempts <= retries && ((!result.ok() && result.error().retryable()) ||
                                      (result.ok() && result->status().code() == v1::UNAVAILABLE &&
                                       result->status().retryable()));
    if (retry) {
      const auto backoff = std::min(inv.config.backoff_max,
                                    inv.config.backoff_initial * (1 << (batch.attempts - 1)));
      std::this_thread::sleep_for(backoff);
      send(index);
      continue;
    }
    --outstanding;
    auto fail_all = [&](const std::string& reason) {
      for (std::size_t i : batch.items) items[i].error = reason;
    };
    if (!result.ok()) {
      fail_all(result.error().message());
    } else if (result->status().code() == v1::PENDING_APPROVAL && result->has_pending()) {
      for (std::size_t i : batch.items) items[i].pending = true;
      batch.held_id = result->pending().id();
      held.push_back(std::move(result).value());
    } else if (result->status().code() != v1::OK) {
      fail_all(RefusalText(result->status()));
    } else {
      write_answer(batch, result->sign_batch());
    }
    for (std::size_t i : batch.items) {
      if (!items[i].error.empty())
        progress.Note("custos: error: " + items[i].path + ": " + items[i].error);
    }
    done += batch.items.size();
    progress.Update(done);
  }
  progress.Finish();

  if (wait_seconds > 0 && !held.empty()) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_seconds);
    std::vector<v1::Response> still_held;
    for (v1::Response& h : held) {
      const v1::PendingRequestInfo& info = h.pending();
      std::fprintf(stderr, "custos: %s needs approval; waiting up to %s (%s approvals so far)\n",
                   info.id().c_str(), inv.wait.c_str(), ApprovalsText(info).c_str());
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(
          deadline - std::chrono::steady_clock::now());
      v1::PendingRequestInfo final_info;
      std::optional<Failure> waited = WaitForRequest(
          inv, info.id(), static_cast<std::uint64_t>(std::max<long long>(1, left.count())),
          &final_info);
      std::size_t index = batches.size();
      for (std::size_t b = 0; b < batches.size(); ++b) {
        if (batches[b].held_id == info.id()) index = b;
      }
      if (index == batches.size()) continue;  // not one of ours (cannot happen)
      Batch& batch = batches[index];
      if (waited && waited->exit_code == kExitPending) {
        still_held.push_back(std::move(h));  // timed out: stays pending
        continue;
      }
      for (std::size_t i : batch.items) items[i].pending = false;
      if (waited) {
        for (std::size_t i : batch.items) items[i].error = waited->message;
      } else if (!final_info.has_result() || !final_info.result().has_sign_batch()) {
        for (std::size_t i : batch.items) {
          items[i].error = "request " + info.id() +
                           " was executed but the server returned no signatures (only the "
                           "requester receives them)";
        }
      } else {
        write_answer(batch, final_info.result().sign_batch());
      }
      for (std::size_t i : batch.items) {
        if (!items[i].error.empty())
          std::fprintf(stderr, "custos: error: %s: %s\n", items[i].path.c_str(),
                       items[i].error.c_str());
      }
    }
    held = std::move(still_held);
  }

  std::size_t signed_count = 0, failed = 0, pending = 0;
  for (const Item& item : items) {
    signed_count += item.signed_ok ? 1 : 0;
    pending += item.pending ? 1 : 0;
    failed += (!item.signed_ok && !item.pending) ? 1 : 0;
  }
  for (const v1::Response& r : held) ReportPending(inv, r.pending(), r.status().message());
  if (inv.json) {
    std::vector<std::string> ids;
    for (const v1::Response& r : held) ids.push_back(JsonString(r.pending().id()));
    std::printf("%s\n", JsonObject()
                            .Add("key", key_label)
                            .Add("algorithm", alg_name)
                            .Add("files", static_cast<std::int64_t>(items.size()))
                            .Add("signed", static_cast<std::int64_t>(signed_count))
                            .Add("failed", static_cast<std::int64_t>(failed))
                            .Add("pending", static_cast<std::int64_t>(pending))
                            .AddRaw("pending_requests", JsonArray(ids))
                            .AddRaw("results", ResultsJson(items))
                            .str()
                            .c_str());
  } else {
    std::string line = "signed " + std::to_string(signed_count) + " of " +
                       std::to_string(items.size()) + " files with " + key_label + " (" + alg_name +
                       ")";
    if (pending > 0) line += "; " + std::to_string(pending) + " await approval";
    if (failed > 0) line += "; " + std::to_string(failed) + " failed: see above";
    std::printf("%s\n", line.c_str());
  }
  *exit_code = failed > 0 ? kExitRefused : pending > 0 ? kExitPending : kExitOk;
  return std::nullopt;
}

}  // namespace custos::cli
