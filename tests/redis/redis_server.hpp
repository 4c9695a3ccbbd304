// tests/redis/redis_server.hpp - a private redis-server for RedisMap's tests.
//
// Tests never use a Redis they did not start. redis_server launches `redis-server` (Debian
// redis-server) on a free loopback port, persistence off unless asked, in its own temporary
// directory, and kills it (SIGKILL) in its destructor, so ctest alone works and a test can
// kill, restart, pause (SIGSTOP) and resume its server. shared_server() is the one server most
// tests share: the one scripts/test started when SAFEMAP_TEST_REDIS_PORT names its port, else
// one started here for the whole test binary.
//
// raw(...) runs a command on a fresh connection of its own (for checks and for writes that
// bypass RedisMap, such as a corrupted value).
//
// Concurrency: a redis_server is driven by one thread (the test's); raw() may be called from
// any thread.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "safemap/redis_map.hpp"

namespace safemap_test {

struct redis_server_config {
  bool persistent = false;   // appendonly yes, appendfsync always (survives SIGKILL)
  std::string password;      // requirepass
  bool unix_socket = false;  // also listen on a socket in the server's directory
};

class redis_server {
 public:
  explicit redis_server(redis_server_config cfg = {}) : cfg_(std::move(cfg)) {
    char tmpl[] = "/tmp/safemap-redis-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      if (start()) return;
    }
    throw std::runtime_error("redis-server did not start (is Debian's redis-server installed?)");
  }
  // An already running server (scripts/test's), on 127.0.0.1:port; never killed here.
  static std::unique_ptr<redis_server> external(int port) {
    std::unique_ptr<redis_server> s(new redis_server(port));
    return s;
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  ~redis_server() {
    if (pid_ > 0) kill();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  int port() const noexcept { return port_; }
  std::string socket_path() const { return dir_ + "/redis.sock"; }

  safemap::redis_options options() const {
    safemap::redis_options o;
    o.port = port_;
    o.password = cfg_.password;
    return o;
  }

  // SIGKILL: the server dies at once, mid-command if one is running.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  // Starts the server again on the same port and directory (with persistence, on its data).
  void restart() {
    kill();
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (start()) return;  // the port may linger a moment after the kill
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("redis-server did not restart");
  }
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

  // Runs one command on a fresh connection; throws on connection errors and error replies.
  std::unique_ptr<redisReply, safemap::detail::redis::reply_deleter> raw(
      std::initializer_list<std::string_view> args, int db = 0) const {
    safemap::detail::redis::context_ptr c(redisConnectWithTimeout("127.0.0.1", port_, {5, 0}));
    if (!c || c->err) throw std::runtime_error("raw: cannot connect to the test redis-server");
    redisSetTimeout(c.get(), {10, 0});
    auto run = [&](std::initializer_list<std::string_view> a) {
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (auto s : a) {
        argv.push_back(s.data());
        lens.push_back(s.size());
      }
      std::unique_ptr<redisReply, safemap::detail::redis::reply_deleter> r(static_cast<redisReply*>(
          redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
      if (!r) throw std::runtime_error(std::string("raw: ") + c->errstr);
      if (r->type == REDIS_REPLY_ERROR) throw std::runtime_error("raw: " + std::string(r->str));
      return r;
    };
    if (!cfg_.password.empty()) run({"AUTH", cfg_.password});
    if (db != 0) {
      const std::string d = std::to_string(db);
      run({"SELECT", d});
    }
    return run(args);
  }

  // The server's connected_clients (this check's own connection included).
  long connected_clients() const {
    auto r = raw({"INFO", "clients"});
    const std::string info(r->str, r->len);
    const auto at = info.find("connected_clients:");
    if (at == std::string::npos) throw std::runtime_error("INFO clients without connected_clients");
    return std::stol(info.substr(at + 18));
  }

 private:
  explicit redis_server(int port) : port_(port) {}

  static int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd >= 0) close(fd);
      throw std::runtime_error("no free loopback port");
    }
    close(fd);
    return ntohs(a.sin_port);
  }

  // Spawns redis-server and waits (at most 10 s) until it answers PING; false if it exited.
  bool start() {
    std::vector<std::string> args = {"redis-server",
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--daemonize",
                                     "no",
                                     "--dir",
                                     dir_,
                                     "--save",
                                     "",
                                     "--logfile",
                                     dir_ + "/redis.log",
                                     "--enable-debug-command",
                                     "yes"};
    if (cfg_.persistent) {
      args.insert(args.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    } else {
      args.insert(args.end(), {"--appendonly", "no"});
    }
    if (!cfg_.password.empty()) args.insert(args.end(), {"--requirepass", cfg_.password});
    if (cfg_.unix_socket) {
      args.insert(args.end(), {"--unixsocket", socket_path(), "--unixsocketperm", "700"});
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // fork + exec rather than posix_spawn: the child asks for SIGKILL when this process dies
    // (PR_SET_PDEATHSIG), so a test that crashes leaves no server behind, holding its pipes.
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
      const int null = open("/dev/null", O_RDWR);
      if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
      }
      execvp("redis-server", argv.data());
      _exit(127);
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
          throw std::runtime_error("cannot run redis-server (Debian: redis-server)");
        }
        return false;  // exited: most likely the port was taken meanwhile
      }
      try {
        raw({"PING"});
        return true;
      } catch (const std::runtime_error&) {
        // Waiting for an external process to listen: poll until the deadline.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    kill();
    return false;
  }

  redis_server_config cfg_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// The server most tests share (see the top of this file).
inline redis_server& shared_server() {
  static std::unique_ptr<redis_server> server = [] {
    if (const char* p = std::getenv("SAFEMAP_TEST_REDIS_PORT"); p != nullptr && *p != '\0') {
      return redis_server::external(std::atoi(p));
    }
    return std::make_unique<redis_server>();
  }();
  return *server;
}

// A map name no other test (and no other run against the same server) uses.
inline std::string unique_map_name(std::string_view what = {}) {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "safemap-test:";
  if (info != nullptr) name += std::string(info->test_suite_name()) + "." + info->name();
  if (!what.empty()) name += ":" + std::string(what);
  name += ":" + std::to_string(getpid()) + ":" + std::to_string(counter++);
  return name;
}

}  // namespace safemap_test
