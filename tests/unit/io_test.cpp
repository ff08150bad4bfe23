// SPDX-License-Identifier: MIT
// goro::io: fibers wait for file descriptors without blocking their worker;
// cancellation, close() and the deadlock detector all reach such a wait.
#include "goro_test.hpp"

#include <goro/io.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// A connected pair of non-blocking stream sockets, closed (via io::close)
// on destruction unless already closed.
struct socket_pair {
  int a = -1;
  int b = -1;
  socket_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    a = fds[0];
    b = fds[1];
  }
  socket_pair(const socket_pair&) = delete;
  socket_pair& operator=(const socket_pair&) = delete;
  ~socket_pair() {
    if (a >= 0) goro::io::close(a);
    if (b >= 0) goro::io::close(b);
  }
};

// Reads at least one byte (up to n), waiting as needed. Returns bytes read
// (0 at EOF) or -1 with the wait's error in err.
long read_some(int fd, char* buf, std::size_t n, std::error_code& err, const goro::context& ctx = goro::background()) {
  for (;;) {
    ssize_t got = ::read(fd, buf, n);
    if (got >= 0) return static_cast<long>(got);
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      err = {errno, std::system_category()};
      return -1;
    }
    if ((err = goro::io::wait_readable(fd, ctx))) return -1;
  }
}

