// Gang functions: one task run by several workers at once, SPMD, with an MPI communicator of their
// own. What a task library includes (besides worker/task.h) to register one.
//
//   // The distributed sum of IPython's MPI guide: every rank adds its share, rank 0 answers.
//   absl::StatusOr<std::string> Sum(const mpigate::GangContext& gang, absl::string_view input) {
//     double mine = PartOfTheSum(gang.gang_rank(), gang.gang_size(), input);
//     double total = 0;
//     MPI_Allreduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, gang.comm());
//     return absl::StrCat(total);
//   }
//   MPIGATE_GANG_TASK("mylib.sum", "Sum over the gang's ranks.", Sum);
//
// A client runs it on k workers with TaskOptions.gang_size = k (SubmitOptions::gang_size in the C++
// client). The scheduler waits until k workers are idle at once, and each of them calls the
// function with the same input; the task's result is what gang rank 0 returns (the other ranks'
// results are dropped), and if any rank fails, the task fails with the lowest failing rank's error.
//
// The communicator (comm()) is made for the call with MPI_Comm_create_group over the pool's
// workers and freed after it; use it, never MPI_COMM_WORLD, which in some launch modes includes the
// gateway. Every rank must make the same collective calls: a rank that returns or throws early
// leaves the others blocked in MPI, which no interrupt can reach. So agree before giving up, e.g.
// with AnyCancelled().
//
// Gang functions run in the MPI worker process itself, on the thread that owns MPI in it (the
// worker's MPI thread), so they may call MPI directly; they are never isolated from the worker.
// Interrupts and progress reports travel only when the function calls cancelled() or
// AnyCancelled() on that thread.
//
// Thread-safety: a GangContext belongs to one call of a gang function; its MPI methods may be called
// only on the thread that called the function. cancelled() from another thread (an OpenMP team,
// say) only reads the flag.
#ifndef MPIGATE_WORKER_GANG_H_
#define MPIGATE_WORKER_GANG_H_

#include <mpi.h>

#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/task.h"

namespace mpigate {

// The worker's side of a running gang call; the worker provides it.
class GangLink {
 public:
  // Called by GangContext::cancelled() on the function's thread: forwards the latest progress
  // report and takes any interrupt for this task from the gateway, setting the task's
  // cancellation flag. Cheap when called often (it looks at the gateway at most every
  // millisecond).
  virtual void Poll() = 0;

 protected:
  ~GangLink() = default;
};

// What a gang function knows of its gang. TaskContext::rank() is still the worker's index in the
// pool; gang_rank() is its rank in comm().
class GangContext : public TaskContext {
 public:
  GangContext(const TaskContext& task, MPI_Comm comm, int gang_rank, int gang_size, GangLink* link)
      : TaskContext(task), comm_(comm), gang_rank_(gang_rank), gang_size_(gang_size), link_(link) {}

  // The gang's own communicator: gang_size() ranks, valid only during this call.
  MPI_Comm comm() const { return comm_; }
  int gang_rank() const { return gang_rank_; }
  int gang_size() const { return gang_size_; }

  // True once the task has been interrupted; on the function's thread it first looks for an
  // interrupt from the gateway (GangLink::Poll). Ranks may see it at different times: to stop
  // together, use AnyCancelled().
  bool cancelled() const {
    if (link_ != nullptr) link_->Poll();
    return TaskContext::cancelled();
  }

  // Collective over comm(): true on every rank if any rank's cancelled() is true. Call it on every
  // rank at the same point, e.g. once per iteration.
  bool AnyCancelled() const {
    int mine = cancelled() ? 1 : 0;
    int any = mine;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_LOR, comm_);
    return any != 0;
  }

 private:
  MPI_Comm comm_;
  int gang_rank_;
  int gang_size_;
  GangLink* link_;
};

// Adds a gang function to this library's list when the library loads; MPIGATE_GANG_TASK makes one.
class GangTaskRegistrar {
 public:
  // Bytes in, bytes out: any callable of that signature.
  template <typename Function,
            typename = std::enable_if_t<std::is_invocable_r_v<
                absl::StatusOr<std::string>, Function, const GangContext&, absl::string_view>>>
  GangTaskRegistrar(std::string name, std::string description, Function function) {
    TaskDefinition definition;
    definition.name = std::move(name);
    definition.description = std::move(description);
    definition.gang_function = GangFunction(std::move(function));
    task_internal::LibraryTasks().push_back(std::move(definition));
  }

  // Typed: a function taking a Protobuf request and returning a Protobuf response.
  template <typename Request, typename Response>
  GangTaskRegistrar(std::string name, std::string description,
                    absl::StatusOr<Response> (*function)(const GangContext&, const Request&)) {
    TaskDefinition definition;
    definition.request_type = Request::descriptor()->full_name();
    definition.response_type = Response::descriptor()->full_name();
    definition.gang_function =
        task_internal::TypedCall<GangContext, Request, Response>(name, function);
    definition.name = std::move(name);
    definition.description = std::move(description);
    task_internal::LibraryTasks().push_back(std::move(definition));
  }
};

}  // namespace mpigate

// Registers the gang function `function` under `name` with a one-line `description`. At namespace
// scope, like MPIGATE_TASK.
#define MPIGATE_GANG_TASK(name, description, function)                                        \
  static const ::mpigate::GangTaskRegistrar MPIGATE_TASK_CONCAT(mpigate_gang_registrar_, \
                                                                 __COUNTER__)(              \
      name, description, function)

#endif  // MPIGATE_WORKER_GANG_H_
