// safemap/pipeline.hpp - serialize map snapshots in the background, safely.
//
// The bugs this removes: a background serializer that is never cancelled, never times out,
// never joins, or piles up work faster than its sink drains it.
//
//   safemap::snapshot_pipeline pipe({.workers = 2, .capacity = 8,
//                                   .policy = safemap::overflow_policy::coalesce});
//   auto sink = std::make_shared<safemap::file_sink>("state/users.snap");
//   safemap::job_handle h = pipe.submit(users, sink, {.deadline = now + 2s});
//   if (h.wait() != safemap::job_status::done) log(h.result().error);
//   pipe.shutdown(safemap::shutdown_mode::drain);   // or let the destructor do it
//
// # Model
// N worker threads (std::jthread) take jobs from one bounded FIFO queue. A job serializes one
// map through write_json (the consistent view of its strategy, json.hpp) into the worker's
// reused buffer, then hands the bytes to a sink: file_sink (crash-safe, persist.hpp),
// callback_sink, or any snapshot_sink subclass. The map must outlive the jobs submitted for it.
//
// When the queue is full, the overflow_policy chosen at construction decides:
//   block        submit waits for room (backpressure), at most until the job's deadline
//                (then the job resolves `timed_out`) or the caller's stop token (`cancelled`)
//   drop_oldest  the oldest queued job is dropped (resolves `dropped`), the new one is queued
//   drop_newest  the new job is dropped at once (resolves `dropped`)
//   coalesce     a queued job for the same map is replaced by the new one (resolves
//                `coalesced`) whether or not the queue is full: for snapshots only the newest
//                matters. With no job of that map queued and the queue full, submit blocks.
//   fail         submit resolves the new job `rejected` at once
//
// # Every job resolves exactly once
// job_handle::wait() returns one of: done, dropped, coalesced, cancelled, timed_out, failed
// (with the sink's or serializer's exception message in result().error) or rejected (queue
// full under `fail`, or submitted after shutdown). A job cancelled (handle.cancel() or the
// caller's stop_token) or past its deadline before it starts never runs. A running job is told
// through the std::stop_token its sink receives, on cancellation and when its deadline passes
// (a watchdog thread); a cooperative sink returns early and the job resolves cancelled /
// timed_out.
//
// # Shutdown
// shutdown(drain) stops accepting, runs what is queued, waits for running jobs; shutdown(cancel)
// resolves queued jobs `cancelled` and stops running ones through their stop tokens. Producers
// blocked in submit are released with `rejected`. Either way every worker thread (and the
// watchdog) is joined before shutdown returns: no thread outlives the pipeline. The destructor
// drains, bounded by options::shutdown_timeout (default 10 s), then cancels what is left.
//
// # Invariants
// 1. Stop callbacks never run under the pipeline's mutex (mu_). request_stop runs a job's
//    stop callbacks synchronously on the calling thread, and they lock mu_ (the queued-job
//    callback, cancel_queued) or run user code (callbacks the sink registered on its token).
//    So shutdown(cancel) and the deadline watchdog pick the job under mu_ and stop it after
//    unlocking. A job just taken from the queue keeps its queued-job callback until its taker
//    resets it outside mu_; a stop meanwhile runs the callback, which finds the job gone from
//    the queue and returns.
// 2. The pipeline outlives every call into it. Its own threads are joined before shutdown
//    returns; a thread of the caller's inside pipeline code (a producer in submit, a stop
//    callback resolving a queued job it cancelled) is counted in callers_inside_ under mu_,
//    and shutdown (so the destructor) waits for the count to reach zero before joining.
// 3. A job's outcome is decided when its sink returns. The sink's token belongs to a stop
//    source of its own, linked to the job's only while serialize and the sink run; after the
//    sink returns the link is gone, so a stop that arrives then (a late cancel(), the deadline
//    watchdog, shutdown) neither reaches the sink nor turns a save it made into
//    cancelled / timed_out. A stop that arrives while the sink runs makes the job cancelled /
//    timed_out even if the sink then finished its work: the pipeline cannot tell a sink that
//    returned early from one that completed, so a sink that must count its saves counts them
//    itself (as periodic_snapshotter does).
//
// Concurrency: every member function is thread-safe; sinks are called from worker threads.
#pragma once

