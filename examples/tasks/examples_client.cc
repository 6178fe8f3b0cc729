// examples_client: calls the functions of the example task library (example_tasks.cc) and prints
// one line for each. Exits 0 if every answer is what it should be.
//
//   bazel-bin/server/mpigate-server --task-lib bazel-bin/examples/tasks/libmpigate_examples.so &
//   bazel-bin/examples/tasks/examples_client
//
// Finds the service through $MPIGATE_ENDPOINT or the endpoint file, as every client does.
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "client/typed.h"
#include "examples/tasks/examples.pb.h"

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

constexpr double kPi = 3.14159265358979323846;

// Pi from many seeded requests, spread over the pool by MapTyped: each request has its own seed,
// so together they are one large sample.
bool EstimatePi(mpigate::Executor& executor) {
  std::vector<PiRequest> requests(4 * executor.workers());
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].set_seed(i + 1);
    requests[i].set_samples(2000000);
  }
  uint64_t inside = 0;
  uint64_t samples = 0;
  for (absl::StatusOr<PiResponse> response :
       mpigate::MapTyped<PiResponse>(executor, "examples.pi", requests)) {
    if (!response.ok()) {
      std::printf("pi: %s\n", response.status().ToString().c_str());
      return false;
    }
    inside += response->inside();
    samples += response->samples();
  }
  const double estimate = 4.0 * static_cast<double>(inside) / static_cast<double>(samples);
  std::printf("pi: %.6f from %llu samples in %zu tasks (error %.1e)\n", estimate,
              static_cast<unsigned long long>(samples), requests.size(), estimate - kPi);
  return std::abs(estimate - kPi) < 0.01;
}

// The oscillator both trajectory examples run: one period is 2 time units.
template <typename Request>
void SetOscillator(Request& request, uint32_t steps) {
  request.set_steps(steps);
  request.set_dt(0.01);
  request.set_frequency(kPi);
  request.set_friction(0.5);
  request.set_temperature(0.25);
  request.set_initial_position(1.0);
}

// The ensemble's mean position at time t follows the oscillator without noise:
// x0 exp(-gamma t / 2) (cos(W t) + gamma / (2 W) sin(W t)), W = sqrt(w^2 - gamma^2 / 4).
template <typename Request>
double ExactMeanPosition(const Request& request, double t) {
  const double gamma = request.friction();
  const double w = std::sqrt(request.frequency() * request.frequency() - gamma * gamma / 4);
  return request.initial_position() * std::exp(-gamma * t / 2) *
         (std::cos(w * t) + gamma / (2 * w) * std::sin(w * t));
}

// An ensemble of Langevin trajectories in batches, one task each, as QC Lab's parallel drivers
// run them: trajectory i has its own seed, so the batches add up to the ensemble.
bool RunTrajectories(mpigate::Executor& executor) {
  constexpr int kTrajectories = 2000;
  constexpr int kBatch = 250;
  TrajectoriesRequest request;
  request.set_seed(2024);
  request.set_count(kBatch);
  SetOscillator(request, 1000);
  std::vector<mpigate::TypedFuture<TrajectoriesResponse>> batches;
  for (int first = 0; first < kTrajectories; first += kBatch) {
    request.set_first_index(first);
    batches.push_back(
        mpigate::SubmitTyped<TrajectoriesResponse>(executor, "examples.trajectories", request));
  }
  std::vector<double> position(request.steps() + 1, 0.0);
  std::vector<double> energy(request.steps() + 1, 0.0);
  uint64_t count = 0;
  for (const mpigate::TypedFuture<TrajectoriesResponse>& batch : batches) {
    absl::StatusOr<TrajectoriesResponse> response = batch.Result();
    if (!response.ok()) {
      std::printf("trajectories: %s\n", response.status().ToString().c_str());
      return false;
    }
    for (size_t k = 0; k < position.size(); ++k) {
      position[k] += response->position_sum(k);
      energy[k] += response->energy_sum(k);
    }
    count += response->count();
  }
  const double t = 1.0;
  const double exact = ExactMeanPosition(request, t);
  const double mean = position[std::lround(t / request.dt())] / count;
  std::printf(
      "trajectories: %llu in %zu batches; <x>(t=1) = %.3f (exact %.3f); <E> from %.2f to %.3f, "
      "relaxing to kT = %.2f\n",
      static_cast<unsigned long long>(count), batches.size(), mean, exact, energy.front() / count,
      energy.back() / count, request.temperature());
  return count == kTrajectories && std::abs(mean - exact) < 0.05;
}

// The same ensemble as a seeded range map: one request for all of it, and the pool makes each
// trajectory from its own item seed, so the ensemble is the same whatever the batch size.
bool MapTrajectories(mpigate::Executor& executor) {
  constexpr uint64_t kTrajectories = 1000;
  TrajectoryRequest request;
  SetOscillator(request, 100);
  double position_at_end = 0;
  uint64_t count = 0;
  for (absl::StatusOr<TrajectoriesResponse> item : mpigate::MapRangeTyped<TrajectoriesResponse>(
           executor, "examples.trajectory", request,
           {.count = kTrajectories, .batch_size = 125, .base_seed = 2024})) {
    if (!item.ok()) {
      std::printf("trajectory: %s\n", item.status().ToString().c_str());
      return false;
    }
    if (item->first_index() != count) {
      std::printf("trajectory: item %llu came as item %llu\n",
                  static_cast<unsigned long long>(count),
                  static_cast<unsigned long long>(item->first_index()));
      return false;
    }
    position_at_end += item->position_sum(request.steps());
    ++count;
  }
  // The trajectories end at t = steps * dt = 1.
  const double exact = ExactMeanPosition(request, request.steps() * request.dt());
  const double mean = position_at_end / count;
  std::printf("trajectory: %llu items of a range map; <x>(t=1) = %.3f (exact %.3f)\n",
              static_cast<unsigned long long>(count), mean, exact);
  return count == kTrajectories && std::abs(mean - exact) < 0.05;
}

