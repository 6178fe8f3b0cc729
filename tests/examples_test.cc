// The example task library (examples/tasks) end to end: one real mpigate-server with 2 MPI
// workers that load libmpigate_examples.so, driven through the C++ client's typed helpers (gangs
// and seeded range maps included), and the example client run against it as a separate process.
//
// Nothing waits on time: the interrupted task is interrupted once it has reported progress (so
// its function is surely running), and then runs until its function sees the flag.
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/executor.h"
#include "client/typed.h"
#include "examples/tasks/examples.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"

namespace mpigate {
namespace {

using ::mpigate::examples::AllreduceSumRequest;
using ::mpigate::examples::AllreduceSumResponse;
using ::mpigate::examples::IntegrateRequest;
using ::mpigate::examples::IntegrateResponse;
using ::mpigate::examples::PiRequest;
using ::mpigate::examples::PiResponse;
using ::mpigate::examples::PowerIterationRequest;
using ::mpigate::examples::PowerIterationResponse;
using ::mpigate::examples::TrajectoriesRequest;
using ::mpigate::examples::TrajectoriesResponse;
using ::mpigate::examples::TrajectoryRequest;
using ::testing::AllOf;
using ::testing::DoubleNear;
using ::testing::HasSubstr;

constexpr double kPi = 3.14159265358979323846;

class ExamplesTest : public testing::SharedServerTest<ExamplesTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {
        .workers = 2,
        .flags = {"--task-lib=" + testing::RunfilePath("examples/tasks/libmpigate_examples.so")}};
  }

 protected:
  void SetUp() override {
    executor_ = Connect("examples_test");
    ASSERT_NE(executor_, nullptr);
  }

  std::unique_ptr<Executor> executor_;
};

PiRequest Pi(uint64_t seed, uint64_t samples) {
  PiRequest request;
  request.set_seed(seed);
  request.set_samples(samples);
  return request;
}

TrajectoriesRequest Trajectories(uint64_t first_index, uint32_t count) {
  TrajectoriesRequest request;
  request.set_seed(42);
  request.set_first_index(first_index);
  request.set_count(count);
  request.set_steps(200);
  request.set_dt(0.02);
  request.set_frequency(2.0);
  request.set_friction(0.3);
  request.set_temperature(0.5);
  request.set_initial_position(1.0);
  return request;
}

// One trajectory of the oscillator Trajectories() describes, as a range map's item.
TrajectoryRequest Trajectory() {
  TrajectoryRequest request;
  request.set_steps(200);
  request.set_dt(0.02);
  request.set_frequency(2.0);
  request.set_friction(0.3);
  request.set_temperature(0.5);
  request.set_initial_position(1.0);
  return request;
}

PowerIterationRequest PowerIteration(uint32_t n, uint32_t max_iterations, double tolerance) {
  PowerIterationRequest request;
  request.set_n(n);
  request.set_max_iterations(max_iterations);
  request.set_tolerance(tolerance);
  return request;
}

IntegrateRequest Integral(IntegrateRequest::Integrand integrand, double a, double b,
                          int64_t intervals, IntegrateRequest::Method method) {
  IntegrateRequest request;
  request.set_integrand(integrand);
  request.set_a(a);
  request.set_b(b);
  request.set_intervals(intervals);
  request.set_method(method);
  return request;
}

MATCHER_P3(IsFunction, name, request_type, response_type, "") {
  return arg.name == name && arg.request_type == request_type &&
         arg.response_type == response_type && !arg.description.empty();
}

