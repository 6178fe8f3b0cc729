// StreamPump and PumpedListener: what the scheduler's notifications run, on which thread, and
// never after a detach.
#include "server/stream_pump.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace mpigate::server {
namespace {

// Records which thread ran it; may hold the pump's thread until released.
class Recorder final : public StreamPump::Pumpable {
 public:
  explicit Recorder(std::string name, std::vector<std::string>& log, absl::Mutex& mu)
      : name_(std::move(name)), log_(log), mu_(mu) {}

  void Pump() override {
    thread_ = std::this_thread::get_id();
    ran_.Notify();
    release_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    log_.push_back(name_);
  }

  std::thread::id thread_;
  absl::Notification ran_;
  absl::Notification release_;

 private:
  const std::string name_;
  std::vector<std::string>& log_;
  absl::Mutex& mu_;
};

// Runs on the pump after everything posted before it: a barrier for the tests.
class Marker final : public StreamPump::Pumpable {
 public:
  void Pump() override { done.Notify(); }
  absl::Notification done;
};

TEST(StreamPumpTest, RunsWhatIsPostedOnItsOwnThreadInOrder) {
  absl::Mutex mu;
  std::vector<std::string> log;
  auto first = std::make_shared<Recorder>("first", log, mu);
  auto second = std::make_shared<Recorder>("second", log, mu);
  StreamPump pump;
  // Post returns while the first is still held on the pump's thread: it never runs inline.
  pump.Post(first);
  pump.Post(second);
  auto marker = std::make_shared<Marker>();
  pump.Post(marker);
  first->ran_.WaitForNotification();
  EXPECT_NE(first->thread_, std::this_thread::get_id());
  EXPECT_FALSE(second->ran_.HasBeenNotified());
  first->release_.Notify();
  second->release_.Notify();
  second->ran_.WaitForNotification();
  EXPECT_EQ(second->thread_, first->thread_);
  // The pump holds a pumpable until its Pump() has returned, and no longer.
  marker->done.WaitForNotification();
  EXPECT_EQ(second.use_count(), 1);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(log, (std::vector<std::string>{"first", "second"}));
}

// A listener's target: counts its calls and the threads they came on.
struct Target {
  void OnSessionEvents() {
    absl::MutexLock lock(&mu);
    threads.push_back(std::this_thread::get_id());
  }
  absl::Mutex mu;
  std::vector<std::thread::id> threads ABSL_GUARDED_BY(mu);
};

TEST(PumpedListenerTest, CallsItsTargetOnThePumpsThreadUntilDetached) {
  StreamPump pump;
  Target target;
  auto listener = std::make_shared<PumpedListener<Target>>(pump, &target);
  SessionListener& as_listener = *listener;
  as_listener.OnSessionEvents();
  auto marker = std::make_shared<Marker>();
  pump.Post(marker);
  marker->done.WaitForNotification();
  {
    absl::MutexLock lock(&target.mu);
    ASSERT_EQ(target.threads.size(), 1u);
    EXPECT_NE(target.threads[0], std::this_thread::get_id());
  }
  listener->Detach();
  as_listener.OnSessionEvents();
  auto after_detach = std::make_shared<Marker>();
  pump.Post(after_detach);
  after_detach->done.WaitForNotification();
  absl::MutexLock lock(&target.mu);
  EXPECT_EQ(target.threads.size(), 1u);
}

}  // namespace
}  // namespace mpigate::server