bool write_all(int fd, const char* buf, std::size_t n) {
  while (n > 0) {
    ssize_t put = ::write(fd, buf, n);
    if (put >= 0) {
      buf += put;
      n -= static_cast<std::size_t>(put);
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    if (goro::io::wait_writable(fd)) return false;
  }
  return true;
}

bool read_exactly(int fd, char* buf, std::size_t n) {
  while (n > 0) {
    std::error_code err;
    long got = read_some(fd, buf, n, err);
    if (got <= 0) return false;
    buf += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

// Fills fd's send buffer until the kernel says EAGAIN.
void fill_send_buffer(int fd) {
  std::vector<char> chunk(64 * 1024, 'x');
  while (::write(fd, chunk.data(), chunk.size()) > 0) {
  }
  REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
}

std::size_t io_waiters() { return goro::runtime_metrics().blocked_on(goro::wait_reason::io_wait); }

}  // namespace

TEST_CASE("socketpair echo between fibers, many round trips", "[io]") {
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(5000, 200);
  goro_test::run_in_goro(workers, [&] {
    socket_pair sp;
    goro::wait_group wg;
    wg.add(1);
    std::atomic<bool> server_ok{true};  // Catch assertions stay on the main fiber (not thread-safe)
    goro::spawn({.name = "echo-server"}, [&] {
      char buf[256];
      for (;;) {
        std::error_code err;
        long n = read_some(sp.b, buf, sizeof buf, err);
        if (n <= 0) break;  // EOF: the client shut down its side
        if (!write_all(sp.b, buf, static_cast<std::size_t>(n))) {
          server_ok = false;
          break;
        }
      }
      wg.done();
    });
    for (long i = 0; i < rounds; ++i) {
      std::string msg = "ping " + std::to_string(i);
      REQUIRE(write_all(sp.a, msg.data(), msg.size()));
      std::string back(msg.size(), '\0');
      REQUIRE(read_exactly(sp.a, back.data(), back.size()));
      REQUIRE(back == msg);
    }
    ::shutdown(sp.a, SHUT_WR);
    wg.wait();
    CHECK(server_ok);
  });
}

TEST_CASE("a worker going idle polls the reactor itself and runs the reader it finds ready", "[io]") {
  // On one worker: the writer parks in its own read, the worker finds the
  // peer's fd ready with a non-blocking epoll_wait and runs the reader at
  // once (counted in io_ready_polled). Only the poller thread's fallback poll
  // (every 10 ms, and only when no worker polled meanwhile) could take an
  // event instead, so the worker finds nearly every one: at least half of
  // the 2 per round trip, in the first batch already. Batches go on until
  // it has, in case the machine stalls the worker for a while.
  const long batch = 200;
  const int max_batches = 40;
  long rounds = 0;
  std::uint64_t polled = 0;
  goro_test::run_in_goro(1, [&] {
    socket_pair sp;
    std::atomic<bool> echo_ok{true};
    goro::wait_group wg;
    wg.add(1);
    goro::spawn({.name = "echo"}, [&] {
      char c;
      while (read_exactly(sp.b, &c, 1)) {  // until the client shuts down its side
        if (!write_all(sp.b, &c, 1)) {
          echo_ok = false;
          break;
        }
      }
      wg.done();
    });
    const std::uint64_t before = goro::runtime_metrics().io_ready_polled;
    for (int b = 0; b < max_batches && polled < static_cast<std::uint64_t>(rounds) + 1; ++b) {
      for (long i = 0; i < batch; ++i, ++rounds) {
        char c = static_cast<char>('a' + rounds % 26), back = 0;
        REQUIRE(write_all(sp.a, &c, 1));
        REQUIRE(read_exactly(sp.a, &back, 1));
        REQUIRE(back == c);
      }
      polled = goro::runtime_metrics().io_ready_polled - before;
    }
    ::shutdown(sp.a, SHUT_WR);
    wg.wait();
    CHECK(echo_ok);
  });
  INFO("round trips " << rounds << ", reader wake-ups found by the worker's own poll " << polled);
  CHECK(polled >= static_cast<std::uint64_t>(rounds));
  CHECK(polled <= static_cast<std::uint64_t>(2 * rounds));
}

TEST_CASE("the last idle worker sleeps in the reactor, and an fd event wakes it there", "[io]") {
  // One worker, one fiber waiting on an fd: when the main fiber waits too,
  // the worker has nothing to run and sleeps in epoll_wait (counted in
  // io_blocking_polls). A plain thread writes once it sees that; the event
  // must wake the worker itself, which runs the reader.
  goro_test::run_in_goro(1, [] {
    socket_pair sp;
    const std::uint64_t before = goro::runtime_metrics().io_blocking_polls;
    goro::chan<char> got(1);
    goro::spawn({.name = "reader"}, [&] {
      char c = 0;
      got.send(read_exactly(sp.a, &c, 1) ? c : '!');
    });
    std::thread writer([&] {
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (goro::runtime_metrics().io_blocking_polls == before && std::chrono::steady_clock::now() < give_up)
        std::this_thread::yield();
      (void)!::write(sp.b, "k", 1);
    });
    auto c = got.recv();
    writer.join();
    REQUIRE(c.has_value());
    CHECK(*c == 'k');
    CHECK(goro::runtime_metrics().io_blocking_polls > before);
  });
}

TEST_CASE("a worker sleeping in the reactor wakes for work and for timers", "[io]") {
  // One worker; a fiber waits on an fd that never becomes ready, so each
  // time the worker runs out of fibers it sleeps in epoll_wait, not on its
  // futex. What wakes an idle worker must still wake it there: a fiber
  // readied by a plain thread (unpark, through the poll-break eventfd) and
  // the deadline of a sleep (the epoll timeout).
  goro_test::run_in_goro(1, [] {
    socket_pair sp;
    goro::wait_group reader_done;
    reader_done.add(1);
    std::error_code reader_err;
    goro::spawn({.name = "reader"}, [&] {
      reader_err = goro::io::wait_readable(sp.a);
      reader_done.done();
    });
    // A send from a plain thread, once the worker sleeps in the reactor.
    const std::uint64_t before = goro::runtime_metrics().io_blocking_polls;
    goro::chan<int> from_thread(0);  // unbuffered: the send hands over to the parked main fiber
    std::thread sender([&] {
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (goro::runtime_metrics().io_blocking_polls == before && std::chrono::steady_clock::now() < give_up)
        std::this_thread::yield();
      from_thread.send(42);
    });
    auto v = from_thread.recv();
    sender.join();
    REQUIRE(v.has_value());
    CHECK(*v == 42);
    CHECK(goro::runtime_metrics().io_blocking_polls > before);
    // Sleeps end on time while the worker waits in epoll (nothing else can
    // wake it: the reader's fd stays quiet).
    for (int i = 0; i < 5; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      goro::sleep_for(20ms);  // the behaviour under test: the epoll timeout ends it
      const auto took = std::chrono::steady_clock::now() - t0;
      CHECK(took >= 20ms);
      CHECK(took < 2s);  // generous: a lost epoll timeout would never end
    }
    goro::io::close(sp.a);  // wakes the reader with bad_file_descriptor
    sp.a = -1;
    reader_done.wait();
    CHECK(reader_err == std::errc::bad_file_descriptor);
  });
}

TEST_CASE("an fd event reaches its fiber while every other worker runs a fiber that never switches", "[io]") {
  // Two workers: one runs a fiber that spins without switching until the
  // reader has run, so it never polls; the other goes idle, but as it is not
  // the last idle worker it sleeps on its futex, not in the reactor. The
  // event must still arrive: the reactor's poller thread polls every 10 ms
  // while no worker sleeps in it.
  goro_test::run_in_goro(2, [] {
    socket_pair sp;
    std::atomic<bool> reader_ran{false};
    std::atomic<bool> spinner_started{false};
    std::atomic<bool> spinner_gave_up{false};
    goro::wait_group wg;
    wg.add(2);
    goro::spawn({.name = "reader"}, [&] {
      char c = 0;
      if (read_exactly(sp.a, &c, 1)) reader_ran = true;
      wg.done();
    });
    goro::spawn({.name = "spinner"}, [&] {
      spinner_started = true;
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (!reader_ran.load() && std::chrono::steady_clock::now() < give_up) {
      }
      spinner_gave_up = !reader_ran.load();
      wg.done();
    });
    std::thread writer([&] {
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while ((!spinner_started.load() || io_waiters() == 0) && std::chrono::steady_clock::now() < give_up)
        std::this_thread::yield();
      (void)!::write(sp.b, "e", 1);
    });
    wg.wait();
    writer.join();
    CHECK(reader_ran.load());
    CHECK_FALSE(spinner_gave_up.load());
  });
}

TEST_CASE("a wait ends with ctx.err() when its context is cancelled", "[io]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    socket_pair sp;  // nothing is ever written: only the cancel can end the wait
    auto [ctx, cancel] = goro::with_cancel(goro::background());
    goro::chan<std::error_code> result(1);
    goro::spawn([&, ctx = ctx] { result.send(goro::io::wait_readable(sp.a, ctx)); });
    REQUIRE(goro_test::eventually([] { return io_waiters() == 1; }));
    cancel();
    std::error_code err = result.recv().value();
    CHECK(err == goro::context_errc::canceled);
    // The cancelled waiter left nothing registered: a new wait still works.
    REQUIRE(::write(sp.b, "x", 1) == 1);
    CHECK_FALSE(goro::io::wait_readable(sp.a));
  });
}

