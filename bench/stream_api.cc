// stream_api: gRPC 1.51's two server APIs side by side on mpigate's hot stream, the Session call.
//
// grpc/grpc issue 31907 measured bidirectional streaming through the callback API at several
// times the per-message cost of the completion-queue API. This bench answers the question for
// this machine and these messages before the gateway picks one: a server process with no pool
// behind it answers every `submit` on the Session stream with one `updates` event holding an
// outcome per task, once with a ServerBidiReactor (what the gateway uses) and once with an async
// service driven by one thread on a completion queue. The client is mpigate's own kind (the sync
// API, a writer and a reader thread) and the same for both.
//
// Workloads, each on a fresh server process, alternating APIs for --rounds:
//   pingpong: one single-task submit, then wait for its event; p50 and p99 of the round trip;
//   stream:   --messages single-task submits written as fast as the stream takes them while
//             another thread reads the events; messages/s, and the server's CPU per message.
// Prints one line per API and workload (medians over the rounds) and the CQ/callback ratios.
//
// The floor of bench/compare.py's table is the pingpong alone on the API the gateway uses:
//   stream_api --api=callback --messages=0 --csv
// prints compare.py's lines `floor_grpc,p50,VALUE,us` and `floor_grpc,p99,VALUE,us` instead.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "mpigate/v1/gateway.grpc.pb.h"

ABSL_FLAG(int, pings, 20000, "Round trips timed per pingpong round (after 1000 to warm up).");
ABSL_FLAG(int, messages, 200000, "Submits per stream round; 0: no stream workload.");
ABSL_FLAG(int, rounds, 3, "Rounds per API; each line is the median over them.");
ABSL_FLAG(std::string, api, "both", "callback, cq or both.");
ABSL_FLAG(bool, csv, false,
          "Print the pingpong's p50 and p99 as bench/compare.py's lines (floor_grpc,p50,VALUE,us) "
          "instead of the table; needs one --api.");
ABSL_FLAG(std::string, serve, "", "Internal: be the server process of this API (callback or cq).");
ABSL_FLAG(std::string, address, "", "Internal: the server process's address.");

namespace {

namespace v1 = mpigate::v1;

enum class Api { kCallback, kCompletionQueue };

const char* Name(Api api) { return api == Api::kCallback ? "callback" : "cq"; }

// The whole of the fake gateway: an outcome per submitted task, nothing for other requests.
// False if the request needs no answer.
bool Answer(const v1::SessionRequest& request, v1::SessionEvent& event) {
  event.Clear();
  if (!request.has_submit()) return false;
  v1::TaskUpdates& updates = *event.mutable_updates();
  for (const v1::TaskSpec& task : request.submit().tasks()) {
    v1::TaskOutcome& outcome = *updates.add_outcomes();
    outcome.set_task_id(task.task_id());
    outcome.set_state(v1::TASK_STATE_SUCCEEDED);
  }
  return true;
}

// Callback API: reads and writes in turn, one of them in flight at a time.
class EchoReactor final : public grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionEvent> {
 public:
  EchoReactor() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);
    if (!Answer(request_, event_)) return StartRead(&request_);
    StartWrite(&event_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);
    StartRead(&request_);
  }
  void OnDone() override { delete this; }

 private:
  v1::SessionRequest request_;
  v1::SessionEvent event_;
};

class CallbackService final : public v1::Gateway::CallbackService {
  grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionEvent>* Session(
      grpc::CallbackServerContext*) override {
    return new EchoReactor;
  }
};

// Completion-queue API: the same turn-taking, each call a small state machine whose address is
// the tag of its one pending operation.
class CqCall {
 public:
  CqCall(v1::Gateway::AsyncService& service, grpc::ServerCompletionQueue& cq)
      : service_(service), cq_(cq) {
    service_.RequestSession(&context_, &stream_, &cq_, &cq_, this);
  }

