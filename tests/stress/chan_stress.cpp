// SPDX-License-Identifier: MIT
// Randomised channel traffic (send, recv, try ops, select, close) from many fibers and two plain threads; checks conservation and per-sender FIFO.
#include "goro_test.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Every value carries who sent it, on which channel generation, and the
// sender's sequence number (fresh for every send attempt).
struct tag {
  std::uint32_t actor;
  std::uint32_t gen;
  std::uint32_t seq;
};
std::uint64_t encode(tag t) {
  return (static_cast<std::uint64_t>(t.actor) << 56) | (static_cast<std::uint64_t>(t.gen & 0xFFFFFF) << 32) | t.seq;
}
tag decode(std::uint64_t v) {
  return tag{static_cast<std::uint32_t>(v >> 56), static_cast<std::uint32_t>((v >> 32) & 0xFFFFFF),
             static_cast<std::uint32_t>(v & 0xFFFFFFFF)};
}

// The element types under test: a plain integer, and a move-only heap value
// (a lost or duplicated move shows as a null pointer, a leak under ASan).
template <class V>
struct codec;
template <>
struct codec<std::uint64_t> {
  static std::uint64_t make(std::uint64_t x) { return x; }
  static std::optional<std::uint64_t> read(const std::uint64_t& v) { return v; }
};
template <>
struct codec<std::unique_ptr<std::uint64_t>> {
  static std::unique_ptr<std::uint64_t> make(std::uint64_t x) { return std::make_unique<std::uint64_t>(x); }
  static std::optional<std::uint64_t> read(const std::unique_ptr<std::uint64_t>& v) {
    if (!v) return std::nullopt;
    return *v;
  }
};

struct stats {
  std::atomic<long> sent{0}, send_closed{0}, try_would_block{0}, received{0}, recv_closed{0}, selects{0},
      select_default{0}, select_timeout{0}, closes{0}, close_races{0};
};

template <class V>
class world {
 public:
  static constexpr int slots = 6;
  static constexpr std::array<std::size_t, slots> capacities{0, 0, 1, 2, 8, 32};

  world(int actors, std::uint32_t max_seq)
      : max_seq_(max_seq), sent_(static_cast<std::size_t>(actors)), received_(static_cast<std::size_t>(actors)) {
    for (int a = 0; a < actors; ++a) {
      sent_[static_cast<std::size_t>(a)].assign(max_seq, 0);
      received_[static_cast<std::size_t>(a)] = std::make_unique<std::atomic<std::uint8_t>[]>(max_seq);
    }
    for (int s = 0; s < slots; ++s) replace_locked(s);
  }

  struct handle {
    goro::chan<V> ch;
    std::uint32_t gen;
  };

  handle pick(std::uint32_t r) {
    std::lock_guard lock(mu_);
    int s = static_cast<int>(r % slots);
    return {current_[static_cast<std::size_t>(s)], gen_[static_cast<std::size_t>(s)]};
  }

  // Closes slot s's channel (if it is still the current one) and puts a
  // fresh channel of the same capacity in its place.
  void close_and_replace(int s, stats& st) {
    goro::chan<V> old;
    {
      std::lock_guard lock(mu_);
      old = current_[static_cast<std::size_t>(s)];
      replace_locked(s);
    }
    try {
      old.close();
      st.closes++;
    } catch (const goro::channel_closed&) {
      st.close_races++;  // cannot happen: each generation is closed once, here
    }
  }

  // Records a received value that came from generation `gen`.
  void record(const std::optional<std::uint64_t>& raw, std::uint32_t gen,
              std::unordered_map<std::uint64_t, std::uint32_t>& last_seq) {
    if (!raw) {
      misdelivered++;
      return;
    }
    tag t = decode(*raw);
    if (t.actor >= received_.size() || t.seq >= max_seq_ || t.gen != (gen & 0xFFFFFF)) {
      misdelivered++;
      return;
    }
    received_[t.actor][t.seq].fetch_add(1, std::memory_order_relaxed);
    // FIFO: from one sender on one channel, a receiver sees rising seqs.
    std::uint64_t key = (static_cast<std::uint64_t>(t.actor) << 32) | t.gen;
    auto [it, fresh] = last_seq.try_emplace(key, t.seq);
    if (!fresh) {
      if (t.seq <= it->second) fifo_violations++;
      it->second = t.seq;
    }
  }

  void mark_sent(std::uint32_t actor, std::uint32_t seq) { sent_[actor][seq] = 1; }

