// RawSession: drives a Session stream with the generated stub alone, as a client in another
// language would, for end-to-end tests of the wire protocol. Test-only; one thread per session.
#ifndef MPIGATE_TESTS_RAW_SESSION_H_
#define MPIGATE_TESTS_RAW_SESSION_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"

namespace mpigate::testing {

// Opens the session on construction (`open`, then expects `opened`).
class RawSession {
 public:
  // `deadline` bounds the whole session, so that a test waiting for an outcome that never comes
  // fails instead of hanging.
  explicit RawSession(v1::Gateway::Stub& stub, absl::Duration deadline = absl::InfiniteDuration())
      : RawSession(stub, NamedRaw(), deadline) {}

  // Opens (or, with a resume token, resumes) the session with `open`.
  RawSession(v1::Gateway::Stub& stub, const v1::OpenSession& open,
             absl::Duration deadline = absl::InfiniteDuration())
      : stream_(OpenStream(stub, context_, deadline)) {
    v1::SessionRequest request;
    *request.mutable_open() = open;
    EXPECT_TRUE(stream_->Write(request));
    v1::SessionEvent event;
    EXPECT_TRUE(stream_->Read(&event));
    EXPECT_TRUE(event.has_opened());
    opened_ = event.opened();
  }

  // A session not read to its end goes away as a vanishing client does: its call is cancelled.
  ~RawSession() {
    if (!finished_) context_.TryCancel();
  }

  const v1::SessionOpened& opened() const { return opened_; }

  void Submit(uint64_t id, const std::string& function, const std::string& payload) {
    v1::SessionRequest request;
    v1::TaskSpec& task = *request.mutable_submit()->add_tasks();
    task.set_task_id(id);
    task.set_function(function);
    task.set_payload(payload);
    EXPECT_TRUE(stream_->Write(request));
  }

  void Send(const v1::SessionRequest& request) { EXPECT_TRUE(stream_->Write(request)); }

  // The next reply to a request: updates met on the way are kept, pool state changes skipped.
  v1::SessionEvent NextReply() {
    v1::SessionEvent event;
    while (stream_->Read(&event)) {
      if (event.has_pool()) continue;
      if (!event.has_updates()) return event;
      Keep(event);
    }
    return v1::SessionEvent();
  }

  // Reads until `closed`, keeping every outcome; returns the stream's final status.
  grpc::Status ReadToEnd() {
    v1::SessionEvent event;
    while (stream_->Read(&event)) {
      if (event.has_closed()) closed_ = true;
      Keep(event);
    }
    finished_ = true;
    return stream_->Finish();
  }

  // Reads until the pool reaches `state`, keeping outcomes met on the way. False if the stream
  // ends first.
  bool AwaitPoolState(v1::PoolState state) {
    v1::SessionEvent event;
    while (stream_->Read(&event)) {
      if (event.has_pool() && event.pool().state() == state) return true;
      Keep(event);
    }
    return false;
  }

  // Reads until an update says task `id` has started; false if the stream ends first.
  bool AwaitStarted(uint64_t id) {
    v1::SessionEvent event;
    while (started_.count(id) == 0 && stream_->Read(&event)) Keep(event);
    return started_.count(id) > 0;
  }

  // Reads until an update carries progress of task `id` and returns it; nullopt if the task's
  // outcome or the end of the stream comes first.
  std::optional<v1::TaskProgress> AwaitProgress(uint64_t id) {
    v1::SessionEvent event;
    while (outcomes_.count(id) == 0 && stream_->Read(&event)) {
      Keep(event);
      for (const v1::TaskProgress& progress : event.updates().progress()) {
        if (progress.task_id() == id && outcomes_.count(id) == 0) return progress;
      }
    }
    return std::nullopt;
  }

  // Reads until outcomes of `count` tasks have arrived; false if the stream ends first.
  bool AwaitOutcomes(size_t count) {
    v1::SessionEvent event;
    while (outcomes_.size() < count && stream_->Read(&event)) Keep(event);
    return outcomes_.size() >= count;
  }

  const std::map<uint64_t, v1::TaskOutcome>& outcomes() const { return outcomes_; }
  bool closed() const { return closed_; }
  int duplicate_outcomes() const { return duplicates_; }

 private:
  static std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>> OpenStream(
      v1::Gateway::Stub& stub, grpc::ClientContext& context, absl::Duration deadline) {
    if (deadline != absl::InfiniteDuration()) {
      context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    }
    return stub.Session(&context);
  }

  static v1::OpenSession NamedRaw() {
    v1::OpenSession open;
    open.set_client_name("raw");
    return open;
  }

  void Keep(const v1::SessionEvent& event) {
    started_.insert(event.updates().started().begin(), event.updates().started().end());
    for (const v1::TaskOutcome& outcome : event.updates().outcomes()) {
      if (!outcomes_.emplace(outcome.task_id(), outcome).second) ++duplicates_;
    }
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>> stream_;
  v1::SessionOpened opened_;
  std::map<uint64_t, v1::TaskOutcome> outcomes_;
  std::set<uint64_t> started_;
  bool closed_ = false;
  bool finished_ = false;
  int duplicates_ = 0;
};

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_RAW_SESSION_H_
