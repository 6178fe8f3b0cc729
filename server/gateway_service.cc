#include "server/gateway_service.h"

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
#include "server/message_bytes.h"
#include "server/session_reactor.h"

namespace mpigate::server {

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
  RunHandler(Scheduler& scheduler, StreamPump& pump)
      : scheduler_(scheduler), relay_(std::make_shared<PumpedListener<RunHandler>>(pump, this)) {}

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
      rejections = absl::Status(CanonicalCode(rejection.code()), rejection.message());
    }
    if (!rejections.ok()) {
      scheduler_.Abandon(*session);
      respond_(rejections.status());
      return;
    }
    // The session closes once its one task has ended.
    scheduler_.Shutdown(*session, /*cancel_pending=*/false).IgnoreError();
  }

  // On the pump's thread, when the scheduler has the outcome.
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
  const std::shared_ptr<PumpedListener<RunHandler>> relay_;
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
  unary_methods_[MethodName("Run")] = [this] {
    return std::make_unique<RunHandler>(scheduler_, pump_);
  };
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
  return StartSessionStream(scheduler_, pump_, shared_memory_domain_);
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