#include "safemap/detail/config.hpp"
#if !SAFEMAP_HAS_PIPELINE
#error \
    "safemap/pipeline.hpp needs C++20 std::stop_token and std::jthread (libstdc++ 10+, libc++ 18+); this standard library lacks them. Every header but this one and cancellable_once.hpp works here."
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "safemap/cancellable_once.hpp"  // kept here: code that used it through this header
#include "safemap/json.hpp"
#include "safemap/persist.hpp"
#include "safemap/restore.hpp"  // restore_snapshot_or_empty, lazy_snapshot_map

namespace safemap {

using pipeline_clock = std::chrono::steady_clock;

enum class overflow_policy { block, drop_oldest, drop_newest, coalesce, fail };
enum class shutdown_mode { drain, cancel };
enum class job_status {
  pending,
  running,
  done,
  dropped,
  coalesced,
  cancelled,
  timed_out,
  failed,
  rejected
};

constexpr const char* to_string(job_status s) noexcept {
  switch (s) {
    case job_status::pending:
      return "pending";
    case job_status::running:
      return "running";
    case job_status::done:
      return "done";
    case job_status::dropped:
      return "dropped";
    case job_status::coalesced:
      return "coalesced";
    case job_status::cancelled:
      return "cancelled";
    case job_status::timed_out:
      return "timed_out";
    case job_status::failed:
      return "failed";
    case job_status::rejected:
      return "rejected";
  }
  return "unknown";
}

// What a sink receives: the JSON text of one map and facts about it.
struct snapshot_data {
  std::string_view json;      // valid only during the sink call
  std::size_t entries = 0;    // top-level entries in json
  std::uint64_t version = 0;  // the map's version() read before serializing (0 if none)
  const void* map = nullptr;  // identity of the map (for sinks shared between maps)
  pipeline_clock::time_point taken_at;
};

// Where snapshots go. write() runs on a worker thread; it may throw (the job resolves failed
// and the pipeline keeps serving) and should return early when `stop` is requested.
class snapshot_sink {
 public:
  virtual ~snapshot_sink() = default;
  virtual void write(const snapshot_data& data, std::stop_token stop) = 0;
};

// Writes each snapshot to one file crash-safely (persist.hpp's format; load_snapshot reads it).
class file_sink final : public snapshot_sink {
 public:
  explicit file_sink(std::filesystem::path path) : path_(std::move(path)) {}
  void write(const snapshot_data& data, std::stop_token stop) override {
    if (stop.stop_requested()) return;  // nothing written: the job resolves cancelled
    detail::persist::write_snapshot_file(path_, data.entries, data.json);
  }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// Calls a function with each snapshot.
class callback_sink final : public snapshot_sink {
 public:
  using callback = std::function<void(const snapshot_data&, std::stop_token)>;
  explicit callback_sink(callback f) : f_(std::move(f)) {}
  void write(const snapshot_data& data, std::stop_token stop) override { f_(data, stop); }

 private:
  callback f_;
};

struct job_result {
  job_status status = job_status::pending;
  std::string error;                          // failed: the exception's message
  std::size_t bytes = 0;                      // serialized size (done)
  std::chrono::nanoseconds serialize_time{};  // time spent in write_json
};

namespace detail::pipeline {

struct job_state {
  // Fixed at submit.
  std::function<std::size_t(std::string&, std::uint64_t&)> serialize;
  std::shared_ptr<snapshot_sink> sink;
  const void* map = nullptr;
  pipeline_clock::time_point submitted;
  std::optional<pipeline_clock::time_point> deadline;
  std::stop_source stop;  // cancel(), the caller's token, the watchdog and shutdown request it
  // What serialize and the sink see: requested through a link from `stop` that exists only
  // while the job runs (invariant 3). Made at submit, so running a job allocates nothing.
  std::stop_source run_stop;
  std::unique_ptr<std::stop_callback<std::function<void()>>> forward_stop;  // caller's token
  // While the job waits in the queue: a cancellation removes it at once (not when a worker
  // gets to it). Reset by whoever takes the job out of the queue, outside the pipeline mutex;
  // left in place when the callback itself removed the job (it cannot run twice).
  std::unique_ptr<std::stop_callback<std::function<void()>>> queued_cb;
  bool timed_out_while_running = false;  // set by the watchdog, under the pipeline mutex

