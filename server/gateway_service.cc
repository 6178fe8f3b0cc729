#include "server/gateway_service.h"

#include <grpcpp/impl/codegen/proto_utils.h>

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
#include "common/access.h"
#include "common/grpc_status.h"
#include "common/log.h"

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

// Parses a request received as bytes; INVALID_ARGUMENT if they are not one.
absl::Status ParseRequest(grpc::ByteBuffer& bytes, google::protobuf::Message& request) {
  if (!grpc::SerializationTraits<google::protobuf::Message>::Deserialize(&bytes, &request).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request does not parse as ", request.GetTypeName()));
  }
  return absl::OkStatus();
}

absl::StatusOr<grpc::ByteBuffer> Serialize(const google::protobuf::Message& message) {
  grpc::ByteBuffer bytes;
  bool own_buffer = false;
  if (!grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, &bytes, &own_buffer)
           .ok()) {
    return absl::InternalError(absl::StrCat("cannot serialize a ", message.GetTypeName()));
  }
  return bytes;
}

// Forwards the scheduler's notifications to a reactor (or a unary call's handler) until it
// detaches, when its call is over. The scheduler holds it by shared_ptr, so it may outlive the
// reactor without dangling.
template <typename Reactor>
class ListenerRelay final : public SessionListener {
 public:
  explicit ListenerRelay(Reactor* reactor) : reactor_(reactor) {}

  void OnSessionEvents() override {
    absl::MutexLock lock(&mu_);
    if (reactor_ != nullptr) reactor_->OnSessionEvents();
  }

