// safemap/persist.hpp - crash-safe snapshot files of any safemap map.
//
//   safemap::save_snapshot(m, "state/users.snap");
//   auto m2 = safemap::load_snapshot<safemap::Map<std::string, int>>("state/users.snap");
//
// # File format (version 1)
// One header line, then the JSON payload exactly as to_json(m) writes it (sorted keys):
//
//   SAFEMAP-SNAPSHOT 1 entries=<count> bytes=<payload length> xxh3=<16 hex digits>\n
//   {"a":1,"b":2}
//
// The header is text so `head -1` tells what a file is. `entries` is the number of top-level
// entries in the payload, `bytes` its exact length, `xxh3` the XXH3-64 (seed 0) of the payload.
//
// # Crash safety
// save_snapshot writes a temporary file in the target's directory (same file system, so the
// rename is atomic), fsyncs it, renames it over the target, then fsyncs the directory so the
// rename itself is durable. A crash at any point leaves either the old file or the new one,
// never a torn one; at worst a stray ".<name>.tmp-*" file remains (a later save does not
// reuse its name; it is safe to delete). A save that throws before the rename leaves the
// target untouched; one that throws after it (the directory fsync failed) has put the new
// file in place without the durability promise, and its error says so.
//
// load_snapshot reads only regular files: a FIFO, a device, a socket or a directory is
// refused with snapshot_error (kind io), never opened in a way that could block.
//
// load_snapshot verifies the tag, the format version, the payload length, the checksum and the
// entry count before returning, and throws safemap::snapshot_error naming the file and the
// problem, or safemap::json_error for a payload that is not valid JSON for the target type
// (possible only if a file was written by something else with a matching checksum).
//
// Concurrency: save_snapshot reads m through the consistent view of its strategy (see
// json.hpp), so it can run while other threads write to a concurrent map. Two saves to the same
// path from different threads or processes are both safe: the last rename wins.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

#include "safemap/detail/random.hpp"
#include "safemap/hash.hpp"  // xxHash (inline)
#include "safemap/json.hpp"

namespace safemap {

// A snapshot file that cannot be written or read back.
class snapshot_error : public std::runtime_error {
 public:
  enum class kind {
    io,                 // a system call failed (errno text in what())
    missing,            // no such file
    bad_tag,            // not a safemap snapshot
    bad_version,        // a format version this build does not read
    bad_header,         // header fields malformed
    truncated,          // shorter than the header says
    trailing_bytes,     // longer than the header says
    checksum_mismatch,  // payload does not match its checksum
    count_mismatch,     // payload holds a different number of entries than the header says
  };

  snapshot_error(kind k, const std::filesystem::path& file, const std::string& problem)
      : std::runtime_error("safemap snapshot " + file.string() + ": " + problem),
        kind_(k),
        file_(file) {}