  // Resolution, guarded by mu. Two steps, so the pipeline can count an outcome in its stats
  // before anyone waiting on the handle can see it: claim() picks the one final result (first
  // claim wins), publish() makes it visible to waiters.
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  job_result result;
  bool claimed = false;
  bool resolved = false;

  bool claim(job_result r) {
    std::lock_guard lock(mu);
    if (claimed) return false;
    claimed = true;
    result = std::move(r);
    return true;
  }
  void publish() {
    {
      std::lock_guard lock(mu);
      resolved = true;
    }
    cv.notify_all();
  }
  void set_running() {
    std::lock_guard lock(mu);
    if (!claimed) result.status = job_status::running;
  }
};

}  // namespace detail::pipeline

// The caller's view of one job (std::future-like, copyable; all copies see one job).
class job_handle {
 public:
  job_handle() = default;

  // Blocks until the job resolved; returns its final status.
  job_status wait() const {
    std::unique_lock lock(state_->mu);
    state_->cv.wait(lock, [&] { return state_->resolved; });
    return state_->result.status;
  }
  // Waits at most `d`; nullopt if still unresolved.
  template <class Rep, class Period>
  std::optional<job_status> wait_for(std::chrono::duration<Rep, Period> d) const {
    std::unique_lock lock(state_->mu);
    if (!state_->cv.wait_for(lock, d, [&] { return state_->resolved; })) return std::nullopt;
    return state_->result.status;
  }
  bool ready() const {
    std::lock_guard lock(state_->mu);
    return state_->resolved;
  }
  // pending / running / the final status.
  job_status status() const {
    std::lock_guard lock(state_->mu);
    return state_->result.status;
  }
  // Waits, then returns the full result (error message, bytes, timing).
  job_result result() const {
    wait();
    std::lock_guard lock(state_->mu);
    return state_->result;
  }
  // Requests cancellation: a queued job will not run; a running one sees its stop token.
  void cancel() const { state_->stop.request_stop(); }
  bool valid() const noexcept { return state_ != nullptr; }

 private:
  friend class snapshot_pipeline;
  explicit job_handle(std::shared_ptr<detail::pipeline::job_state> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::pipeline::job_state> state_;
};

struct submit_options {
  std::stop_token stop{};  // the caller's own cancellation, linked to the job's
  std::optional<pipeline_clock::time_point> deadline{};
  json_options json{};
};

struct pipeline_stats {
  std::size_t queued = 0;     // jobs waiting now
  std::size_t in_flight = 0;  // jobs running now
  std::size_t live_workers = 0;
  std::uint64_t submitted = 0, done = 0, dropped = 0, coalesced = 0, cancelled = 0, timed_out = 0,
                failed = 0, rejected = 0;
  std::chrono::nanoseconds last_serialize{}, max_serialize{}, total_serialize{};
  // Time since the last snapshot a sink accepted (how stale the newest persisted state is);
  // nullopt before the first.
  std::optional<std::chrono::nanoseconds> snapshot_age;
};

class snapshot_pipeline {
 public:
  struct options {
    std::size_t workers = 1;
    std::size_t capacity = 16;  // queued jobs at most (running ones not counted)
    overflow_policy policy = overflow_policy::block;
    std::chrono::milliseconds shutdown_timeout{10'000};  // destructor's drain bound
  };

  explicit snapshot_pipeline(options opt) : opt_(opt) {
    if (opt_.workers == 0) opt_.workers = 1;
    if (opt_.capacity == 0) opt_.capacity = 1;
    workers_.reserve(opt_.workers);
    for (std::size_t i = 0; i < opt_.workers; ++i) {
      workers_.emplace_back([this](std::stop_token st) { worker_loop(st); });
    }
    watchdog_ = std::jthread([this](std::stop_token st) { watchdog_loop(st); });
  }
  snapshot_pipeline() : snapshot_pipeline(options{}) {}