  // Advances the call after its pending operation completed with `ok`.
  void Proceed(bool ok) {
    switch (state_) {
      case State::kAccepting:
        if (!ok) return delete this;  // the server is shutting down
        new CqCall(service_, cq_);
        return Read();
      case State::kReading:
        if (!ok) return Finish();
        if (!Answer(request_, event_)) return Read();
        state_ = State::kWriting;
        return stream_.Write(event_, this);
      case State::kWriting:
        if (!ok) return Finish();
        return Read();
      case State::kFinishing:
        return delete this;
    }
  }

 private:
  enum class State { kAccepting, kReading, kWriting, kFinishing };

  void Read() {
    state_ = State::kReading;
    stream_.Read(&request_, this);
  }
  void Finish() {
    state_ = State::kFinishing;
    stream_.Finish(grpc::Status::OK, this);
  }

  v1::Gateway::AsyncService& service_;
  grpc::ServerCompletionQueue& cq_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<v1::SessionEvent, v1::SessionRequest> stream_{&context_};
  v1::SessionRequest request_;
  v1::SessionEvent event_;
  State state_ = State::kAccepting;
};

// The server process's body; never returns. Killed by the parent when the round is over.
[[noreturn]] void Serve(Api api, const std::string& address) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  CallbackService callback_service;
  v1::Gateway::AsyncService async_service;
  std::unique_ptr<grpc::ServerCompletionQueue> cq;
  if (api == Api::kCallback) {
    builder.RegisterService(&callback_service);
  } else {
    builder.RegisterService(&async_service);
    cq = builder.AddCompletionQueue();
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "stream_api: cannot serve on %s\n", address.c_str());
    _exit(1);
  }
  if (api == Api::kCallback) {
    server->Wait();
  } else {
    new CqCall(async_service, *cq);
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) static_cast<CqCall*>(tag)->Proceed(ok);
  }
  _exit(0);
}

// CPU time (user + system) the process `pid` has used so far.
absl::Duration ProcessCpu(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string field;
  // Fields 14 and 15 are utime and stime; the command name (2) has no spaces here.
  for (int i = 1; i <= 13; ++i) stat >> field;
  long utime = 0, stime = 0;
  stat >> utime >> stime;
  return absl::Seconds(static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK)));
}

v1::SessionRequest SingleTaskSubmit(uint64_t id) {
  v1::SessionRequest request;
  v1::TaskSpec& task = *request.mutable_submit()->add_tasks();
  task.set_task_id(id);
  task.set_function("noop");
  return request;
}

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

double Median(std::vector<double> values) { return Percentile(std::move(values), 0.5); }

struct RoundResult {
  double p50_us = 0;
  double p99_us = 0;
  double messages_per_s = 0;
  double server_cpu_us_per_message = 0;
};