TEST_F(ExamplesTest, ThePoolListsTheLibrarysFunctionsWithTheirTypes) {
  absl::StatusOr<std::vector<FunctionInfo>> functions = executor_->ListFunctions();
  ASSERT_TRUE(functions.ok()) << functions.status();
  EXPECT_THAT(
      *functions,
      ::testing::IsSupersetOf(
          {IsFunction("examples.pi", "mpigate.examples.PiRequest", "mpigate.examples.PiResponse"),
           IsFunction("examples.trajectories", "mpigate.examples.TrajectoriesRequest",
                      "mpigate.examples.TrajectoriesResponse"),
           IsFunction("examples.integrate", "mpigate.examples.IntegrateRequest",
                      "mpigate.examples.IntegrateResponse"),
           IsFunction("examples.word_count", "", ""),
           IsFunction("examples.trajectory", "mpigate.examples.TrajectoryRequest",
                      "mpigate.examples.TrajectoriesResponse"),
           IsFunction("examples.allreduce_sum", "mpigate.examples.AllreduceSumRequest",
                      "mpigate.examples.AllreduceSumResponse"),
           IsFunction("examples.power_iteration", "mpigate.examples.PowerIterationRequest",
                      "mpigate.examples.PowerIterationResponse")}));
  std::vector<std::string> gangs;
  for (const FunctionInfo& function : *functions) {
    if (function.name == "examples.pi") {
      EXPECT_THAT(function.description, HasSubstr("Monte Carlo"));
    }
    if (function.gang) gangs.push_back(function.name);
  }
  // With the workers' Python runtime (loaded by default), whose python.gang is a gang function too.
  EXPECT_THAT(gangs, ::testing::UnorderedElementsAre("examples.allreduce_sum",
                                                     "examples.power_iteration", "python.gang"));

  // The pool's status lists them too, as a client without the C++ library sees them.
  auto stub = v1::Gateway::NewStub(
      grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::PoolStatus status;
  ASSERT_TRUE(stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
  bool listed = false;
  for (const v1::FunctionInfo& function : status.functions()) {
    if (function.name() != "examples.trajectories") continue;
    listed = true;
    EXPECT_EQ(function.request_type(), "mpigate.examples.TrajectoriesRequest");
    EXPECT_EQ(function.response_type(), "mpigate.examples.TrajectoriesResponse");
    EXPECT_THAT(function.description(), HasSubstr("batches combine"));
  }
  EXPECT_TRUE(listed) << status.DebugString();
}

TEST_F(ExamplesTest, PiIsCloseToPiAndTheSameForTheSameSeed) {
  absl::StatusOr<PiResponse> first =
      SubmitTyped<PiResponse>(*executor_, "examples.pi", Pi(7, 1000000)).Result();
  absl::StatusOr<PiResponse> second =
      SubmitTyped<PiResponse>(*executor_, "examples.pi", Pi(7, 1000000)).Result();
  absl::StatusOr<PiResponse> other =
      SubmitTyped<PiResponse>(*executor_, "examples.pi", Pi(8, 1000000)).Result();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(first->samples(), 1000000u);
  EXPECT_THAT(first->estimate(), DoubleNear(kPi, 0.01));
  EXPECT_EQ(first->estimate(), 4.0 * first->inside() / 1000000.0);
  EXPECT_EQ(second->inside(), first->inside());
  EXPECT_EQ(second->estimate(), first->estimate());
  EXPECT_NE(other->inside(), first->inside());
}

TEST_F(ExamplesTest, PiSpreadOverThePoolWithMapTyped) {
  std::vector<PiRequest> requests;
  for (uint64_t seed = 1; seed <= 6; ++seed) requests.push_back(Pi(seed, 200000));
  uint64_t inside = 0;
  uint64_t samples = 0;
  int results = 0;
  for (absl::StatusOr<PiResponse> response :
       MapTyped<PiResponse>(*executor_, "examples.pi", requests, {.chunksize = 2})) {
    ASSERT_TRUE(response.ok()) << response.status();
    inside += response->inside();
    samples += response->samples();
    ++results;
  }
  EXPECT_EQ(results, 6);
  EXPECT_EQ(samples, 1200000u);
  EXPECT_THAT(4.0 * inside / samples, DoubleNear(kPi, 0.01));
}

TEST_F(ExamplesTest, TwoTrajectoryBatchesAddUpToOneBatchOfBoth) {
  TypedFuture<TrajectoriesResponse> whole =
      SubmitTyped<TrajectoriesResponse>(*executor_, "examples.trajectories", Trajectories(0, 10));
  TypedFuture<TrajectoriesResponse> head =
      SubmitTyped<TrajectoriesResponse>(*executor_, "examples.trajectories", Trajectories(0, 4));
  TypedFuture<TrajectoriesResponse> tail =
      SubmitTyped<TrajectoriesResponse>(*executor_, "examples.trajectories", Trajectories(4, 6));
  absl::StatusOr<TrajectoriesResponse> all = whole.Result();
  absl::StatusOr<TrajectoriesResponse> first = head.Result();
  absl::StatusOr<TrajectoriesResponse> second = tail.Result();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();

  EXPECT_EQ(first->count() + second->count(), all->count());
  EXPECT_EQ(second->first_index(), 4u);
  ASSERT_EQ(all->position_sum_size(), 201);
  ASSERT_EQ(first->position_sum_size(), 201);
  ASSERT_EQ(second->position_sum_size(), 201);
  // The same trajectories in other batches: equal up to the order of the floating-point sums.
  for (int k = 0; k <= 200; ++k) {
    EXPECT_THAT(first->position_sum(k) + second->position_sum(k),
                DoubleNear(all->position_sum(k), 1e-12))
        << "step " << k;
    EXPECT_THAT(first->energy_sum(k) + second->energy_sum(k), DoubleNear(all->energy_sum(k), 1e-12))
        << "step " << k;
  }
  // Every trajectory starts where it was told to; after that they differ.
  EXPECT_DOUBLE_EQ(all->position_sum(0), 10.0);
  EXPECT_NE(first->position_sum(200) / 4, second->position_sum(200) / 6);
}

// examples.trajectory seeds each item from the map's base seed and the item's index alone.
TEST_F(ExamplesTest, ARangeMapOfTrajectoriesIsTheSameWhateverItsBatches) {
  const auto ensemble = [this](int batch_size, uint64_t base_seed) {
    std::vector<std::string> items;
    for (absl::StatusOr<TrajectoriesResponse> item : MapRangeTyped<TrajectoriesResponse>(
             *executor_, "examples.trajectory", Trajectory(),
             {.count = 12, .batch_size = batch_size, .base_seed = base_seed})) {
      EXPECT_TRUE(item.ok()) << item.status();
      if (!item.ok()) break;
      EXPECT_EQ(item->first_index(), items.size());
      EXPECT_EQ(item->count(), 1u);
      EXPECT_EQ(item->position_sum_size(), 201);
      EXPECT_DOUBLE_EQ(item->position_sum(0), 1.0) << "every trajectory starts where it was told";
      items.push_back(item->SerializeAsString());
    }
    return items;
  };
  const std::vector<std::string> by_five = ensemble(5, 42);
  ASSERT_EQ(by_five.size(), 12u);
  // Bit for bit: each trajectory is computed alone, from its own seed.
  EXPECT_EQ(ensemble(12, 42), by_five);
  EXPECT_EQ(ensemble(1, 42), by_five);
  EXPECT_NE(by_five[0], by_five[1]) << "items have seeds of their own";
  EXPECT_NE(ensemble(5, 43), by_five) << "another base seed is another ensemble";
}

// A gang of 1 and a gang of the whole pool: each rank adds its own share, whatever their number.
TEST_F(ExamplesTest, AllreduceSumAddsTheSharesOfEveryRank) {
  AllreduceSumRequest request;
  request.set_n(100001);
  for (const uint32_t gang_size : {1u, 2u}) {
    SCOPED_TRACE(absl::StrCat("gang_size ", gang_size));
    absl::StatusOr<AllreduceSumResponse> response =
        SubmitTyped<AllreduceSumResponse>(*executor_, "examples.allreduce_sum", request,
                                          {.gang_size = gang_size})
            .Result();
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->total(), uint64_t{100001} * 100000 / 2);
    EXPECT_EQ(response->n(), 100001u);
    EXPECT_EQ(response->gang_size(), gang_size);
  }
  request.set_n((uint64_t{1} << 32) + 1);
  const absl::Status too_long = SubmitTyped<AllreduceSumResponse>(
                                    *executor_, "examples.allreduce_sum", request, {.gang_size = 2})
                                    .Result()
                                    .status();
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument) << too_long;
  EXPECT_THAT(too_long.message(), HasSubstr("n must be at most"));
}