  // Drains (bounded by options::shutdown_timeout), then cancels whatever is left; joins all.
  ~snapshot_pipeline() {
    if (!drain_until(pipeline_clock::now() + opt_.shutdown_timeout))
      shutdown(shutdown_mode::cancel);
    shutdown(shutdown_mode::cancel);  // joins (a no-op after a successful drain)
  }

  snapshot_pipeline(const snapshot_pipeline&) = delete;
  snapshot_pipeline& operator=(const snapshot_pipeline&) = delete;

  // Queues a snapshot of m for `sink`. Under overflow_policy::block (and coalesce with a full
  // queue) waits for room; returns an already resolved handle when the job is dropped or
  // rejected. Thread-safe.
  template <class M>
  requires detail::json::map_like<M> job_handle submit(const M& m,
                                                       std::shared_ptr<snapshot_sink> sink,
                                                       submit_options so = {}) {
    auto job = std::make_shared<detail::pipeline::job_state>();
    const json_options jopt = so.json;
    job->serialize = [&m, jopt](std::string& out, std::uint64_t& version) {
      if constexpr (requires { m.version(); }) version = m.version();
      return detail::json::write_top(m, out, jopt);
    };
    job->sink = std::move(sink);
    job->map = &m;
    job->submitted = pipeline_clock::now();
    job->deadline = so.deadline;
    if (so.stop.stop_possible()) {
      std::stop_source src = job->stop;
      job->forward_stop = std::make_unique<std::stop_callback<std::function<void()>>>(
          so.stop, std::function<void()>([src]() mutable { src.request_stop(); }));
    }
    // Registered before the job can be queued, so it never races its own registration; if the
    // stop is already requested it runs now and finds nothing to remove (enqueue then sees it).
    job->queued_cb = std::make_unique<std::stop_callback<std::function<void()>>>(
        job->stop.get_token(),
        std::function<void()>([this, raw = job.get()] { cancel_queued(raw); }));
    if (!enqueue(job)) job->queued_cb.reset();
    return job_handle(std::move(job));
  }

  // Stops accepting jobs and joins every thread; see the top of the file. Idempotent.
  void shutdown(shutdown_mode mode) {
    if (mode == shutdown_mode::drain) {
      drain_until(std::nullopt);
    } else {
      std::vector<std::shared_ptr<detail::pipeline::job_state>> dropped;
      {
        std::unique_lock lock(mu_);
        accepting_ = false;
        dropped.assign(queue_.begin(), queue_.end());
        queue_.clear();
        // Invariant 1: stop callbacks never run under mu_. One job at a time, so nothing is
        // allocated; no job can start meanwhile (the queue is empty and submit refuses).
        while (job_ptr j = first_running_locked(
                   [](const job_ptr& r) { return !r->stop.stop_requested(); })) {
          lock.unlock();
          j->stop.request_stop();
          j.reset();
          lock.lock();
        }
      }
      not_full_.notify_all();
      for (auto& j : dropped) {
        j->queued_cb.reset();
        finish(j, {job_status::cancelled, "pipeline shut down", 0, {}});
      }
      {
        std::unique_lock lock(mu_);
        idle_.wait(lock, [&] { return running_.empty() && callers_inside_ == 0; });
      }
    }
    join_all();
  }

  pipeline_stats stats() const {
    std::lock_guard lock(mu_);
    pipeline_stats s = stats_;
    s.queued = queue_.size();
    s.in_flight = running_.size();
    s.live_workers = live_workers_;
    if (last_success_) s.snapshot_age = pipeline_clock::now() - *last_success_;
    return s;
  }

 private:
  using job_ptr = std::shared_ptr<detail::pipeline::job_state>;