TEST_CASE("a wait ends with deadline_exceeded at its context's deadline", "[io]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    socket_pair sp;
    auto [ctx, cancel] = goro::with_timeout(goro::background(), 30ms);
    auto start = std::chrono::steady_clock::now();
    std::error_code err = goro::io::wait_writable(sp.a, ctx);  // writable at once: not a timeout
    CHECK_FALSE(err);
    err = goro::io::wait_readable(sp.a, ctx);
    CHECK(err == goro::context_errc::deadline_exceeded);
    CHECK(std::chrono::steady_clock::now() - start >= 25ms);
    // An already-ended context returns at once.
    CHECK(goro::io::wait_readable(sp.a, ctx) == goro::context_errc::deadline_exceeded);
    cancel();
  });
}

TEST_CASE("io::close wakes every fiber waiting on the fd with bad_file_descriptor", "[io]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    socket_pair sp;
    constexpr int waiters = 3;
    goro::chan<std::error_code> results(waiters);
    for (int i = 0; i < waiters; ++i) goro::spawn([&] { results.send(goro::io::wait_readable(sp.a)); });
    // And one writer on a full buffer: close() wakes both directions.
    fill_send_buffer(sp.a);
    goro::spawn([&] { results.send(goro::io::wait_writable(sp.a)); });
    REQUIRE(goro_test::eventually([] { return io_waiters() == waiters + 1; }));
    CHECK(goro::io::close(sp.a) == 0);
    sp.a = -1;
    for (int i = 0; i < waiters + 1; ++i) CHECK(results.recv().value() == std::errc::bad_file_descriptor);
    CHECK(io_waiters() == 0);
  });
}