// A gang of the whole pool: each rank adds its own share of 0 .. n-1, MPI_Allreduce the shares.
bool SumOverGang(mpigate::Executor& executor) {
  AllreduceSumRequest request;
  request.set_n(1000000);
  absl::StatusOr<AllreduceSumResponse> response =
      mpigate::SubmitTyped<AllreduceSumResponse>(
          executor, "examples.allreduce_sum", request,
          {.gang_size = static_cast<uint32_t>(executor.workers())})
          .Result();
  if (!response.ok()) {
    std::printf("allreduce_sum: %s\n", response.status().ToString().c_str());
    return false;
  }
  std::printf("allreduce_sum: 0 + 1 + ... + %llu = %llu on a gang of %u\n",
              static_cast<unsigned long long>(request.n() - 1),
              static_cast<unsigned long long>(response->total()), response->gang_size());
  return response->total() == request.n() * (request.n() - 1) / 2;
}

// The largest eigenvalue of the 1-D Laplacian, its rows spread over a gang of the whole pool.
bool PowerIteration(mpigate::Executor& executor) {
  PowerIterationRequest request;
  request.set_n(50);
  request.set_max_iterations(100000);
  request.set_tolerance(1e-8);
  absl::StatusOr<PowerIterationResponse> response =
      mpigate::SubmitTyped<PowerIterationResponse>(
          executor, "examples.power_iteration", request,
          {.gang_size = static_cast<uint32_t>(executor.workers())})
          .Result();
  if (!response.ok()) {
    std::printf("power_iteration: %s\n", response.status().ToString().c_str());
    return false;
  }
  std::printf(
      "power_iteration: largest eigenvalue %.9f (exact %.9f) after %u iterations on a gang of %u\n",
      response->eigenvalue(), response->exact(), response->iterations(), response->gang_size());
  return response->converged() && std::abs(response->eigenvalue() - response->exact()) < 1e-6;
}

bool Integrate(mpigate::Executor& executor) {
  IntegrateRequest request;
  request.set_integrand(IntegrateRequest::INTEGRAND_SIN);
  request.set_a(0);
  request.set_b(kPi);
  request.set_intervals(1000);
  request.set_method(IntegrateRequest::METHOD_SIMPSON);
  absl::StatusOr<IntegrateResponse> response =
      mpigate::SubmitTyped<IntegrateResponse>(executor, "examples.integrate", request).Result();
  if (!response.ok()) {
    std::printf("integrate: %s\n", response.status().ToString().c_str());
    return false;
  }
  std::printf("integrate: sin over [0, pi] = %.9f (Simpson, %lld intervals)\n", response->value(),
              static_cast<long long>(response->intervals()));
  return std::abs(response->value() - 2.0) < 1e-9;
}

// The untyped form: bytes in, bytes out. Input that is not UTF-8 makes the function throw, and
// the exception comes back as an error carrying its type.
bool CountWords(mpigate::Executor& executor) {
  absl::StatusOr<std::string> words =
      executor.Submit("examples.word_count", "the quick brown fox jumps over the lazy dog")
          .Result();
  absl::StatusOr<std::string> thrown = executor.Submit("examples.word_count", "\xff\xfe").Result();
  std::printf("word_count: %s words; of bytes that are not text: %s\n",
              words.ok() ? words->c_str() : words.status().ToString().c_str(),
              thrown.status().ToString().c_str());
  return words.ok() && *words == "9" && thrown.status().code() == absl::StatusCode::kUnknown;
}

// A task far too long to wait for: watch it report progress, then interrupt it.
bool InterruptLongPi(mpigate::Executor& executor) {
  PiRequest request;
  request.set_seed(1);
  request.set_samples(uint64_t{1} << 50);
  mpigate::TypedFuture<PiResponse> future =
      mpigate::SubmitTyped<PiResponse>(executor, "examples.pi", request);
  absl::Notification reported;
  future.future().AddProgressCallback(
      [&reported](const mpigate::Future&, const mpigate::TaskProgress&) {
        if (!reported.HasBeenNotified()) reported.Notify();
      });
  reported.WaitForNotificationWithTimeout(absl::Seconds(60));
  const std::optional<mpigate::TaskProgress> progress = future.future().progress();
  future.Interrupt();
  const absl::Status status = future.Result().status();
  std::printf("interrupt: pi from 2^50 samples, at \"%s\", ends %s\n",
              progress.has_value() ? progress->message.c_str() : "no progress yet",
              status.ToString().c_str());
  return status.code() == absl::StatusCode::kCancelled;
}

}  // namespace

int main() {
  mpigate::ExecutorOptions options;
  options.client_name = "examples_client";
  absl::StatusOr<std::unique_ptr<mpigate::Executor>> connected =
      mpigate::Executor::Connect(options);
  if (!connected.ok()) {
    std::fprintf(stderr, "examples_client: %s\n", connected.status().ToString().c_str());
    return 1;
  }
  mpigate::Executor& executor = **connected;
  bool ok = EstimatePi(executor);
  ok &= RunTrajectories(executor);
  ok &= MapTrajectories(executor);
  ok &= SumOverGang(executor);
  ok &= PowerIteration(executor);
  ok &= Integrate(executor);
  ok &= CountWords(executor);
  ok &= InterruptLongPi(executor);
  return ok ? 0 : 1;
}