  // Counts a thread that is not the pipeline's own while it runs pipeline code (a producer in
  // submit, a stop callback in cancel_queued), so shutdown and the destructor wait until it
  // has left: it touches the pipeline until its last line (invariant 2).
  class caller_scope {
   public:
    explicit caller_scope(snapshot_pipeline& p) : p_(p) {
      std::lock_guard lock(p_.mu_);
      ++p_.callers_inside_;
    }
    ~caller_scope() {
      std::lock_guard lock(p_.mu_);  // notify under the lock: the pipeline may die right after
      --p_.callers_inside_;
      p_.idle_.notify_all();
    }
    caller_scope(const caller_scope&) = delete;
    caller_scope& operator=(const caller_scope&) = delete;

   private:
    snapshot_pipeline& p_;
  };

  // Queues job (returns true) or resolves it at once (false).
  bool enqueue(const job_ptr& job) {
    const caller_scope scope(*this);
    job_ptr displaced;
    job_result displaced_result;
    {
      std::unique_lock lock(mu_);
      ++stats_.submitted;
      const std::stop_token stop = job->stop.get_token();
      for (;;) {
        if (!accepting_) {
          lock.unlock();
          finish(job, {job_status::rejected, "pipeline shut down", 0, {}});
          return false;
        }
        if (stop.stop_requested()) {
          lock.unlock();
          finish(job, {job_status::cancelled, "cancelled before it was queued", 0, {}});
          return false;
        }
        if (opt_.policy == overflow_policy::coalesce) {
          auto same = std::find_if(queue_.begin(), queue_.end(),
                                   [&](const job_ptr& q) { return q->map == job->map; });
          if (same != queue_.end()) {
            displaced = std::move(*same);
            *same = job;  // keeps the older job's place in line
            displaced_result = {job_status::coalesced, {}, 0, {}};
            break;
          }
        }
        if (queue_.size() < opt_.capacity) {
          queue_.push_back(job);
          break;
        }
        if (opt_.policy == overflow_policy::drop_newest) {
          lock.unlock();
          finish(job, {job_status::dropped, "queue full (drop_newest)", 0, {}});
          return false;
        }
        if (opt_.policy == overflow_policy::fail) {
          lock.unlock();
          finish(job, {job_status::rejected, "queue full (fail)", 0, {}});
          return false;
        }
        if (opt_.policy == overflow_policy::drop_oldest) {
          displaced = std::move(queue_.front());
          queue_.pop_front();
          queue_.push_back(job);
          displaced_result = {job_status::dropped, "queue full (drop_oldest)", 0, {}};
          break;
        }
        // block, or coalesce with nothing to coalesce: backpressure, until room appears, the
        // pipeline shuts down, the caller's stop token (submit_options::stop) fires or the
        // job's deadline passes (a job past its deadline would time out unrun once queued).
        const std::uint64_t seen = room_generation_;
        const auto room_or_closed = [&] { return room_generation_ != seen || !accepting_; };
        const bool woken = job->deadline
                               ? not_full_.wait_until(lock, stop, *job->deadline, room_or_closed)
                               : not_full_.wait(lock, stop, room_or_closed);
        if (!woken) {
          lock.unlock();
          if (stop.stop_requested()) {
            finish(job,
                   {job_status::cancelled, "cancelled while waiting for room in the queue", 0, {}});
          } else {
            finish(job, {job_status::timed_out,
                         "deadline passed while waiting for room in the queue",
                         0,
                         {}});
          }
          return false;
        }
      }
    }
    not_empty_.notify_one();
    if (displaced) {
      displaced->queued_cb.reset();
      finish(displaced, std::move(displaced_result));
    }
    return true;
  }

  // The queued_cb of a job: takes a cancelled job out of the queue and resolves it now. Runs
  // on whichever thread requested the stop (a handle's cancel(), the caller's stop_source),
  // never under mu_ (invariant 1), possibly while the pipeline is being destroyed: counted,
  // so the destructor waits for it (invariant 2).
  void cancel_queued(detail::pipeline::job_state* raw) {
    const caller_scope scope(*this);
    job_ptr job;
    {
      std::lock_guard lock(mu_);
      auto it = std::find_if(queue_.begin(), queue_.end(),
                             [&](const job_ptr& q) { return q.get() == raw; });
      if (it == queue_.end()) return;  // not queued (yet, or any more): its owner handles it
      job = std::move(*it);
      queue_.erase(it);
      ++room_generation_;
    }
    not_full_.notify_all();
    finish(job, {job_status::cancelled, "cancelled while queued", 0, {}});
    notify_if_idle();
  }