TEST_CASE("a reader and a writer wait on the same fd at once", "[io]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    socket_pair sp;
    fill_send_buffer(sp.a);  // a is not writable and (nothing sent to it) not readable
    goro::chan<std::string> done(2);
    goro::spawn([&] {
      char c = 0;
      std::error_code err;
      long n = read_some(sp.a, &c, 1, err);
      done.send(n == 1 && c == 'r' ? "reader" : "reader failed");
    });
    goro::spawn([&] { done.send(goro::io::wait_writable(sp.a) ? "writer failed" : "writer"); });
    REQUIRE(goro_test::eventually([] { return io_waiters() == 2; }));
    // Readable first: only the reader may wake.
    REQUIRE(::write(sp.b, "r", 1) == 1);
    CHECK(done.recv().value() == "reader");
    CHECK(io_waiters() == 1);  // the writer still waits
    // Drain b's receive buffer: a becomes writable.
    std::vector<char> sink(64 * 1024);
    while (::read(sp.b, sink.data(), sink.size()) > 0) {
    }
    CHECK(done.recv().value() == "writer");
  });
}

TEST_CASE("many fibers wait on their own socketpair at once", "[io]") {
  unsigned workers = GORO_WORKERS();
  // Two fds per pair; stay well inside the descriptor limit.
  rlimit lim{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  const long n = std::min<long>(goro_test::scaled(1000, 100), (static_cast<long>(lim.rlim_cur) - 64) / 2);
  goro_test::run_in_goro(workers, [&] {
    std::vector<std::unique_ptr<socket_pair>> pairs;
    for (long i = 0; i < n; ++i) pairs.push_back(std::make_unique<socket_pair>());
    goro::wait_group wg;
    std::atomic<long> sum{0};
    wg.add(n);
    for (long i = 0; i < n; ++i)
      goro::spawn([&, i] {
        char c = 0;
        std::error_code err;
        if (read_some(pairs[i]->a, &c, 1, err) == 1) sum += c;
        wg.done();
      });
    REQUIRE(goro_test::eventually([&] { return io_waiters() == static_cast<std::size_t>(n); }));
    for (long i = n - 1; i >= 0; --i) REQUIRE(::write(pairs[i]->b, "\x01", 1) == 1);
    wg.wait();
    CHECK(sum == n);
  });
}

TEST_CASE("an invalid fd is reported as bad_file_descriptor", "[io]") {
  goro_test::run_in_goro(1, [] {
    CHECK(goro::io::wait_readable(-1) == std::errc::bad_file_descriptor);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    // Start the reactor first, so that its epoll fd does not take the
    // number we are about to free.
    CHECK_FALSE(goro::io::wait_writable(fds[1]));
    ::close(fds[0]);
    ::close(fds[1]);
    CHECK(goro::io::wait_readable(fds[0]) == std::errc::bad_file_descriptor);
  });
  CHECK(goro::io::wait_readable(-1) == std::errc::bad_file_descriptor);  // plain thread
}

TEST_CASE("a plain thread waits in poll, with cancellation and close", "[io]") {
  socket_pair sp;
  // Ready.
  REQUIRE(::write(sp.b, "x", 1) == 1);
  CHECK_FALSE(goro::io::wait_readable(sp.a));
  CHECK_FALSE(goro::io::wait_writable(sp.a));
  char c;
  REQUIRE(::read(sp.a, &c, 1) == 1);

  // Woken by data written by another thread.
  {
    ssize_t wrote = 0;
    std::thread writer([&] { wrote = ::write(sp.b, "y", 1); });
    CHECK_FALSE(goro::io::wait_readable(sp.a));
    writer.join();
    CHECK(wrote == 1);
    REQUIRE(::read(sp.a, &c, 1) == 1);
  }
  // Cancelled by another thread (no runtime needed).
  {
    auto [ctx, cancel] = goro::with_cancel(goro::background());
    std::thread canceller([cancel = cancel] { cancel(); });
    CHECK(goro::io::wait_readable(sp.a, ctx) == goro::context_errc::canceled);
    canceller.join();
  }
  // Woken by io::close from another thread.
  {
    std::error_code err;
    std::thread waiter([&] { err = goro::io::wait_readable(sp.a); });
    // Close while it polls (closing first is a use-after-close race in the
    // test: the number could be reused by the time the thread polls it).
    REQUIRE(goro_test::eventually([&] {
      auto& table = goro::detail::plain_io_waiters();
      std::lock_guard lock(table.mu);
      return table.waiters.count(sp.a) == 1;
    }));
    goro::io::close(sp.a);
    sp.a = -1;
    waiter.join();
    CHECK(err == std::errc::bad_file_descriptor);
  }
}

TEST_CASE("a plain thread waits at its context's deadline", "[io]") {
  socket_pair sp;
  goro_test::run_in_goro(1, [&] {
    // The deadline timer lives in the runtime; the wait is on a plain thread.
    auto [ctx, cancel] = goro::with_timeout(goro::background(), 20ms);
    std::error_code err;
    std::thread waiter([&, ctx = ctx] { err = goro::io::wait_readable(sp.a, ctx); });
    waiter.join();
    CHECK(err == goro::context_errc::deadline_exceeded);
    cancel();
  });
}

TEST_CASE("a wait parks only its fiber: the worker keeps running others", "[io]") {
  goro_test::run_in_goro(1, [] {
    socket_pair sp;
    goro::wait_group wg;
    wg.add(1);
    std::error_code err = std::make_error_code(std::errc::interrupted);
    goro::spawn([&] {
      err = goro::io::wait_readable(sp.a);
      wg.done();
    });
    // On one worker: if the wait blocked the worker, this fiber never ran.
    goro::spawn([&] { (void)!::write(sp.b, "z", 1); });
    wg.wait();
    CHECK_FALSE(err);
  });
}

TEST_CASE("the deadlock detector does not fire while a fiber waits on an fd", "[io][deadlock]") {
  unsigned workers = GORO_WORKERS();
  socket_pair sp;
  goro::run_options options;
  options.workers = workers;
  options.detect_deadlock = true;
  options.deadlock_grace = 30ms;
  // The writer is a plain thread the runtime cannot see; it writes only
  // after several grace periods have passed with every fiber parked.
  std::mutex mu;
  std::condition_variable cv;
  bool waiting = false;
  ssize_t wrote = 0;
  std::thread writer([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return waiting; });
    cv.wait_for(lock, 200ms, [] { return false; });  // the idle period under test
    wrote = ::write(sp.b, "w", 1);
  });
  bool ok = false;
  CHECK_NOTHROW(goro::run(options, [&] {
    {
      std::lock_guard lock(mu);
      waiting = true;
    }
    cv.notify_all();
    ok = !goro::io::wait_readable(sp.a);
  }));
  writer.join();
  CHECK(wrote == 1);
  CHECK(ok);
}

