#include "server/session_reactor.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "server/message_bytes.h"

namespace mpigate::server {
namespace {

// Outcomes are packed into one SessionEvent until it holds about this many bytes, so that a
// burst of small outcomes costs one write while large results still travel one per message.
constexpr size_t kEventSoftLimitBytes = 1 << 20;

// A session stream stops reading requests while this many events wait to be written, and reads
// again once its client has taken some: a client that sends but never reads would otherwise make
// the replies to its requests (rejections, cancel results) pile up here without bound. gRPC's flow
// control then holds the client's further requests back.
constexpr size_t kMaxUnwrittenEvents = 16;

// Packs `events` into `updates` events: the started ids and progress go into the first, before
// any outcome, so that a client always learns of a start no later than of the end.
void AppendUpdates(SessionEvents& events, std::deque<v1::SessionEvent>& out) {
  v1::TaskUpdates* updates = nullptr;
  size_t bytes = 0;
  if (!events.started.empty() || !events.progress.empty()) {
    updates = out.emplace_back().mutable_updates();
    updates->mutable_started()->Add(events.started.begin(), events.started.end());
    for (v1::TaskProgress& progress : events.progress) {
      *updates->add_progress() = std::move(progress);
    }
    bytes = updates->ByteSizeLong();
  }
  for (v1::TaskOutcome& outcome : events.outcomes) {
    const size_t size = outcome.ByteSizeLong();
    if (updates == nullptr || (bytes > 0 && bytes + size > kEventSoftLimitBytes)) {
      updates = out.emplace_back().mutable_updates();
      bytes = 0;
    }
    bytes += size;
    *updates->add_outcomes() = std::move(outcome);
  }
}

// One Session stream. Reads are handled one at a time on gRPC threads; writes are driven both by
// reads (replies) and by the scheduler's notifications (outcomes, on the pump's thread), with one
// write in flight.
//
// Every outcome collected from the scheduler goes back to it (Scheduler::Retain) once its write
// has completed, or when it is dropped unwritten because the stream is ending, so that the
// session keeps it until the client acknowledges it. A stream that ends without `closed` detaches
// its session, which a new stream may resume; one the service ends with an error abandons it.
//
// Messages travel as bytes, parsed and serialized here as gRPC would: typed, a request that does
// not parse would end the reads as a half-close does, and the client would wait for outcomes of
// tasks it believes were sent. Here it is a bad request like any other.
class SessionReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  SessionReactor(Scheduler& scheduler, StreamPump& pump, const std::string& shared_memory_domain)
      : scheduler_(scheduler),
        shared_memory_domain_(shared_memory_domain),
        relay_(std::make_shared<PumpedListener<SessionReactor>>(pump, this)) {
    StartRead(&request_bytes_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client half-closed, or the stream broke: the server cannot always tell which, so this
      // is not a shutdown (a broken stream's session waits to be resumed). Outcomes still flow.
      if (!Session().has_value()) RequestFinish(grpc::Status::OK);
      MaybeWrite();
      return;
    }
    absl::Status status = ParseRequest(request_bytes_, request_);
    if (status.ok()) status = Handle(request_);
    if (!status.ok()) {
      {
        absl::MutexLock lock(&mu_);
        abandon_on_done_ = true;
      }
      RequestFinish(ToGrpcStatus(status));
      MaybeWrite();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (outgoing_.size() >= kMaxUnwrittenEvents) {
        // MaybeWrite reads on once the client has taken some.
        read_paused_ = true;
        return;
      }
    }
    StartRead(&request_bytes_);
  }

  void OnWriteDone(bool ok) override {
    // gRPC holds the bytes it sent no longer; a large result's are freed now, not at the next
    // write.
    writing_bytes_.Clear();
    // Whether or not the write got through, the session keeps its outcomes until the client
    // acknowledges them. Before write_in_flight_ is cleared: until then no other thread touches
    // writing_.
    std::optional<SessionId> session = Session();
    if (session.has_value() && writing_.has_updates()) {
      scheduler_.Retain(*session, *writing_.mutable_updates()->mutable_outcomes());
    }
    // Only once `closed` has gone out is the session forgotten; if it did not, OnDone detaches the
    // session and a resumed stream collects its tail and `closed` again.
    const bool closed_written = ok && session.has_value() && writing_.has_closed();
    if (closed_written) {
      scheduler_.ForgetClosed(*session);
      Log(LogLevel::kInfo, "session ", *session, " closed");
    }
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (closed_written) session_.reset();
    }
    if (!ok) RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
    MaybeWrite();
  }

  void OnCancel() override {
    // The client went away, its connection dropped, or its deadline passed; OnDone detaches the
    // session.
    RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the session"));
    MaybeWrite();
  }