  // Resolves a job and counts the outcome (first resolution only), counting before waiters can
  // see it, so a resolved handle is always reflected in stats().
  void finish(const job_ptr& job, job_result r) {
    const job_status s = r.status;
    const auto serialize_time = r.serialize_time;
    if (!job->claim(std::move(r))) return;
    count_outcome(s, serialize_time);
    job->publish();
  }

  void count_outcome(job_status s, std::chrono::nanoseconds serialize_time) {
    std::lock_guard lock(mu_);
    switch (s) {
      case job_status::done:
        ++stats_.done;
        last_success_ = pipeline_clock::now();
        stats_.last_serialize = serialize_time;
        stats_.max_serialize = std::max(stats_.max_serialize, serialize_time);
        stats_.total_serialize += serialize_time;
        break;
      case job_status::dropped:
        ++stats_.dropped;
        break;
      case job_status::coalesced:
        ++stats_.coalesced;
        break;
      case job_status::cancelled:
        ++stats_.cancelled;
        break;
      case job_status::timed_out:
        ++stats_.timed_out;
        break;
      case job_status::failed:
        ++stats_.failed;
        break;
      case job_status::rejected:
        ++stats_.rejected;
        break;
      default:
        break;
    }
  }

  void worker_loop(std::stop_token st) {
    {
      std::lock_guard lock(mu_);
      ++live_workers_;
    }
    std::string buffer;  // reused: steady-state serialization allocates nothing
    for (;;) {
      job_ptr job;
      {
        std::unique_lock lock(mu_);
        not_empty_.wait(lock, [&] { return !queue_.empty() || st.stop_requested(); });
        if (queue_.empty()) break;  // stop requested and nothing left
        job = std::move(queue_.front());
        queue_.pop_front();
        ++room_generation_;
        not_full_.notify_all();
        const auto now = pipeline_clock::now();
        if (job->stop.stop_requested()) {
          lock.unlock();
          job->queued_cb.reset();
          finish(job, {job_status::cancelled, "cancelled before it started", 0, {}});
          notify_if_idle();
          continue;
        }
        if (job->deadline && now >= *job->deadline) {
          lock.unlock();
          job->queued_cb.reset();
          finish(job, {job_status::timed_out, "deadline passed before it started", 0, {}});
          notify_if_idle();
          continue;
        }
        running_.push_back(job);
        if (job->deadline) {
          ++watch_generation_;
          watchdog_cv_.notify_one();
        }
      }
      job->queued_cb.reset();  // outside mu_: the callback may be running and need it
      job->set_running();
      run(job, buffer);
      {
        std::lock_guard lock(mu_);
        running_.erase(std::find(running_.begin(), running_.end(), job));
      }
      notify_if_idle();
    }
    {
      std::lock_guard lock(mu_);
      --live_workers_;
    }
    idle_.notify_all();
  }

  // Invariant 3: the sink sees run_stop, linked to the job's stop source only while the job's
  // work runs, so a stop that arrives after the sink returned cannot reach it or change the
  // outcome.
  void run(const job_ptr& job, std::string& buffer) {
    job_result r;
    {
      const std::stop_callback link(job->stop.get_token(), [&run_stop = job->run_stop]() noexcept {
        run_stop.request_stop();
      });
      const std::stop_token token = job->run_stop.get_token();
      try {
        buffer.clear();
        std::uint64_t version = 0;
        const auto t0 = pipeline_clock::now();
        const std::size_t entries = job->serialize(buffer, version);
        r.serialize_time = pipeline_clock::now() - t0;
        r.bytes = buffer.size();
        if (!token.stop_requested()) {
          job->sink->write({buffer, entries, version, job->map, t0}, token);
        }
        r.status = job_status::done;
      } catch (const std::exception& e) {
        r.status = job_status::failed;
        r.error = e.what();
      } catch (...) {
        r.status = job_status::failed;
        r.error = "unknown exception";
      }
    }  // unlinked (after any forward in progress): the outcome is decided here
    if (job->run_stop.stop_requested()) {
      // Told to stop while running: the sink may have returned early or thrown because of it.
      std::lock_guard lock(mu_);
      r.status = job->timed_out_while_running ? job_status::timed_out : job_status::cancelled;
      if (r.error.empty()) {
        r.error = r.status == job_status::timed_out ? "deadline passed while running"
                                                    : "cancelled while running";
      }
    }
    finish(job, std::move(r));
  }