TEST_CASE("a real deadlock after an fd wait is still detected", "[io][deadlock]") {
  socket_pair sp;
  goro::run_options options;
  options.workers = 2;
  options.detect_deadlock = true;
  options.deadlock_grace = 30ms;
  REQUIRE(::write(sp.b, "w", 1) == 1);
  goro::chan<int> never;  // outlives run(): the main fiber is unwound blocked on it
  CHECK_THROWS_AS(goro::run(options,
                            [&] {
                              CHECK_FALSE(goro::io::wait_readable(sp.a));
                              (void)never.recv();
                            }),
                  goro::deadlock_error);
}

TEST_CASE("dump_fibers shows a fiber parked on an fd as IO wait", "[io]") {
  goro_test::run_in_goro(2, [] {
    socket_pair sp;
    goro::chan<std::error_code> result(1);
    goro::spawn({.name = "fd-reader"}, [&] { result.send(goro::io::wait_readable(sp.a)); });
    REQUIRE(goro_test::eventually([] { return io_waiters() == 1; }));
    std::ostringstream dump;
    goro::dump_fibers(dump);
    CHECK(dump.str().find("\"fd-reader\" [waiting: IO wait") != std::string::npos);
    CHECK(goro::live_fibers() == 2);  // still counted as live
    REQUIRE(::write(sp.b, "d", 1) == 1);
    CHECK_FALSE(result.recv().value());
  });
}

TEST_CASE("a fiber still waiting on an fd when run() returns is unwound cleanly", "[io]") {
  unsigned workers = GORO_WORKERS();
  socket_pair sp;  // outlives run(): the leftover fiber is unwound after main returned
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;
  goro::run_options options;
  options.workers = workers;
  goro::run(options, [&] {
    goro::spawn({.name = "left-on-fd"}, [&] { (void)goro::io::wait_readable(sp.a); });
    REQUIRE(goro_test::eventually([] { return io_waiters() == 1; }));
  });
  const auto unwound = goro::runtime_metrics().unwound_at_shutdown - unwound_before;
  CHECK(unwound == 1);
  goro::testing::acknowledge_unwound(unwound);  // the deliberate leak
  // The fd is still usable afterwards (from a plain thread here).
  REQUIRE(::write(sp.b, "u", 1) == 1);
  CHECK_FALSE(goro::io::wait_readable(sp.a));
}