  // After this returns the reactor is never called again.
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_);
};

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
// reads (replies) and by the scheduler's notifications (outcomes), with one write in flight.
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
  SessionReactor(Scheduler& scheduler, const std::string& shared_memory_domain)
      : scheduler_(scheduler),
        shared_memory_domain_(shared_memory_domain),
        relay_(std::make_shared<ListenerRelay<SessionReactor>>(this)) {
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

  // Called through the relay when the scheduler has outcomes for this session.
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
  const std::shared_ptr<ListenerRelay<SessionReactor>> relay_;
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

// What a unary method does, behind the transport: it gets the call's one request once the caller
// is authenticated and the request has arrived, and answers once.
class UnaryHandler {
 public:
  // Answers the call with its response's bytes, or fails it; once, from any thread.
  using Respond = std::function<void(absl::StatusOr<grpc::ByteBuffer> response)>;

  virtual ~UnaryHandler() = default;

  // Handles the request; answers through `respond`, now or later, until Cancel().
  virtual void Start(grpc::ByteBuffer& request, Respond respond) = 0;

  // The call was cancelled, or is over: the handler stops what it started for the call and
  // releases it; an answer it still gives is ignored. Called when the call is cancelled (perhaps
  // before Start(), or while it runs) and always once the call is done, after which nothing of
  // the handler may run any more: it is destroyed.
  virtual void Cancel() {}
};

namespace {

// A method answered at once from its request: `Body` maps a `Request` to an
// absl::StatusOr<Response>.
template <typename Request, typename Body>
class ImmediateHandler final : public UnaryHandler {
 public:
  explicit ImmediateHandler(const Body& body) : body_(body) {}

  void Start(grpc::ByteBuffer& bytes, Respond respond) override {
    Request request;
    if (absl::Status parsed = ParseRequest(bytes, request); !parsed.ok()) {
      respond(parsed);
      return;
    }
    auto response = body_(request);
    if (!response.ok()) {
      respond(response.status());
      return;
    }
    respond(Serialize(*response));
  }

 private:
  const Body body_;
};

template <typename Request, typename Body>
std::function<std::unique_ptr<UnaryHandler>()> Immediate(Body body) {
  return [body] { return std::make_unique<ImmediateHandler<Request, Body>>(body); };
}

// One Run call: a session of its own with one task.
class RunHandler final : public UnaryHandler {
 public:
  explicit RunHandler(Scheduler& scheduler)
      : scheduler_(scheduler), relay_(std::make_shared<ListenerRelay<RunHandler>>(this)) {}

  void Start(grpc::ByteBuffer& bytes, Respond respond) override {
    v1::RunRequest request;
    if (absl::Status parsed = ParseRequest(bytes, request); !parsed.ok()) {
      respond(parsed);
      return;
    }
    // Before the session opens: its outcome may come on another thread at once.
    client_task_id_ = request.task().task_id();
    respond_ = std::move(respond);
    absl::StatusOr<SessionId> session = scheduler_.OpenSession("Run", relay_);
    if (!session.ok()) {
      respond_(session.status());
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      session_ = *session;
    }
    google::protobuf::RepeatedPtrField<v1::TaskSpec> tasks;
    v1::TaskSpec& task = *tasks.Add();
    task = std::move(*request.mutable_task());
    // The id only has to be unique in this one-task session; 0 is allowed for Run.
    task.set_task_id(1);
    absl::StatusOr<std::vector<v1::TaskRejection>> rejections = scheduler_.Submit(*session, tasks);
    if (rejections.ok() && !rejections->empty()) {
      const v1::TaskRejection& rejection = rejections->front();
      rejections =
          absl::Status(static_cast<absl::StatusCode>(rejection.code()), rejection.message());
    }
    if (!rejections.ok()) {
      scheduler_.Abandon(*session);
      respond_(rejections.status());
      return;
    }
    // The session closes once its one task has ended.
    scheduler_.Shutdown(*session, /*cancel_pending=*/false).IgnoreError();
  }

  void OnSessionEvents() {
    std::optional<SessionId> session = Session();
    if (!session.has_value()) return;
    SessionEvents events = scheduler_.TakeEvents(*session);
    if (events.outcomes.empty()) return;
    v1::TaskOutcome& outcome = events.outcomes.front();
    outcome.set_task_id(client_task_id_);
    Log(LogLevel::kDebug, "Run call (session ", *session, ") ended ",
        v1::TaskState_Name(outcome.state()));
    respond_(Serialize(outcome));
  }

  void Cancel() override {
    relay_->Detach();
    if (std::optional<SessionId> session = Session(); session.has_value()) {
      scheduler_.Abandon(*session);
    }
  }

 private:
  std::optional<SessionId> Session() {
    absl::MutexLock lock(&mu_);
    return session_;
  }

  Scheduler& scheduler_;
  const std::shared_ptr<ListenerRelay<RunHandler>> relay_;
  // Set by Start() before the session opens.
  uint64_t client_task_id_ = 0;
  Respond respond_;

  absl::Mutex mu_;
  std::optional<SessionId> session_ ABSL_GUARDED_BY(mu_);
};

// A unary call of the generic service. Made once its caller is authenticated, it reads the one
// request (up to the client's half-close, as gRPC's unary calls are exactly one message), hands
// it to its handler, and writes the handler's response with the call's status.
class UnaryReactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit UnaryReactor(std::unique_ptr<UnaryHandler> handler) : handler_(std::move(handler)) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (ok && !has_request_) {
      has_request_ = true;
      StartRead(&extra_request_);
    } else if (ok) {
      Respond(absl::InternalError("a unary call carried more than one request message"));
    } else if (!has_request_) {
      // The client half-closed without a request, or the call broke (OnCancel says so).
      Respond(absl::InternalError("a unary call ended without its request message"));
    } else if (!Responded()) {
      handler_->Start(request_, [this](absl::StatusOr<grpc::ByteBuffer> response) {
        Respond(std::move(response));
      });
    }
  }

  void OnCancel() override {
    handler_->Cancel();
    Respond(absl::CancelledError("the call was cancelled"));
  }

  void OnDone() override {
    handler_->Cancel();
    delete this;
  }

 private:
  // Whether the call is answered already (or cancelled).
  bool Responded() {
    absl::MutexLock lock(&mu_);
    return responded_;
  }

  void Respond(absl::StatusOr<grpc::ByteBuffer> response) {
    {
      absl::MutexLock lock(&mu_);
      if (responded_) return;
      responded_ = true;
    }
    if (!response.ok()) {
      Finish(ToGrpcStatus(response.status()));
      return;
    }
    response_ = *std::move(response);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  const std::unique_ptr<UnaryHandler> handler_;
  // Used by the read path only, which ends before the handler starts.
  grpc::ByteBuffer request_;
  grpc::ByteBuffer extra_request_;
  bool has_request_ = false;

  absl::Mutex mu_;
  bool responded_ ABSL_GUARDED_BY(mu_) = false;
  // Written once, by the one Respond() that answers.
  grpc::ByteBuffer response_;
};

// A call refused before it starts (its caller is not authenticated, or its method unknown):
// finishes at once with `status`, having read nothing.
class RefusedCall final : public grpc::ServerGenericBidiReactor {
 public:
  explicit RefusedCall(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

std::string MethodName(absl::string_view method) {
  return absl::StrCat("/", v1::Gateway::service_full_name(), "/", method);
}

}  // namespace

GatewayService::GatewayService(Scheduler& scheduler,
                               std::function<void(std::string reason)> stop_service,
                               std::string shared_memory_domain, std::string token)
    : scheduler_(scheduler),
      stop_service_(std::move(stop_service)),
      shared_memory_domain_(std::move(shared_memory_domain)),
      token_(std::move(token)),
      refusals_({.level = LogLevel::kWarning,
                 .what = "refused calls",
                 .max_lines = 10,
                 .interval = absl::Seconds(10)}) {
  unary_methods_[MethodName("Run")] = [this] { return std::make_unique<RunHandler>(scheduler_); };
  unary_methods_[MethodName("GetPoolStatus")] = Immediate<v1::GetPoolStatusRequest>(
      [this](const v1::GetPoolStatusRequest&) -> absl::StatusOr<v1::PoolStatus> {
        return scheduler_.Status();
      });
  unary_methods_[MethodName("ListFunctions")] = Immediate<v1::ListFunctionsRequest>(
      [this](const v1::ListFunctionsRequest&) -> absl::StatusOr<v1::ListFunctionsResponse> {
        absl::StatusOr<std::vector<v1::FunctionInfo>> functions = scheduler_.Functions();
        if (!functions.ok()) return functions.status();
        v1::ListFunctionsResponse response;
        for (v1::FunctionInfo& function : *functions) {
          *response.add_functions() = std::move(function);
        }
        return response;
      });
  unary_methods_[MethodName("StopService")] = Immediate<v1::StopServiceRequest>(
      [this](const v1::StopServiceRequest& request) -> absl::StatusOr<v1::StopServiceResponse> {
        stop_service_(request.reason().empty() ? "StopService was called" : request.reason());
        return v1::StopServiceResponse();
      });
}

GatewayService::~GatewayService() = default;

void GatewayService::RegisterWith(grpc::ServerBuilder& builder) {
  builder.RegisterService(this);
  builder.RegisterCallbackGenericService(&generic_service_);
}

grpc::Status GatewayService::Authenticate(const grpc::CallbackServerContext& context) {
  if (token_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(kAuthorizationKey);
  std::optional<absl::string_view> authorization;
  if (found != metadata.end()) {
    authorization = absl::string_view(found->second.data(), found->second.size());
  }
  const absl::Status status = CheckBearerToken(authorization, token_);
  if (!status.ok()) refusals_.Log("refused a call from ", context.peer(), ": ", status.message());
  return ToGrpcStatus(status);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* GatewayService::Session(
    grpc::CallbackServerContext* context) {
  if (grpc::Status status = Authenticate(*context); !status.ok()) return new RefusedCall(status);
  return new SessionReactor(scheduler_, shared_memory_domain_);
}

grpc::ServerGenericBidiReactor* GatewayService::UnaryMethods::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  // Any method no registered service has comes here; gRPC would answer UNIMPLEMENTED.
  const auto method = service_.unary_methods_.find(context->method());
  if (method == service_.unary_methods_.end()) {
    return new RefusedCall(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                        absl::StrCat("unknown method ", context->method())));
  }
  if (grpc::Status status = service_.Authenticate(*context); !status.ok()) {
    return new RefusedCall(status);
  }
  return new UnaryReactor(method->second());
}

}  // namespace mpigate::server