  void OnDone() override {
    relay_->Detach();
    // A session whose `closed` was written is already gone. Otherwise the stream ended early: the
    // session waits for its client to resume it, unless the service ended the stream itself.
    std::optional<SessionId> session;
    bool abandon = false;
    {
      absl::MutexLock lock(&mu_);
      session = session_;
      abandon = abandon_on_done_;
    }
    if (session.has_value()) {
      if (abandon) {
        scheduler_.Abandon(*session);
        Log(LogLevel::kInfo, "session ", *session, " ended by the service: its tasks cancelled");
      } else if (scheduler_.resume_grace() == absl::ZeroDuration()) {
        scheduler_.Detach(*session);
        Log(LogLevel::kInfo, "session ", *session,
            " lost its stream before `closed`: its tasks cancelled (no resume grace period)");
      } else {
        scheduler_.Detach(*session);
        Log(LogLevel::kInfo, "session ", *session, " lost its stream before `closed`: kept for ",
            absl::FormatDuration(scheduler_.resume_grace()), " for its client to resume it");
      }
    }
    delete this;
  }

  // Called on the pump's thread (through the relay) when the scheduler has events for this
  // session.
  void OnSessionEvents() {
    {
      absl::MutexLock lock(&mu_);
      events_ready_ = true;
    }
    MaybeWrite();
  }

 private:
  std::optional<SessionId> Session() {
    absl::MutexLock lock(&mu_);
    return session_;
  }

  // Opens or resumes the session `open` asks for; the answer is `opened`.
  absl::StatusOr<v1::SessionEvent> Open(v1::OpenSession& open) {
    v1::SessionEvent event;
    v1::SessionOpened& opened = *event.mutable_opened();
    const SharedMemoryUse shared = {.enabled = !scheduler_.shared_memory_prefix().empty() &&
                                               !shared_memory_domain_.empty() &&
                                               open.shared_memory_domain() == shared_memory_domain_,
                                    .result_min_bytes = open.shared_result_min_bytes()};
    if (shared.enabled) opened.set_shared_memory_prefix(scheduler_.shared_memory_prefix());
    if (!open.resume_token().empty()) {
      absl::StatusOr<ResumedSession> resumed = scheduler_.Resume(
          open.resume_token(), relay_, open.acked_task_ids(), open.max_message_bytes(), shared);
      if (!resumed.ok()) return resumed.status();
      opened.set_session_id(resumed->id);
      opened.set_resumed(true);
      opened.set_last_task_id(resumed->last_task_id);
      opened.mutable_pending_task_ids()->Add(resumed->pending_task_ids.begin(),
                                             resumed->pending_task_ids.end());
      opened.set_resume_token(std::move(*open.mutable_resume_token()));
      Log(LogLevel::kInfo, "session ", resumed->id, " resumed by \"", open.client_name(), "\" (",
          resumed->pending_task_ids.size(), " tasks without an acknowledged outcome)");
    } else {
      absl::StatusOr<SessionId> id =
          scheduler_.OpenSession(open.client_name(), relay_, open.max_message_bytes(), shared,
                                 open.env(), open.max_running_tasks());
      if (!id.ok()) return id.status();
      absl::StatusOr<std::string> token = scheduler_.ResumeToken(*id);
      if (!token.ok()) return token.status();
      opened.set_session_id(*id);
      opened.set_resume_token(*std::move(token));
      Log(LogLevel::kInfo, "session ", *id, " opened by \"", open.client_name(), "\"");
    }
    opened.set_resume_grace_ms(
        static_cast<uint64_t>(absl::ToInt64Milliseconds(scheduler_.resume_grace())));
    opened.set_workers(static_cast<uint32_t>(scheduler_.workers()));
    opened.set_max_message_bytes(scheduler_.max_message_bytes());
    // Read after opening: a change in between is also sent as a `pool` event, never lost.
    *opened.mutable_pool() = scheduler_.PoolState();
    return event;
  }

  absl::Status Handle(v1::SessionRequest& request) {
    std::optional<SessionId> session = Session();
    if (request.request_case() == v1::SessionRequest::kOpen) {
      if (session.has_value()) return absl::InvalidArgumentError("the session is already open");
      absl::StatusOr<v1::SessionEvent> opened = Open(*request.mutable_open());
      if (!opened.ok()) return opened.status();
      absl::MutexLock lock(&mu_);
      session_ = opened->opened().session_id();
      // Ahead of any outcome: a resumed session's listener may already have been told.
      outgoing_.push_back(*std::move(opened));
    } else if (!session.has_value()) {
      return absl::InvalidArgumentError("the first message of a session must be `open`");
    }
    v1::SessionEvent reply;
    switch (request.request_case()) {
      case v1::SessionRequest::kOpen:
        break;
      case v1::SessionRequest::kSubmit: {
        absl::StatusOr<std::vector<v1::TaskRejection>> rejections =
            scheduler_.Submit(*session, *request.mutable_submit()->mutable_tasks());
        if (!rejections.ok()) return rejections.status();
        for (v1::TaskRejection& rejection : *rejections) {
          *reply.mutable_rejected()->add_rejections() = std::move(rejection);
        }
        break;
      }
      case v1::SessionRequest::kCancel: {
        absl::StatusOr<std::vector<v1::CancelResult>> results =
            scheduler_.Cancel(*session, request.cancel().task_ids(),
                              request.cancel().interrupt_running(), request.cancel().force());
        if (!results.ok()) return results.status();
        // Answered even when empty: the client waits for one reply per cancel request.
        reply.mutable_cancel_results();
        for (v1::CancelResult& result : *results) {
          *reply.mutable_cancel_results()->add_results() = std::move(result);
        }
        break;
      }
      case v1::SessionRequest::kShutdown:
        if (absl::Status status =
                scheduler_.Shutdown(*session, request.shutdown().cancel_pending());
            !status.ok()) {
          return status;
        }
        break;
      case v1::SessionRequest::kAck:
        if (absl::Status status = scheduler_.Ack(*session, request.ack().task_ids());
            !status.ok()) {
          return status;
        }
        break;
      case v1::SessionRequest::REQUEST_NOT_SET:
        return absl::InvalidArgumentError("empty session request");
    }
    // The request's payloads have been moved into the scheduler; drop what is left.
    request.Clear();
    if (reply.event_case() != v1::SessionEvent::EVENT_NOT_SET) {
      absl::MutexLock lock(&mu_);
      outgoing_.push_back(std::move(reply));
    }
    MaybeWrite();
    return absl::OkStatus();
  }