// Starts a server of `api`, runs both workloads against it, and stops it.
RoundResult RunRound(Api api, int round) {
  const std::string address = absl::StrCat("unix:/tmp/mpigate-stream-api-", getpid(), "-", round);
  // A fresh process, not a fork: this one's gRPC runs threads by now.
  const pid_t server = fork();
  if (server == 0) {
    const std::string serve = absl::StrCat("--serve=", Name(api));
    const std::string at = absl::StrCat("--address=", address);
    execl("/proc/self/exe", "stream_api", serve.c_str(), at.c_str(), nullptr);
    _exit(127);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
    std::fprintf(stderr, "stream_api: the %s server did not come up\n", Name(api));
    std::exit(1);
  }
  std::unique_ptr<v1::Gateway::Stub> stub = v1::Gateway::NewStub(channel);
  RoundResult result;

  {
    grpc::ClientContext context;
    auto stream = stub->Session(&context);
    v1::SessionEvent event;
    std::vector<double> us;
    const v1::SessionRequest request = SingleTaskSubmit(1);
    for (int i = -1000; i < absl::GetFlag(FLAGS_pings); ++i) {
      const absl::Time start = absl::Now();
      if (!stream->Write(request) || !stream->Read(&event)) {
        std::fprintf(stderr, "stream_api: the %s pingpong stream broke\n", Name(api));
        std::exit(1);
      }
      if (i >= 0) us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    }
    stream->WritesDone();
    while (stream->Read(&event)) {
    }
    stream->Finish();
    result.p50_us = Percentile(us, 0.5);
    result.p99_us = Percentile(us, 0.99);
  }

  if (const int messages = absl::GetFlag(FLAGS_messages); messages > 0) {
    grpc::ClientContext context;
    auto stream = stub->Session(&context);
    const absl::Duration cpu_before = ProcessCpu(server);
    const absl::Time start = absl::Now();
    std::thread writer([&] {
      for (int i = 0; i < messages; ++i) {
        if (!stream->Write(SingleTaskSubmit(static_cast<uint64_t>(i)))) break;
      }
      stream->WritesDone();
    });
    v1::SessionEvent event;
    int outcomes = 0;
    while (outcomes < messages && stream->Read(&event)) outcomes += event.updates().outcomes_size();
    const absl::Duration elapsed = absl::Now() - start;
    const absl::Duration cpu = ProcessCpu(server) - cpu_before;
    writer.join();
    while (stream->Read(&event)) {
    }
    stream->Finish();
    if (outcomes != messages) {
      std::fprintf(stderr, "stream_api: the %s stream answered %d of %d\n", Name(api), outcomes,
                   messages);
      std::exit(1);
    }
    result.messages_per_s = messages / absl::ToDoubleSeconds(elapsed);
    result.server_cpu_us_per_message = absl::ToDoubleMicroseconds(cpu) / messages;
  }

  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  unlink(address.substr(5).c_str());
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (const std::string serve = absl::GetFlag(FLAGS_serve); !serve.empty()) {
    Serve(serve == "cq" ? Api::kCompletionQueue : Api::kCallback, absl::GetFlag(FLAGS_address));
  }
  const std::string api_flag = absl::GetFlag(FLAGS_api);
  std::vector<Api> apis;
  if (api_flag == "callback" || api_flag == "both") apis.push_back(Api::kCallback);
  if (api_flag == "cq" || api_flag == "both") apis.push_back(Api::kCompletionQueue);
  const bool csv = absl::GetFlag(FLAGS_csv);
  if (apis.empty() || (csv && apis.size() != 1) || absl::GetFlag(FLAGS_rounds) < 1 ||
      absl::GetFlag(FLAGS_pings) < 1) {
    std::fprintf(stderr,
                 "stream_api: --api is callback, cq or both (one with --csv); --rounds and "
                 "--pings at least 1\n");
    return 2;
  }
  // Rounds alternate between the APIs, so that a noisy spell on this shared machine hits both.
  std::vector<RoundResult> results[2];
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (Api api : apis) {
      results[static_cast<int>(api)].push_back(RunRound(api, round * 2 + static_cast<int>(api)));
    }
  }
  auto median_of = [&](Api api, double RoundResult::*field) {
    std::vector<double> values;
    for (const RoundResult& r : results[static_cast<int>(api)]) values.push_back(r.*field);
    return Median(values);
  };
  if (csv) {
    std::printf("floor_grpc,p50,%.1f,us\nfloor_grpc,p99,%.1f,us\n",
                median_of(apis[0], &RoundResult::p50_us), median_of(apis[0], &RoundResult::p99_us));
    return 0;
  }
  std::printf("%-9s %10s %10s %14s %16s\n", "api", "p50_us", "p99_us", "stream_msg/s",
              "server_cpu_us/msg");
  for (Api api : apis) {
    std::printf("%-9s %10.1f %10.1f %14.0f %16.2f\n", Name(api), median_of(api, &RoundResult::p50_us),
                median_of(api, &RoundResult::p99_us), median_of(api, &RoundResult::messages_per_s),
                median_of(api, &RoundResult::server_cpu_us_per_message));
  }
  if (apis.size() == 2) {
    auto ratio = [&](double RoundResult::*field) {
      return median_of(Api::kCompletionQueue, field) / median_of(Api::kCallback, field);
    };
    std::printf("cq/callback: p50 %.2fx, stream rate %.2fx, server CPU per message %.2fx\n",
                ratio(&RoundResult::p50_us), ratio(&RoundResult::messages_per_s),
                ratio(&RoundResult::server_cpu_us_per_message));
  }
  return 0;
}
