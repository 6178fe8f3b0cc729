#include "tests/fake_gateway.h"

#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mpigate::testing {

// How long AwaitRequests() waits; reached only when the client does not send what it should.
constexpr absl::Duration kPatience = absl::Seconds(30);

struct FakeGateway::Call {
  absl::Mutex mu;
  std::deque<v1::SessionEvent> events ABSL_GUARDED_BY(mu);
  // Set by End(): the call ends once `events` are read.
  bool ending ABSL_GUARDED_BY(mu) = false;
  // The call is over: reads and writes fail.
  bool over ABSL_GUARDED_BY(mu) = false;
  bool break_on_write ABSL_GUARDED_BY(mu) = false;
  absl::Status status ABSL_GUARDED_BY(mu);

  void EndLocked(absl::Status end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (over) return;
    over = true;
    status = std::move(end);
    events.clear();
  }
};

namespace {

class FakeStream final : public internal::SessionStream {
 public:
  FakeStream(std::shared_ptr<FakeGateway::Call> call,
             std::function<void(const v1::SessionRequest&)> on_write)
      : call_(std::move(call)), on_write_(std::move(on_write)) {}

  bool Write(const v1::SessionRequest& request) override {
    {
      absl::MutexLock lock(&call_->mu);
      if (call_->over) return false;
      if (call_->break_on_write) {
        call_->EndLocked(absl::UnavailableError("the fake broke the stream on a write"));
        return false;
      }
    }
    on_write_(request);
    return true;
  }

  bool Read(v1::SessionEvent* event) override {
    absl::MutexLock lock(&call_->mu);
    FakeGateway::Call& call = *call_;
    auto readable = [&call]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(call.mu) {
      return call.over || !call.events.empty() || call.ending;
    };
    call_->mu.Await(absl::Condition(&readable));
    if (call_->over) return false;
    if (call_->events.empty()) {
      // End(): everything queued before it has been read.
      call_->over = true;
      return false;
    }
    *event = std::move(call_->events.front());
    call_->events.pop_front();
    return true;
  }

  void Cancel() override {
    absl::MutexLock lock(&call_->mu);
    call_->EndLocked(absl::CancelledError("cancelled by the client"));
  }

  absl::Status Finish() override {
    absl::MutexLock lock(&call_->mu);
    return call_->status;
  }

 private:
  const std::shared_ptr<FakeGateway::Call> call_;
  const std::function<void(const v1::SessionRequest&)> on_write_;
};

}  // namespace

v1::SessionEvent Opened(const std::string& resume_token, uint64_t resume_grace_ms) {
  v1::SessionEvent event;
  v1::SessionOpened& opened = *event.mutable_opened();
  opened.set_session_id(1);
  opened.set_workers(2);
  opened.mutable_pool()->set_state(v1::POOL_STATE_READY);
  opened.mutable_pool()->set_workers(2);
  opened.set_resume_token(resume_token);
  opened.set_resume_grace_ms(resume_grace_ms);
  return event;
}

FakeGateway::FakeGateway(OnOpen on_open)
    : on_open_(on_open != nullptr
                   ? std::move(on_open)
                   : [](const v1::OpenSession&) -> OnOpenResult { return Opened(); }) {}

FakeGateway::~FakeGateway() {
  absl::MutexLock lock(&mu_);
  if (current_ != nullptr) {
    absl::MutexLock call_lock(&current_->mu);
    current_->EndLocked(absl::UnavailableError("the fake gateway is gone"));
  }
}

void FakeGateway::Send(v1::SessionEvent event) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock call_lock(&current_->mu);
  current_->events.push_back(std::move(event));
}

void FakeGateway::End(absl::Status status) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock call_lock(&current_->mu);
  current_->ending = true;
  current_->status = std::move(status);
}

void FakeGateway::Break(absl::Status status) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock call_lock(&current_->mu);
  current_->EndLocked(std::move(status));
}

void FakeGateway::BreakOnNextWrite() {
  absl::MutexLock lock(&mu_);
  absl::MutexLock call_lock(&current_->mu);
  current_->break_on_write = true;
}

std::vector<v1::SessionRequest> FakeGateway::AwaitRequests(v1::SessionRequest::RequestCase kind,
                                                           size_t count) {
  {
    absl::MutexLock lock(&mu_);
    auto enough = [this, kind, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t found = 0;
      for (const v1::SessionRequest& request : requests_) found += request.request_case() == kind;
      return found >= count;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kPatience);
  }
  return Requests(kind);
}

std::vector<v1::SessionRequest> FakeGateway::AwaitTasks(size_t count) {
  {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t tasks = 0;
      for (const v1::SessionRequest& request : requests_) {
        if (request.has_submit()) tasks += request.submit().tasks_size();
      }
      return tasks >= count;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kPatience);
  }
  return Requests(v1::SessionRequest::kSubmit);
}

std::vector<v1::SessionRequest> FakeGateway::Requests(v1::SessionRequest::RequestCase kind) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::SessionRequest> those;
  for (const v1::SessionRequest& request : requests_) {
    if (request.request_case() == kind) those.push_back(request);
  }
  return those;
}

std::vector<std::thread::id> FakeGateway::WritingThreads(
    v1::SessionRequest::RequestCase kind) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::thread::id> those;
  for (size_t i = 0; i < requests_.size(); ++i) {
    if (requests_[i].request_case() == kind) those.push_back(writing_threads_[i]);
  }
  return those;
}

size_t FakeGateway::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

std::unique_ptr<internal::SessionStream> FakeGateway::StartSession(bool /*wait_for_ready*/) {
  auto call = std::make_shared<Call>();
  {
    absl::MutexLock lock(&mu_);
    current_ = call;
    ++calls_;
  }
  // The stream owns the call and the function: `raw` lives as long as the function.
  Call* raw = call.get();
  return std::make_unique<FakeStream>(std::move(call),
                                      [this, raw](const v1::SessionRequest& request) {
                                        Record(request);
                                        if (request.request_case() != v1::SessionRequest::kOpen)
                                          return;
                                        OnOpenResult answer = on_open_(request.open());
                                        absl::MutexLock call_lock(&raw->mu);
                                        if (!answer.ok()) {
                                          raw->EndLocked(answer.status());
                                        } else if (answer->has_value()) {
                                          raw->events.push_front(**std::move(answer));
                                        }
                                      });
}

absl::StatusOr<std::vector<FunctionInfo>> FakeGateway::ListFunctions(absl::Duration) {
  return absl::UnimplementedError("the fake gateway lists no functions");
}

void FakeGateway::Record(const v1::SessionRequest& request) {
  absl::MutexLock lock(&mu_);
  requests_.push_back(request);
  writing_threads_.push_back(std::this_thread::get_id());
}

}  // namespace mpigate::testing