TEST_F(ExamplesTest, PowerIterationOnAGangFindsTheLargestEigenvalue) {
  std::vector<PowerIterationResponse> responses;
  for (const uint32_t gang_size : {1u, 2u}) {
    absl::StatusOr<PowerIterationResponse> response =
        SubmitTyped<PowerIterationResponse>(*executor_, "examples.power_iteration",
                                            PowerIteration(50, 100000, 1e-9),
                                            {.gang_size = gang_size})
            .Result();
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_TRUE(response->converged()) << response->DebugString();
    EXPECT_EQ(response->gang_size(), gang_size);
    EXPECT_THAT(response->exact(), DoubleNear(2 + 2 * std::cos(kPi / 51), 1e-15));
    EXPECT_THAT(response->eigenvalue(), DoubleNear(response->exact(), 1e-8));
    EXPECT_LE(response->residual(), 1e-9 * response->eigenvalue());
    responses.push_back(*response);
  }
  // Split over two ranks, the same iteration up to the order of the sums.
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_THAT(responses[1].eigenvalue(), DoubleNear(responses[0].eigenvalue(), 1e-12));

  const absl::Status bad =
      SubmitTyped<PowerIterationResponse>(*executor_, "examples.power_iteration",
                                          PowerIteration(0, 10, 1e-6), {.gang_size = 2})
          .Result()
          .status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_THAT(bad.message(), HasSubstr("examples.power_iteration: n must be"));
}