  // Ends the stream with `status` once the write in flight (if any) is done. The first request
  // wins; replies not yet written are dropped, and their outcomes given back to the session.
  void RequestFinish(grpc::Status status) {
    std::deque<v1::SessionEvent> unwritten;
    std::optional<SessionId> session;
    {
      absl::MutexLock lock(&mu_);
      if (finish_status_.has_value()) return;
      finish_status_ = std::move(status);
      unwritten.swap(outgoing_);
      session = session_;
    }
    if (!session.has_value()) return;
    for (v1::SessionEvent& event : unwritten) {
      if (event.has_updates()) {
        scheduler_.Retain(*session, *event.mutable_updates()->mutable_outcomes());
      }
    }
  }

  // Starts the next write, or finishes the stream, if nothing is in flight.
  void MaybeWrite() {
    std::optional<grpc::Status> finish;
    bool write = false;
    bool read = false;
    {
      absl::MutexLock lock(&mu_);
      if (!write_in_flight_ && !finished_) {
        if (outgoing_.empty() && events_ready_ && session_.has_value() &&
            !finish_status_.has_value()) {
          events_ready_ = false;
          SessionEvents events = scheduler_.TakeEvents(*session_);
          if (events.pool.has_value()) *outgoing_.emplace_back().mutable_pool() = *events.pool;
          AppendUpdates(events, outgoing_);
          if (events.closed) {
            outgoing_.emplace_back().mutable_closed();
            finish_status_ = grpc::Status::OK;
          }
        }
        if (!outgoing_.empty()) {
          writing_ = std::move(outgoing_.front());
          outgoing_.pop_front();
          write_in_flight_ = true;
          write = true;
        } else if (finish_status_.has_value()) {
          finished_ = true;
          finish = *finish_status_;
        }
      }
      // The client has taken some of what waited for it: read its next request.
      if (read_paused_ && outgoing_.size() < kMaxUnwrittenEvents && !finish_status_.has_value()) {
        read_paused_ = false;
        read = true;
      }
    }
    // Outside the lock: gRPC may run reactions on other threads meanwhile.
    if (read) StartRead(&request_bytes_);
    if (finish.has_value()) {
      Finish(*finish);
      return;
    }
    if (!write) return;
    absl::StatusOr<grpc::ByteBuffer> bytes = Serialize(writing_);
    if (!bytes.ok()) {
      // As a write that failed: its outcomes go back to the session, which its client may resume.
      RequestFinish(ToGrpcStatus(bytes.status()));
      OnWriteDone(/*ok=*/false);
      return;
    }
    writing_bytes_ = *std::move(bytes);
    StartWrite(&writing_bytes_);
  }

  Scheduler& scheduler_;
  const std::string& shared_memory_domain_;
  const std::shared_ptr<PumpedListener<SessionReactor>> relay_;
  // Used by the read path only: one read is in flight at a time.
  grpc::ByteBuffer request_bytes_;
  v1::SessionRequest request_;

  absl::Mutex mu_;
  // Set once `open` succeeds; reset once `closed` has been written.
  std::optional<SessionId> session_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::SessionEvent> outgoing_ ABSL_GUARDED_BY(mu_);
  // The event being written, and its bytes; untouched while write_in_flight_.
  v1::SessionEvent writing_;
  grpc::ByteBuffer writing_bytes_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  // Reading stopped with kMaxUnwrittenEvents events to write: MaybeWrite starts the next read.
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  // The scheduler has outcomes not yet collected.
  bool events_ready_ ABSL_GUARDED_BY(mu_) = false;
  // How to end the stream once `outgoing_` is written.
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // The service ends the stream because of a bad request: the session is abandoned, not detached.
  bool abandon_on_done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StartSessionStream(
    Scheduler& scheduler, StreamPump& pump, const std::string& shared_memory_domain) {
  return new SessionReactor(scheduler, pump, shared_memory_domain);
}

}  // namespace mpigate::server
