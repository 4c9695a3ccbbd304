// safemap/restore.hpp - restore a map from its snapshot file (persist.hpp), at once or lazily.
//
//   auto users = safemap::restore_snapshot_or_empty<Users>("state/users.snap");  // at start-up
//   safemap::lazy_snapshot_map<Users> lazy("state/users.snap");                  // on first use
//   Users& u = lazy.get();
//
// A missing file means "nothing saved yet" and gives an empty map; anything else wrong with
// the file (corrupt, unreadable, not a regular file, bad JSON) throws, so a damaged snapshot
// is never silently replaced by an empty map that a later save would write over it.
// Files are written by save_snapshot, file_sink or periodic_snapshotter (pipeline.hpp).
//
// Concurrency: restore_snapshot_or_empty is a plain function; lazy_snapshot_map::get is
// thread-safe (cancellable_once: one load, the others wait, each able to give up).
#pragma once

#include <chrono>
#include <filesystem>
#include <utility>

#include "safemap/detail/config.hpp"
#include "safemap/persist.hpp"
#if SAFEMAP_HAS_PIPELINE  // lazy_snapshot_map needs std::stop_token (detail/config.hpp)
#include <stop_token>

#include "safemap/cancellable_once.hpp"
#endif

namespace safemap {

// Restores a map from its snapshot file, or an empty map when the file does not exist yet.
// Any other problem (corrupt file, bad JSON) throws.
template <class M>
M restore_snapshot_or_empty(const std::filesystem::path& path) {
  try {
    return load_snapshot<M>(path);
  } catch (const snapshot_error& e) {
    if (e.problem() != snapshot_error::kind::missing) throw;
  }
  return M();
}

#if SAFEMAP_HAS_PIPELINE
// A map restored lazily from its snapshot file on first use: the first get() loads it (the
// threads that arrive meanwhile wait, each able to give up), a failed load is retried by the
// next get().
template <class M>
class lazy_snapshot_map {
 public:
  explicit lazy_snapshot_map(std::filesystem::path path) : path_(std::move(path)) {}
  M& get() {
    return once_.get([this] { return restore_snapshot_or_empty<M>(path_); });
  }
  // nullptr when this caller gave up waiting for another thread's load.
  M* get(std::stop_token stop, std::chrono::steady_clock::time_point deadline =
                                   std::chrono::steady_clock::time_point::max()) {
    return once_.get([this] { return restore_snapshot_or_empty<M>(path_); }, std::move(stop),
                     deadline);
  }
  bool loaded() const { return once_.ready(); }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  cancellable_once<M> once_;
};
#endif  // SAFEMAP_HAS_PIPELINE

}  // namespace safemap