// ---------------------------------------------------------------------------
// io::read_at / io::read_cached: regular files without a thread hop.

namespace {

// A temporary regular file holding `size` bytes of a known pattern; removed
// on destruction.
struct temp_file {
  std::string path;
  int fd = -1;
  std::string content;
  explicit temp_file(std::size_t size) {
    path = (std::filesystem::temp_directory_path() / "goro-read-at-XXXXXX").string();
    fd = ::mkstemp(path.data());
    REQUIRE(fd >= 0);
    content.resize(size);
    for (std::size_t i = 0; i < size; ++i) content[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() {
    ::close(fd);
    ::unlink(path.c_str());
  }
};

struct file_read_counts {
  std::uint64_t cached, offloaded;
};
file_read_counts file_reads() {
  goro::metrics m = goro::runtime_metrics();
  return {m.file_reads_cached, m.file_reads_offloaded};
}

}  // namespace

TEST_CASE("io::read_at reads a file in the page cache on the worker, without the blocking pool", "[io][read_at]") {
  temp_file file(200 * 1024);  // just written: in the page cache
  char probe;
  std::error_code ec;
  if (goro::io::read_cached(file.fd, &probe, 1, 0, ec) != 1) {
    WARN("this file system cannot read without blocking (RWF_NOWAIT): " << file.path << ": " << ec.message());
    return;
  }
  goro_test::run_in_goro(GORO_WORKERS(), [&] {
    const file_read_counts before = file_reads();
    std::vector<char> buf(64 * 1024);
    std::error_code error;
    for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{12345}, std::uint64_t{150 * 1024}}) {
      std::size_t n = goro::io::read_at(file.fd, buf.data(), buf.size(), offset, error);
      CHECK_FALSE(error);
      REQUIRE(n == std::min<std::size_t>(buf.size(), file.content.size() - offset));
      CHECK(std::string(buf.data(), n) == file.content.substr(static_cast<std::size_t>(offset), n));
    }
    CHECK(goro::io::read_at(file.fd, buf.data(), buf.size(), file.content.size(), error) == 0);  // end of file
    CHECK_FALSE(error);
    CHECK(goro::io::read_at(file.fd, buf.data(), buf.size(), file.content.size() + 4096, error) == 0);
    CHECK_FALSE(error);
    const file_read_counts after = file_reads();
    CHECK(after.cached - before.cached == 5);
    CHECK(after.offloaded == before.offloaded);
    CHECK(goro::blocking_pool_stats().threads_started == 0);  // no pool thread was ever needed
  });
}

TEST_CASE("io::read_at goes through the blocking pool where the page cache cannot answer", "[io][read_at]") {
  // procfs has no RWF_NOWAIT (EOPNOTSUPP): every read must be offloaded.
  int fd = ::open("/proc/version", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    WARN("no /proc/version");
    return;
  }
  char expected[512];
  ssize_t want = ::pread(fd, expected, sizeof expected, 0);
  REQUIRE(want > 0);
  char probe[8];
  std::error_code ec;
  CHECK(goro::io::read_cached(fd, probe, sizeof probe, 0, ec) == 0);
  CHECK(ec == std::errc::resource_unavailable_try_again);
  goro_test::run_in_goro(GORO_WORKERS(), [&] {
    const file_read_counts before = file_reads();
    char got[512];
    std::error_code error;
    std::size_t n = goro::io::read_at(fd, got, sizeof got, 0, error);
    CHECK_FALSE(error);
    REQUIRE(n == static_cast<std::size_t>(want));
    CHECK(std::memcmp(got, expected, n) == 0);
    const file_read_counts after = file_reads();
    CHECK(after.offloaded - before.offloaded == 1);
    CHECK(after.cached == before.cached);
  });
  ::close(fd);
}