  // Requests stop on running jobs whose deadline passed.
  void watchdog_loop(std::stop_token st) {
    std::unique_lock lock(mu_);
    while (!st.stop_requested()) {
      const auto now = pipeline_clock::now();
      if (job_ptr expired = first_running_locked([&](const job_ptr& j) {
            return j->deadline && *j->deadline <= now && !j->stop.stop_requested();
          })) {
        expired->timed_out_while_running = true;  // read by run() under mu_
        lock.unlock();
        expired->stop.request_stop();  // invariant 1: outside mu_
        expired.reset();
        lock.lock();
        continue;  // the running set may have changed meanwhile: look again
      }
      std::optional<pipeline_clock::time_point> next;
      for (auto& j : running_) {
        if (j->deadline && *j->deadline > now && (!next || *j->deadline < *next))
          next = j->deadline;
      }
      // Sleep until the earliest deadline, a newly started job with a deadline, or stop.
      const std::uint64_t seen = watch_generation_;
      const auto changed = [&] { return watch_generation_ != seen; };
      if (next) {
        watchdog_cv_.wait_until(lock, st, *next, changed);
      } else {
        watchdog_cv_.wait(lock, st, changed);
      }
    }
  }

  // The first running job that satisfies pred (a copy that keeps it alive), or null.
  template <class Pred>
  job_ptr first_running_locked(Pred pred) const {
    auto it = std::find_if(running_.begin(), running_.end(), pred);
    return it == running_.end() ? nullptr : *it;
  }

  void notify_if_idle() { idle_.notify_all(); }

  // Waits for an empty queue and no running job (until `until`); stops accepting first.
  // Returns whether it drained.
  bool drain_until(std::optional<pipeline_clock::time_point> until) {
    std::unique_lock lock(mu_);
    accepting_ = false;
    not_full_.notify_all();  // blocked producers see !accepting_ and resolve rejected
    auto drained = [&] { return queue_.empty() && running_.empty() && callers_inside_ == 0; };
    if (until) {
      if (!idle_.wait_until(lock, *until, drained)) return false;
    } else {
      idle_.wait(lock, drained);
    }
    return queue_.empty() && running_.empty();
  }

  void join_all() {
    std::lock_guard join_lock(join_mu_);
    for (auto& w : workers_) w.request_stop();
    {
      std::lock_guard lock(mu_);  // pairs with the workers' predicate check
    }
    not_empty_.notify_all();
    for (auto& w : workers_) {
      if (w.joinable()) w.join();
    }
    watchdog_.request_stop();
    if (watchdog_.joinable()) watchdog_.join();
  }