TEST_F(ExamplesTest, AnInterruptedPowerIterationGangEndsCancelled) {
  // A tolerance no iteration reaches and more iterations than the test would wait for.
  TypedFuture<PowerIterationResponse> future = SubmitTyped<PowerIterationResponse>(
      *executor_, "examples.power_iteration", PowerIteration(10000, 4000000000u, 1e-300),
      {.gang_size = 2});
  absl::Notification reported;
  future.future().AddProgressCallback([&reported](const Future&, const TaskProgress&) {
    if (!reported.HasBeenNotified()) reported.Notify();
  });
  // A report that came before the callback was added is in progress() by now.
  if (future.future().progress().has_value() && !reported.HasBeenNotified()) reported.Notify();
  reported.WaitForNotification();
  const std::optional<TaskProgress> progress = future.future().progress();
  ASSERT_TRUE(progress.has_value());
  EXPECT_THAT(progress->message, HasSubstr("iteration "));

  EXPECT_TRUE(future.Interrupt());
  const absl::Status status = future.Result().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_THAT(status.message(), HasSubstr("examples.power_iteration: interrupted after"));
  // Both workers are free again.
  AllreduceSumRequest small;
  small.set_n(10);
  EXPECT_TRUE(SubmitTyped<AllreduceSumResponse>(*executor_, "examples.allreduce_sum", small,
                                                {.gang_size = 2})
                  .Result()
                  .ok());
}

TEST_F(ExamplesTest, SinIntegratesToTwoOverZeroToPi) {
  for (const auto method : {IntegrateRequest::METHOD_SIMPSON, IntegrateRequest::METHOD_TRAPEZOID}) {
    absl::StatusOr<IntegrateResponse> response =
        SubmitTyped<IntegrateResponse>(
            *executor_, "examples.integrate",
            Integral(IntegrateRequest::INTEGRAND_SIN, 0, kPi, 1000, method))
            .Result();
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_THAT(response->value(), DoubleNear(2.0, 1e-5)) << method;
    EXPECT_EQ(response->intervals(), 1000);
  }
  // Simpson's rule is exact for cubics: 1 + x^3 over [0, 2] is 6.
  IntegrateRequest cubic =
      Integral(IntegrateRequest::INTEGRAND_POLYNOMIAL, 0, 2, 2, IntegrateRequest::METHOD_SIMPSON);
  for (const double c : {1.0, 0.0, 0.0, 1.0}) cubic.add_coefficients(c);
  absl::StatusOr<IntegrateResponse> exact =
      SubmitTyped<IntegrateResponse>(*executor_, "examples.integrate", cubic).Result();
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_THAT(exact->value(), DoubleNear(6.0, 1e-12));
}

TEST_F(ExamplesTest, BadInputIsInvalidArgument) {
  const struct {
    IntegrateRequest request;
    std::string message;
  } integrals[] = {
      {Integral(IntegrateRequest::INTEGRAND_SIN, 0, 1, 0, IntegrateRequest::METHOD_TRAPEZOID),
       "intervals must be at least 1"},
      {Integral(IntegrateRequest::INTEGRAND_SIN, 0, 1, -5, IntegrateRequest::METHOD_SIMPSON),
       "intervals must be at least 1"},
      {Integral(IntegrateRequest::INTEGRAND_SIN, 0, 1, 7, IntegrateRequest::METHOD_SIMPSON),
       "even number of intervals"},
      {Integral(IntegrateRequest::INTEGRAND_UNSPECIFIED, 0, 1, 8, IntegrateRequest::METHOD_SIMPSON),
       "no integrand"},
      {Integral(IntegrateRequest::INTEGRAND_POLYNOMIAL, 0, 1, 8, IntegrateRequest::METHOD_SIMPSON),
       "at least one coefficient"},
      {Integral(IntegrateRequest::INTEGRAND_SIN, 0, INFINITY, 8, IntegrateRequest::METHOD_SIMPSON),
       "finite"},
  };
  for (const auto& [request, message] : integrals) {
    const absl::Status status =
        SubmitTyped<IntegrateResponse>(*executor_, "examples.integrate", request).Result().status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(message));
  }

  const absl::Status no_samples =
      SubmitTyped<PiResponse>(*executor_, "examples.pi", Pi(1, 0)).Result().status();
  EXPECT_EQ(no_samples.code(), absl::StatusCode::kInvalidArgument) << no_samples;

  TrajectoriesRequest no_time = Trajectories(0, 1);
  no_time.set_dt(0);
  const absl::Status trajectories =
      SubmitTyped<TrajectoriesResponse>(*executor_, "examples.trajectories", no_time)
          .Result()
          .status();
  EXPECT_EQ(trajectories.code(), absl::StatusCode::kInvalidArgument) << trajectories;
  EXPECT_THAT(trajectories.message(), HasSubstr("dt must be positive"));

  // A request of another type: the service refuses it before a worker sees it.
  const absl::Status wrong_type =
      SubmitTyped<PiResponse>(*executor_, "examples.pi", Trajectories(0, 1)).Result().status();
  EXPECT_EQ(wrong_type.code(), absl::StatusCode::kInvalidArgument) << wrong_type;
  EXPECT_THAT(wrong_type.message(), HasSubstr("mpigate.examples.PiRequest"));

  // Bytes that are no PiRequest at all, sent untyped: the worker's parse refuses them.
  const absl::Status garbage = executor_->Submit("examples.pi", "\xff\xff\xff").Exception();
  EXPECT_EQ(garbage.code(), absl::StatusCode::kInvalidArgument) << garbage;
  EXPECT_THAT(garbage.message(), HasSubstr("not a valid mpigate.examples.PiRequest"));
}