  // After every actor is done: close what is open and drain every
  // generation that ever existed.
  void drain_all(stats& st) {
    std::vector<goro::chan<V>> all;
    std::vector<std::uint32_t> gens;
    {
      std::lock_guard lock(mu_);
      for (auto& c : current_) {
        try {
          c.close();
        } catch (const goro::channel_closed&) {
          st.close_races++;
        }
      }
      all = all_;
      gens = gen_of_;
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
      std::unordered_map<std::uint64_t, std::uint32_t> last_seq;
      for (auto& v : all[i]) record(codec<V>::read(v), gens[i], last_seq);
    }
  }

  // Values received not exactly once when sent, or received though never sent.
  long conservation_errors(const std::vector<std::uint32_t>& seqs_used) const {
    long errors = 0;
    for (std::size_t a = 0; a < sent_.size(); ++a)
      for (std::uint32_t s = 0; s < max_seq_; ++s) {
        int want = s < seqs_used[a] && sent_[a][s] != 0 ? 1 : 0;
        if (received_[a][s].load() != want) ++errors;
      }
    return errors;
  }

  std::atomic<long> misdelivered{0}, fifo_violations{0};
  std::atomic<std::uint32_t> next_gen{0};

 private:
  void replace_locked(int s) {
    auto i = static_cast<std::size_t>(s);
    current_[i] = goro::chan<V>{capacities[i]};
    gen_[i] = next_gen.fetch_add(1);
    all_.push_back(current_[i]);
    gen_of_.push_back(gen_[i]);
  }

  const std::uint32_t max_seq_;
  goro::mutex mu_;  // fibers and plain threads alike
  std::array<goro::chan<V>, slots> current_;
  std::array<std::uint32_t, slots> gen_{};
  std::vector<goro::chan<V>> all_;
  std::vector<std::uint32_t> gen_of_;
  std::vector<std::vector<std::uint8_t>> sent_;  // [actor][seq]: written by that actor only
  std::vector<std::unique_ptr<std::atomic<std::uint8_t>[]>> received_;  // [actor][seq]
};

// One actor (fiber or plain thread): `ops` random operations.
template <class V>
std::uint32_t act(world<V>& w, stats& st, std::uint32_t id, long ops, unsigned seed) {
  std::minstd_rand rng(seed);
  std::uint32_t seq = 0;
  std::unordered_map<std::uint64_t, std::uint32_t> last_seq;
  auto value = [&](std::uint32_t gen, std::uint32_t s) { return codec<V>::make(encode(tag{id, gen, s})); };
  auto receiver = [&](std::uint32_t gen) {
    return [&w, &st, &last_seq, gen](std::optional<V> v) {
      if (v) {
        st.received++;
        w.record(codec<V>::read(*v), gen, last_seq);
      } else {
        st.recv_closed++;
      }
    };
  };
  auto sender = [&](std::uint32_t s) {
    return [&w, &st, id, s] {
      w.mark_sent(id, s);
      st.sent++;
    };
  };
  for (long i = 0; i < ops; ++i) {
    std::uint32_t op = rng() % 100;
    auto h1 = w.pick(rng());
    try {
      if (op < 18) {  // blocking send
        std::uint32_t s = seq++;
        h1.ch.send(value(h1.gen, s));
        sender(s)();
      } else if (op < 36) {  // blocking receive
        receiver(h1.gen)(h1.ch.recv());
      } else if (op < 50) {  // try_send
        std::uint32_t s = seq++;
        V v = value(h1.gen, s);
        switch (h1.ch.try_send(std::move(v))) {
          case goro::chan_op::ok: sender(s)(); break;
          case goro::chan_op::closed: st.send_closed++; break;
          default: st.try_would_block++; break;  // would_block (canceled needs a context)
        }
      } else if (op < 64) {  // try_recv
        auto r = h1.ch.try_recv();
        if (r.status == goro::chan_op::ok) receiver(h1.gen)(std::move(r.value));
        else if (r.status == goro::chan_op::closed) st.recv_closed++;
        else st.try_would_block++;
      } else if (op < 98) {  // select, in one of several shapes
        st.selects++;
        auto h2 = w.pick(rng());
        auto h3 = w.pick(rng());
        auto on_default = [&] { st.select_default++; };
        auto on_timeout = [&] { st.select_timeout++; };
        std::uint32_t s1 = seq++, s2 = seq++;
        switch (rng() % 5) {
          case 0:
            goro::select(goro::on_send(h1.ch, value(h1.gen, s1), sender(s1)), goro::on_recv(h2.ch, receiver(h2.gen)));
            break;
          case 1:
            goro::select(goro::on_recv(h1.ch, receiver(h1.gen)), goro::on_recv(h2.ch, receiver(h2.gen)),
                         goro::on_default(on_default));
            break;
          case 2:
            goro::select(goro::on_send(h1.ch, value(h1.gen, s1), sender(s1)),
                         goro::on_send(h2.ch, value(h2.gen, s2), sender(s2)),
                         goro::on_timeout(std::chrono::microseconds(rng() % 500), on_timeout));
            break;
          case 3:
            goro::select(goro::on_recv(h1.ch, receiver(h1.gen)), goro::on_send(h2.ch, value(h2.gen, s2), sender(s2)),
                         goro::on_recv(h3.ch, receiver(h3.gen)), goro::on_timeout(1ms, on_timeout));
            break;
          default:
            goro::select(goro::on_send(h3.ch, value(h3.gen, s1), sender(s1)), goro::on_default(on_default));
            break;
        }
      } else {  // close
        w.close_and_replace(static_cast<int>(rng() % world<V>::slots), st);
      }
    } catch (const goro::channel_closed&) {
      st.send_closed++;
    }
  }
  return seq;
}