TEST_CASE("io::read_at of a file evicted from the page cache reads it from the disk on the pool", "[io][read_at]") {
  temp_file file(256 * 1024);
  REQUIRE(::fsync(file.fd) == 0);  // clean pages can be dropped
  REQUIRE(::posix_fadvise(file.fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  char probe;
  std::error_code ec;
  goro::io::read_cached(file.fd, &probe, 1, 128 * 1024, ec);
  if (ec != std::errc::resource_unavailable_try_again) {
    WARN("the page cache kept the file (or this file system has no RWF_NOWAIT): " << file.path);
    return;
  }
  goro_test::run_in_goro(GORO_WORKERS(), [&] {
    const file_read_counts before = file_reads();
    std::string got;
    std::vector<char> buf(32 * 1024);
    for (;;) {  // read_at may return short counts: loop to the end like any pread user
      std::error_code error;
      std::size_t n = goro::io::read_at(file.fd, buf.data(), buf.size(), got.size(), error);
      REQUIRE_FALSE(error);
      if (n == 0) break;
      got.append(buf.data(), n);
    }
    CHECK(got == file.content);
    CHECK(file_reads().offloaded - before.offloaded >= 1);  // at least the first read waited for the disk
  });
}

TEST_CASE("io::read_at reports pread's errors, on the worker, from the pool and on a plain thread",
          "[io][read_at]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  int dir = ::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dir >= 0);
  temp_file file(4096);
  auto check_errors = [&] {
    char buf[16];
    std::error_code ec;
    CHECK(goro::io::read_at(-1, buf, sizeof buf, 0, ec) == 0);
    CHECK(ec == std::errc::bad_file_descriptor);
    CHECK(goro::io::read_at(fds[0], buf, sizeof buf, 0, ec) == 0);  // a pipe has no offsets
    CHECK(ec == std::errc::invalid_seek);
    CHECK(goro::io::read_at(dir, buf, sizeof buf, 0, ec) == 0);
    CHECK(ec == std::errc::is_a_directory);
    // An offset past off_t: EINVAL (preadv2 would read at the file position
    // for -1).
    CHECK(goro::io::read_at(file.fd, buf, sizeof buf, ~std::uint64_t{0}, ec) == 0);
    CHECK(ec == std::errc::invalid_argument);
    CHECK(goro::io::read_cached(file.fd, buf, sizeof buf, ~std::uint64_t{0}, ec) == 0);
    CHECK(ec == std::errc::invalid_argument);
    // A read on the pool that fails: its error comes back to the fiber.
    // procfs offers no RWF_NOWAIT, so read_at hands the call to the pool,
    // and address 0 of our own memory is unmapped: EIO.
    if (int mem = ::open("/proc/self/mem", O_RDONLY | O_CLOEXEC); mem >= 0) {
      CHECK(goro::io::read_at(mem, buf, sizeof buf, 0, ec) == 0);
      CHECK(ec == std::errc::io_error);
      ::close(mem);
    }
    // And a good read clears ec.
    CHECK(goro::io::read_at(file.fd, buf, sizeof buf, 0, ec) == sizeof buf);
    CHECK_FALSE(ec);
  };
  goro_test::run_in_goro(GORO_WORKERS(), check_errors);
  check_errors();  // plain thread: pread itself
  ::close(fds[0]);
  ::close(fds[1]);
  ::close(dir);
}

TEST_CASE("many fibers read_at one file at once, each its own range", "[io][read_at]") {
  temp_file file(512 * 1024);
  goro_test::run_in_goro(GORO_WORKERS(), [&] {
    constexpr int readers = 64;
    constexpr std::size_t piece = 8 * 1024;
    std::atomic<int> correct{0};
    goro::wait_group wg;
    wg.add(readers);
    for (int r = 0; r < readers; ++r) {
      goro::spawn([&, r] {
        std::vector<char> buf(piece);
        const std::uint64_t offset = static_cast<std::uint64_t>(r) * piece;
        std::size_t done = 0;
        std::error_code ec;
        while (done < piece) {
          std::size_t n = goro::io::read_at(file.fd, buf.data() + done, piece - done, offset + done, ec);
          if (ec || n == 0) break;
          done += n;
        }
        if (done == piece && std::memcmp(buf.data(), file.content.data() + offset, piece) == 0) ++correct;
        wg.done();
      });
    }
    wg.wait();
    CHECK(correct.load() == readers);
  });
}