TEST_F(ExamplesTest, TheBytesFunctionCountsWordsAndItsExceptionArrivesWithItsType) {
  absl::StatusOr<std::string> words =
      executor_->Submit("examples.word_count", " one two\tthree\n").Result();
  ASSERT_TRUE(words.ok()) << words.status();
  EXPECT_EQ(*words, "3");
  EXPECT_EQ(executor_->Submit("examples.word_count", "").Result().value_or("?"), "0");

  const absl::Status thrown = executor_->Submit("examples.word_count", "caf\xe9").Exception();
  EXPECT_EQ(thrown.code(), absl::StatusCode::kUnknown) << thrown;
  EXPECT_THAT(thrown.message(), AllOf(HasSubstr("std::invalid_argument"),
                                      HasSubstr("the input is not UTF-8 text (byte 3)")));

  // The worker that caught it goes on serving.
  EXPECT_EQ(executor_->Submit("examples.word_count", "still here").Result().value_or("?"), "2");
}

TEST_F(ExamplesTest, AnInterruptedLongPiReportsProgressThenEndsCancelled) {
  TypedFuture<PiResponse> future =
      SubmitTyped<PiResponse>(*executor_, "examples.pi", Pi(3, uint64_t{1} << 60));
  absl::Notification reported;
  future.future().AddProgressCallback([&reported](const Future&, const TaskProgress&) {
    if (!reported.HasBeenNotified()) reported.Notify();
  });
  // Progress means the function's loop runs; the next chunk will look at the flag.
  reported.WaitForNotification();
  const std::optional<TaskProgress> progress = future.future().progress();
  ASSERT_TRUE(progress.has_value());
  EXPECT_GT(progress->fraction, 0.0);
  EXPECT_LT(progress->fraction, 1e-6);
  EXPECT_THAT(progress->message, HasSubstr(" of 1152921504606846976 samples"));

  EXPECT_TRUE(future.Interrupt());
  const absl::Status status = future.Result().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_THAT(status.message(), HasSubstr("examples.pi: interrupted after"));
  EXPECT_EQ(future.future().state(), FutureState::kCancelled);

  // The worker is free again.
  EXPECT_TRUE(SubmitTyped<PiResponse>(*executor_, "examples.pi", Pi(3, 1000)).Result().ok());
}

TEST_F(ExamplesTest, TheExamplesClientRunsAgainstThePool) {
  const std::string command =
      absl::StrCat("MPIGATE_ENDPOINT='", server_->target(), "' '",
                   testing::RunfilePath("examples/tasks/examples_client"), "'");
  absl::StatusOr<testing::CommandResult> run = testing::RunCommand(command);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->output;
  EXPECT_THAT(run->output, HasSubstr("pi: 3.14"));
  EXPECT_THAT(run->output, HasSubstr("trajectories: 2000 in 8 batches"));
  EXPECT_THAT(run->output, HasSubstr("trajectory: 1000 items of a range map"));
  EXPECT_THAT(run->output, HasSubstr("allreduce_sum: 0 + 1 + ... + 999999 = 499999500000 on a "
                                     "gang of 2"));
  EXPECT_THAT(run->output,
              HasSubstr("power_iteration: largest eigenvalue 3.996206657 (exact 3.996206657)"));
  EXPECT_THAT(run->output, HasSubstr("integrate: sin over [0, pi] = 2.000000000"));
  EXPECT_THAT(run->output, HasSubstr("word_count: 9 words"));
  EXPECT_THAT(run->output, HasSubstr("std::invalid_argument"));
  EXPECT_THAT(run->output, HasSubstr("ends CANCELLED"));
}

}  // namespace
}  // namespace mpigate