  kind problem() const noexcept { return kind_; }
  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  kind kind_;
  std::filesystem::path file_;
};

inline constexpr std::string_view snapshot_tag = "SAFEMAP-SNAPSHOT";
inline constexpr int snapshot_format_version = 1;

namespace detail::persist {

[[noreturn]] inline void throw_errno(const std::filesystem::path& file, const char* what) {
  const int e = errno;
  throw snapshot_error(e == ENOENT ? snapshot_error::kind::missing : snapshot_error::kind::io, file,
                       std::string(what) + ": " + std::strerror(e));
}

// A failure after the new file was renamed into place.
[[noreturn]] inline void throw_not_durable(const std::filesystem::path& file, const char* what) {
  const int e = errno;
  throw snapshot_error(snapshot_error::kind::io, file,
                       std::string("the new snapshot is in place but may not be durable (a crash "
                                   "may still bring back the old file): ") +
                           what + ": " + std::strerror(e));
}

// Closes a descriptor on scope exit (and unlinks a temporary file unless released).
class file {
 public:
  file(int fd, std::filesystem::path unlink_on_error = {})
      : fd_(fd), unlink_(std::move(unlink_on_error)) {}
  ~file() {
    if (fd_ >= 0) ::close(fd_);
    if (!unlink_.empty()) ::unlink(unlink_.c_str());
  }
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  int fd() const noexcept { return fd_; }
  void keep() noexcept { unlink_.clear(); }
  int release_close() noexcept {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
  std::filesystem::path unlink_;
};

inline void write_all(int fd, std::string_view data, const std::filesystem::path& file) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(file, "write");
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

inline std::string header(std::size_t entries, std::string_view payload) {
  char hex[17];
  const std::uint64_t sum = XXH3_64bits(payload.data(), payload.size());
  for (int i = 0; i < 16; ++i) hex[i] = "0123456789abcdef"[(sum >> (60 - 4 * i)) & 15];
  hex[16] = '\0';
  return std::string(snapshot_tag) + " " + std::to_string(snapshot_format_version) +
         " entries=" + std::to_string(entries) + " bytes=" + std::to_string(payload.size()) +
         " xxh3=" + hex + "\n";
}

struct parsed_header {
  std::size_t entries = 0;
  std::size_t bytes = 0;
  std::uint64_t xxh3 = 0;
  std::size_t length = 0;  // header line including '\n'
};

inline parsed_header parse_header(std::string_view data, const std::filesystem::path& file) {
  using k = snapshot_error::kind;
  if (data.substr(0, snapshot_tag.size()) != snapshot_tag ||
      (data.size() > snapshot_tag.size() && data[snapshot_tag.size()] != ' ')) {
    if (data.size() < snapshot_tag.size() && snapshot_tag.substr(0, data.size()) == data) {
      throw snapshot_error(k::truncated, file, "truncated: the file ends inside the header");
    }
    throw snapshot_error(k::bad_tag, file,
                         "not a safemap snapshot (no \"SAFEMAP-SNAPSHOT\" tag at the start)");
  }
  const std::size_t eol = data.find('\n');
  if (eol == std::string_view::npos) {
    throw snapshot_error(k::truncated, file, "truncated: the header line has no end");
  }
  std::string_view rest = data.substr(snapshot_tag.size() + 1, eol - snapshot_tag.size() - 1);
  parsed_header h;
  h.length = eol + 1;
  auto field = [&](std::string_view name, int base) -> std::uint64_t {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.substr(0, name.size()) != name) {
      throw snapshot_error(k::bad_header, file,
                           "malformed header: expected \"" + std::string(name) + "\"");
    }
    rest.remove_prefix(name.size());
    std::uint64_t v = 0;
    const auto r = std::from_chars(rest.data(), rest.data() + rest.size(), v, base);
    if (r.ec != std::errc() || r.ptr == rest.data()) {
      throw snapshot_error(k::bad_header, file,
                           "malformed header: bad value for \"" + std::string(name) + "\"");
    }
    rest.remove_prefix(static_cast<std::size_t>(r.ptr - rest.data()));
    return v;
  };
  const std::uint64_t version = field("", 10);
  if (version != snapshot_format_version) {
    throw snapshot_error(k::bad_version, file,
                         "format version " + std::to_string(version) +
                             " is not supported (this build reads version " +
                             std::to_string(snapshot_format_version) + ")");
  }
  h.entries = field("entries=", 10);
  h.bytes = field("bytes=", 10);
  h.xxh3 = field("xxh3=", 16);
  if (!rest.empty()) throw snapshot_error(k::bad_header, file, "malformed header: trailing fields");
  return h;
}

inline const char* file_type_name(mode_t mode) noexcept {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "an unknown type";
}

// Reads a whole regular file. O_NONBLOCK: opening a FIFO for reading otherwise blocks until a
// writer appears (forever, for a snapshot path). The type is checked with fstat on the open
// descriptor, so the path cannot change between the check and the read; the flag is cleared
// before reading.
inline std::string read_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw_errno(path, "open");
  file f(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno(path, "fstat");
  if (!S_ISREG(st.st_mode)) {
    throw snapshot_error(snapshot_error::kind::io, path,
                         std::string("not a regular file (") + file_type_name(st.st_mode) +
                             "): a snapshot is read only from a regular file");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) throw_errno(path, "fcntl");
  std::string data;
  data.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(path, "read");
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  data.resize(got);
  return data;
}

// Verifies header, length and checksum; returns the payload.
inline std::string_view verified_payload(std::string_view data, parsed_header& h,
                                         const std::filesystem::path& file) {
  using k = snapshot_error::kind;
  h = parse_header(data, file);
  const std::size_t have = data.size() - h.length;
  if (have < h.bytes) {
    throw snapshot_error(k::truncated, file,
                         "truncated: the header promises " + std::to_string(h.bytes) +
                             " payload bytes, the file has " + std::to_string(have));
  }
  if (have > h.bytes) {
    throw snapshot_error(k::trailing_bytes, file,
                         std::to_string(have - h.bytes) + " unexpected bytes after the payload");
  }
  const std::string_view payload = data.substr(h.length);
  const std::uint64_t sum = XXH3_64bits(payload.data(), payload.size());
  if (sum != h.xxh3) {
    throw snapshot_error(
        k::checksum_mismatch, file,
        "checksum mismatch: the payload is corrupt (XXH3 differs from the header's)");
  }
  return payload;
}

}  // namespace detail::persist

namespace detail::persist {

// Writes an already serialized payload (`entries` top-level entries) to `path` crash-safely.
inline void write_snapshot_file(const std::filesystem::path& path, std::size_t entries,
                                std::string_view payload) {
  const std::string head = header(entries, payload);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  char suffix[32];
  const auto r = std::to_chars(suffix, suffix + sizeof suffix, detail::random_u64(), 16);
  // Built with append rather than "." + string: GCC 12 raises a false -Wrestrict (bug 105651)
  // on the latter at -O3 in users' -Werror builds.
  std::string name(1, '.');
  name.append(path.filename().string()).append(".tmp-").append(std::to_string(::getpid()));
  name.append(1, '-').append(suffix, r.ptr);
  const std::filesystem::path tmp = dir / name;

  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno(path, "create temporary file");
  file f(fd, tmp);
  write_all(fd, head, path);
  write_all(fd, payload, path);
  if (::fsync(fd) != 0) throw_errno(path, "fsync");
  if (f.release_close() != 0) throw_errno(path, "close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno(path, "rename");
  f.keep();  // renamed: nothing to unlink
  // The new file is in place from here on: a failure now must not claim the target untouched.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) throw_not_durable(path, "open directory");
  file d(dfd);
  if (::fsync(dfd) != 0) throw_not_durable(path, "fsync directory");
}

}  // namespace detail::persist

// Writes m to `path` crash-safely (see the top of this file). Throws snapshot_error (kind io)
// when a system call fails. Up to the rename the target is untouched; if only the last step
// fails (opening or fsyncing the directory after the rename), the new file is already in
// place but a crash may still undo the rename, and what() says so.
template <class M>
requires detail::json::map_like<M>
void save_snapshot(const M& m, const std::filesystem::path& path) {
  std::string payload;
  const std::size_t entries = detail::json::write_top(m, payload, json_options{});
  detail::persist::write_snapshot_file(path, entries, payload);
}

// Reads a snapshot written by save_snapshot into a new M, verifying everything first.
template <class M>
requires detail::json::map_like<M> M load_snapshot(const std::filesystem::path& path) {
  namespace p = detail::persist;
  const std::string data = p::read_file(path);
  p::parsed_header h;
  const std::string_view payload = p::verified_payload(data, h, path);
  auto staged = [&] {
    try {
      return detail::json::parse_staged<M>(payload);
    } catch (const json_error& e) {  // name the file; the offset stays the payload's
      throw json_error(e.offset(), "safemap snapshot " + path.string() + ": " + e.what());
    }
  }();
  if (staged.size() != h.entries) {
    throw snapshot_error(snapshot_error::kind::count_mismatch, path,
                         "entry count mismatch: the header says " + std::to_string(h.entries) +
                             ", the payload holds " + std::to_string(staged.size()));
  }
  return detail::json::from_staged<M>(std::move(staged));
}

}  // namespace safemap
