// SPDX-License-Identifier: MIT
// Publish/subscribe on a bounded goro::worker_pool: each delivery (one event to one
// handler) is a pool task, so a full queue makes publish() time out and say so, a
// throwing handler is counted without touching the others, and stop() drains within a deadline.
#include <goro/goro.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;

struct event {
  std::string topic;
  std::string payload;
};

// A handler gets the delivery's context: it ends when the bus stops (past its
// drain deadline), so a slow handler can give up early.
using handler = std::function<void(goro::context, const event&)>;

class event_bus {
 public:
  struct publish_report {
    std::size_t delivered = 0;   // handlers the event was queued for
    std::size_t queue_full = 0;  // handlers it could not reach within the timeout
    std::size_t stopped = 0;     // handlers not reached because the bus is stopping
  };

  event_bus(std::size_t workers, std::size_t queue)
      : pool_({.workers = workers, .queue_capacity = queue, .name = "event-bus"},
              [](const goro::context& ctx, delivery d) { (*d.fn)(ctx, *d.ev); },
              [](goro::result<void> r) { report_failure(r); }) {}

  void subscribe(const std::string& topic, handler fn) {
    std::lock_guard lock(mu_);
    subscribers_[topic].push_back(std::make_shared<const handler>(std::move(fn)));
  }

  // publish() queues the event for every subscriber of its topic, waiting at
  // most `timeout` (in all) for room in the pool's queue.
  publish_report publish(const std::string& topic, std::string payload, std::chrono::milliseconds timeout) {
    std::vector<std::shared_ptr<const handler>> targets;
    {
      std::lock_guard lock(mu_);
      if (auto it = subscribers_.find(topic); it != subscribers_.end()) targets = it->second;
    }
    auto ev = std::make_shared<const event>(event{topic, std::move(payload)});
    auto [ctx, cancel] = goro::with_timeout(goro::background(), timeout);
    publish_report report;
    for (auto& fn : targets) {
      switch (pool_.submit(ctx, delivery{fn, ev})) {
        case goro::submit_status::accepted: ++report.delivered; break;
        case goro::submit_status::canceled: ++report.queue_full; break;  // the timeout passed first
        default: ++report.stopped; break;
      }
    }
    cancel();
    return report;
  }

  // stop() refuses new events, lets queued deliveries run until `drain`, then
  // cancels the rest; it returns once every worker fiber has ended.
  goro::pool_stats stop(std::chrono::milliseconds drain) { return pool_.shutdown(drain); }

  // flush() waits until every delivery queued so far has run.
  void flush() { pool_.wait(); }

 private:
  struct delivery {
    std::shared_ptr<const handler> fn;
    std::shared_ptr<const event> ev;
  };

  // Runs on a worker after each delivery. Cancelled deliveries (by stop())
  // are only counted; a handler's own exception is reported here.
  static void report_failure(const goro::result<void>& r) {
    if (r.ok()) return;
    try {
      r.value();
    } catch (const std::system_error& e) {
      if (e.code().category() != goro::context_category()) std::printf("  [bus] a handler failed: %s\n", e.what());
    } catch (const std::exception& e) {
      std::printf("  [bus] a handler failed: %s\n", e.what());
    }
  }

  std::mutex mu_;  // guards subscribers_; never held across a fiber switch
  std::map<std::string, std::vector<std::shared_ptr<const handler>>> subscribers_;
  goro::worker_pool<delivery, void> pool_;  // last: destroyed (shut down) first
};

int main() {
  goro::pool_stats stats;
  std::size_t queue_full = 0;
  goro::run([&] {
    event_bus bus(/*workers=*/2, /*queue=*/4);
    std::atomic<int> audited{0};
    bus.subscribe("order", [&](goro::context, const event&) { ++audited; });
    bus.subscribe("order", [](goro::context, const event& e) {
      if (e.payload.find("amount=-") != std::string::npos)
        throw std::invalid_argument("billing rejects " + e.payload);
    });
    bus.subscribe("order", [](goro::context, const event& e) { std::printf("  shipping %s\n", e.payload.c_str()); });
    bus.subscribe("report", [](goro::context ctx, const event& e) {
      if (goro::this_fiber::sleep_for(ctx, 150ms))  // slow work that watches its context
        std::printf("  %s cut short by stop()\n", e.payload.c_str());
      else
        std::printf("  %s written\n", e.payload.c_str());
    });

    std::printf("orders (one has a bad amount; billing throws, the others are unaffected):\n");
    for (int i = 1; i <= 4; ++i) {
      std::string payload = "order-" + std::to_string(i) + (i == 3 ? " amount=-5" : " amount=10");
      bus.publish("order", payload, 100ms);
    }
    bus.flush();

    std::printf("a burst of slow reports into a 2-worker, 4-slot bus (20 ms publish timeout):\n");
    for (int i = 1; i <= 8; ++i) {
      auto r = bus.publish("report", "report-" + std::to_string(i), 20ms);
      if (r.queue_full > 0) {
        ++queue_full;
        std::printf("  report-%d: queue full, not delivered\n", i);
      }
    }

    std::printf("stopping with a 250 ms drain deadline:\n");
    stats = bus.stop(250ms);
    std::printf("audited %d order(s)\n", audited.load());
  });

  std::printf("\nbus stats: completed=%llu failed=%llu cancelled=%llu timed_out=%llu (queue full %zu time(s))\n",
              static_cast<unsigned long long>(stats.completed), static_cast<unsigned long long>(stats.failed),
              static_cast<unsigned long long>(stats.cancelled), static_cast<unsigned long long>(stats.timed_out),
              queue_full);
  std::printf("live fibers: %zu\n", goro::live_fibers());
  return goro::live_fibers() == 0 && stats.failed == 1 ? 0 : 1;
}