  options opt_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_;     // workers wait for jobs
  std::condition_variable_any not_full_;  // blocked producers wait for room (or their stop)
  std::condition_variable idle_;          // drain waits for queue_ and running_ to empty
  std::condition_variable_any watchdog_cv_;
  std::uint64_t watch_generation_ = 0;  // guarded by mu_; bumps when a job with a deadline starts
  std::deque<job_ptr> queue_;           // guarded by mu_
  std::vector<job_ptr> running_;        // guarded by mu_
  bool accepting_ = true;               // guarded by mu_
  std::size_t callers_inside_ = 0;      // guarded by mu_: see caller_scope
  std::uint64_t room_generation_ = 0;   // guarded by mu_: bumps when a queued job leaves
  std::size_t live_workers_ = 0;        // guarded by mu_
  pipeline_stats stats_;                // guarded by mu_ (counters only)
  std::optional<pipeline_clock::time_point> last_success_;  // guarded by mu_
  std::mutex join_mu_;                                      // serializes join_all
  std::vector<std::jthread> workers_;
  std::jthread watchdog_;
};

// Saves a map to a file through a pipeline every `interval`, only when its version() moved
// since the last successful save. One save at a time: a tick waits for its job, so saves never
// pile up. stop() (and the destructor) cancels an in-flight save and joins the thread.
// Restore after a restart with restore_snapshot_or_empty / load_snapshot.
// Concurrency: the map may be written by any threads meanwhile; members are thread-safe.
template <class M>
requires requires(const M& m) {
  { m.version() } -> std::convertible_to<std::uint64_t>;
}
class periodic_snapshotter {
 public:
  periodic_snapshotter(snapshot_pipeline& pipe, const M& map, std::filesystem::path path,
                       std::chrono::milliseconds interval)
      : pipe_(pipe), map_(map), path_(std::move(path)), interval_(interval) {
    sink_ = std::make_shared<callback_sink>([this](const snapshot_data& d, std::stop_token st) {
      if (st.stop_requested()) return;
      detail::persist::write_snapshot_file(path_, d.entries, d.json);
      // Counted here, where the file was replaced: a stop() that lands while this sink runs
      // still resolves the job cancelled (pipeline invariant 3), yet the save was made.
      std::lock_guard lock(mu_);
      saved_version_ = d.version;  // the version the written state was read at
      have_saved_ = true;
      ++saves_;
    });
    thread_ = std::jthread([this](std::stop_token st) { loop(st); });
  }
  ~periodic_snapshotter() { stop(); }
  periodic_snapshotter(const periodic_snapshotter&) = delete;
  periodic_snapshotter& operator=(const periodic_snapshotter&) = delete;

  // Stops the timer thread (cancelling a save in flight) and joins it. Idempotent.
  void stop() {
    thread_.request_stop();
    job_handle in_flight;
    {
      std::lock_guard lock(mu_);
      in_flight = current_;
    }
    // Outside mu_: cancel() runs the job's stop callbacks on this thread (pipeline invariant 1).
    if (in_flight.valid()) in_flight.cancel();
    if (thread_.joinable()) thread_.join();
  }

  std::uint64_t saves() const {
    std::lock_guard lock(mu_);
    return saves_;
  }
  std::uint64_t skipped() const {  // ticks with nothing new to save
    std::lock_guard lock(mu_);
    return skipped_;
  }
  std::uint64_t failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }

 private:
  // Sleeps an interval at a time on the thread's stop token: the wait registers a stop
  // callback that wakes it, so stop() ends a long interval at once.
  void loop(std::stop_token st) {
    std::mutex sleep_mu;  // the condition variable needs a lock; nothing else takes it
    std::condition_variable_any sleep_cv;
    const auto stopped = [&st] { return st.stop_requested(); };
    for (;;) {
      {
        std::unique_lock lock(sleep_mu);
        if (sleep_cv.wait_for(lock, st, interval_, stopped)) return;
      }
      tick(st);
    }
  }

  void tick(std::stop_token st) {
    const std::uint64_t v = map_.version();
    job_handle h;
    {
      std::lock_guard lock(mu_);
      if (have_saved_ && v == saved_version_) {
        ++skipped_;
        return;
      }
    }
    h = pipe_.submit(map_, sink_, {.stop = st});  // stop() also ends a wait for queue room
    {
      std::lock_guard lock(mu_);
      current_ = h;
    }
    const job_status s = h.wait();
    std::lock_guard lock(mu_);
    current_ = job_handle();
    if (s == job_status::failed) ++failures_;  // saves are counted by the sink
  }

  snapshot_pipeline& pipe_;
  const M& map_;
  const std::filesystem::path path_;
  const std::chrono::milliseconds interval_;
  std::shared_ptr<snapshot_sink> sink_;
  mutable std::mutex mu_;
  job_handle current_;                                    // guarded by mu_
  std::uint64_t saved_version_ = 0;                       // guarded by mu_
  bool have_saved_ = false;                               // guarded by mu_
  std::uint64_t saves_ = 0, skipped_ = 0, failures_ = 0;  // guarded by mu_
  std::jthread thread_;  // last: started after every other member exists
};

}  // namespace safemap