template <class V>
void run_stress(unsigned workers) {
  constexpr int fiber_actors = 16, thread_actors = 2;
  constexpr int actors = fiber_actors + thread_actors;
  const long ops = goro_test::scaled(12'000, 500);
  const auto max_seq = static_cast<std::uint32_t>(2 * ops + 2);
  world<V> w(actors, max_seq);
  stats st;
  std::vector<std::uint32_t> seqs_used(actors, 0);

  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> all_done{0};
    goro::wait_group finished;
    finished.add(actors);
    std::atomic<int> remaining{actors};
    auto actor_done = [&] {
      if (remaining.fetch_sub(1) == 1) all_done.close();
      finished.done();
    };
    // The closer: a blocked operation waits at most until its channel is
    // closed, so everyone finishes. It closes a slot every 250 microseconds.
    goro::wait_group closer_done;
    closer_done.add(1);
    goro::spawn({.name = "closer"}, [&] {
      goro::ticker tick(250us);
      std::minstd_rand rng(99);
      while (goro::select(goro::on_recv(tick.channel()), goro::on_recv(all_done)) == 0)
        w.close_and_replace(static_cast<int>(rng() % world<V>::slots), st);
      closer_done.done();
    });
    for (int a = 0; a < fiber_actors; ++a)
      goro::spawn({.name = "actor"}, [&, a] {
        seqs_used[static_cast<std::size_t>(a)] = act(w, st, static_cast<std::uint32_t>(a), ops, 1000u + static_cast<unsigned>(a));
        actor_done();
      });
    std::vector<std::thread> threads;
    for (int a = fiber_actors; a < actors; ++a)
      threads.emplace_back([&, a] {
        seqs_used[static_cast<std::size_t>(a)] = act(w, st, static_cast<std::uint32_t>(a), ops, 1000u + static_cast<unsigned>(a));
        actor_done();
      });
    finished.wait();
    closer_done.wait();
    for (auto& t : threads) t.join();
    w.drain_all(st);
  });

  INFO("sent " << st.sent << ", send on closed " << st.send_closed << ", would block " << st.try_would_block
               << ", received " << st.received << ", receive saw closed " << st.recv_closed << ", selects " << st.selects
               << " (default " << st.select_default << ", timeout " << st.select_timeout << "), closes " << st.closes);
  CHECK(w.misdelivered.load() == 0);
  CHECK(w.fifo_violations.load() == 0);
  CHECK(st.close_races.load() == 0);
  CHECK(w.conservation_errors(seqs_used) == 0);
  // The mix really happened.
  CHECK(st.sent.load() > 0);
  CHECK(st.received.load() > 0);
  CHECK(st.send_closed.load() > 0);
  CHECK(st.recv_closed.load() > 0);
  CHECK(st.closes.load() > 0);
  CHECK(st.select_default.load() > 0);
}

}  // namespace

TEST_CASE("random channel traffic between fibers and threads conserves values, in order per sender") {
  unsigned workers = GORO_WORKERS();
  SECTION("integers") { run_stress<std::uint64_t>(workers); }
  SECTION("move-only heap values") { run_stress<std::unique_ptr<std::uint64_t>>(workers); }
}
