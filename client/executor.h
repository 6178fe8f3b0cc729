// mpigate::Executor: submit tasks to a running mpigate service and get futures back, with the
// semantics of Python's concurrent.futures / mpi4py.futures.MPIPoolExecutor.
//
//   absl::StatusOr<std::unique_ptr<mpigate::Executor>> executor = mpigate::Executor::Connect();
//   mpigate::Future future = (*executor)->Submit("echo", "hello");
//   absl::StatusOr<std::string> result = future.Result();   // "hello"
//   for (absl::StatusOr<std::string> r : (*executor)->Map("echo", {"a", "b"})) { ... }
//   // Fails with DEADLINE_EXCEEDED if no worker took it within 5 s.
//   mpigate::Future soon = (*executor)->Submit("echo", "hi", {.queue_timeout = absl::Seconds(5)});
//   // A gang function (worker/gang.h) on 4 workers at once, with a communicator of their own.
//   mpigate::Future sum = (*executor)->Submit("mylib.sum", input, {.gang_size = 4});
//   // Once on every worker: to load data or warm a cache.
//   mpigate::BroadcastFuture loaded = (*executor)->Broadcast("mylib.load", path);
//   // Items 0..999 of a seeded ensemble, 50 per task; item i's seed is ItemSeed(7, i).
//   mpigate::RangeOptions range = {.count = 1000, .batch_size = 50, .base_seed = 7};
//   for (absl::StatusOr<std::string> r : (*executor)->MapRange("mylib.walk", params, range)) {
//     ...
//   }
//
// Payloads and results are bytes. For functions typed with Protobuf messages, client/typed.h
// submits messages and decodes results (SubmitTyped, MapTyped, MapRangeTyped); ListFunctions()
// says which functions take which types, and which are gang functions.
//
// One Executor is one session of the service, over one gRPC stream; many executors, in one
// process or many, share the service's pool fairly, and one executor's shutdown or cancel never
// touches another's futures. Any number of threads may submit through the same Executor at once:
// submissions are batched onto the stream by a writer thread (a small task submitted while
// nothing else is in flight is written by its caller, so that a round trip waits for no other
// thread), and a reader thread marks futures running and completes them (running their done
// callbacks) as updates arrive.
//
// A session survives a dropped connection: when its stream breaks, the executor resumes the
// session on a new connection, with backoff, for as long as the service keeps it (its grace
// period, mpigate-server --resume_grace_s): nothing is lost or run twice, and every future
// completes exactly once. Only if the grace period passes do pending futures fail with
// UNAVAILABLE. A process that died can be followed by one that resumes its session
// (ExecutorOptions::resume_token) and collects the results it never read (Reattached()).
//
// An outcome counts as read once its future is complete and its done callbacks have run: the
// executor then acknowledges it to the service, which forgets it (and, until then, counts it
// against its --max_unread_result_mb). A program that must not lose results if it dies records
// them in done callbacks, and passes the ids it recorded to the executor that resumes its session
// (ExecutorOptions::acked_task_ids).
//
// This header also brings in Future (client/future.h), BroadcastFuture (client/broadcast.h),
// MapResults (client/map_results.h), and AsCompleted() and Wait() (client/wait.h).
//
// Thread-safety: every method may be called from any thread, except that Shutdown(wait=true) and
// Bootup(wait=true) must not be called from a done callback (they would wait for the thread that
// runs it).
#ifndef MPIGATE_CLIENT_EXECUTOR_H_
#define MPIGATE_CLIENT_EXECUTOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/broadcast.h"
#include "client/future.h"
#include "client/map_results.h"
#include "client/wait.h"

namespace mpigate {

namespace internal {
class Session;
}  // namespace internal

struct ExecutorOptions {
  // gRPC target such as "unix:/tmp/mpigate-0/gateway.sock" or "node12:50051". Empty: from
  // $MPIGATE_ENDPOINT, else the endpoint file (see common/endpoint.h).
  std::string endpoint;
  // The bearer token a service listening on TCP requires, sent with every call (in clear text
  // unless over TLS; see common/access.h). Empty: $MPIGATE_TOKEN, else the endpoint file's when
  // the endpoint came from it. A wrong or missing one fails Connect() with UNAUTHENTICATED.
  std::string token;
  // TLS (mpigate-server --tls-cert): the CA certificate that signed the service's, PEM text or a
  // file's path; given, the client speaks TLS. Empty: $MPIGATE_TLS_CA; if neither, TLS only when
  // the endpoint file says so, verified against the system's roots. A certificate that does not
  // verify fails Connect() with UNAVAILABLE.
  std::string tls_ca;
  // A client certificate and its key (PEM text or paths), for a service that verifies clients
  // (--tls-client-ca). Empty: $MPIGATE_TLS_CERT and $MPIGATE_TLS_KEY.
  std::string tls_cert;
  std::string tls_key;
  // A label for the session in the service's status output.
  std::string client_name;
  // How long Connect() waits for the service to answer.
  absl::Duration connect_timeout = absl::Seconds(10);
  // The largest message this client sends or accepts; must not exceed the server's limit.
  int max_message_bytes = 512 << 20;
  // Resume the session of an executor that is gone, typically in a process that died, instead of
  // opening a new one: that executor's resume_token(). Its tasks' futures are then in
  // Reattached(). Connect() fails with NOT_FOUND if the service no longer has the session (it
  // closed, or its grace period passed), and retries within connect_timeout while the service
  // has not yet noticed that the earlier connection is gone.
  std::string resume_token;
  // With resume_token: ids of the session's tasks whose outcomes the application already has
  // (e.g. recorded by the earlier process in done callbacks). The service forgets those outcomes
  // instead of sending them again, and Reattached() leaves them out.
  std::vector<uint64_t> acked_task_ids;
  // Payloads and results of at least this many bytes skip the gRPC stream and MPI: they travel in
  // shared memory objects (/dev/shm, mode 0600) where the service runs on this host as this user
  // and the task's worker does too, which the service tells the client when the session opens.
  // Elsewhere they go in the messages as any other. 0: never.
  uint64_t shared_memory_min_bytes = 64 << 10;
  // Environment variables for this executor's tasks (OpenSession.env): each starts with the
  // pool's environment plus these, and no task sees what a task of another executor set. Names
  // without '=' or NUL, at most 64 KiB in all (INVALID_ARGUMENT from Connect()); a pool with
  // --isolation=none refuses them (FAILED_PRECONDITION). Empty: the pool's environment.
  std::map<std::string, std::string> env;
  // The most of this executor's tasks on workers at once, as mpi4py.futures' max_workers on a
  // shared pool (OpenSession.max_running_tasks): the rest wait in its queue while other clients'
  // tasks use the free workers. A task counts while it runs or waits in a worker's backlog, a
  // gang once per member; a broadcast does not count. A gang larger than the cap is rejected
  // with INVALID_ARGUMENT. Prefetched tasks count, so a cap also bounds prefetch: a cap of the
  // pool's size leaves each worker one task at a time, which costs tasks of well under a
  // millisecond most of their throughput. 0: no cap. Kept when the session is resumed.
  uint32_t max_running_tasks = 0;
};

// The pool's life, as the service reports it (mpigate.v1.PoolState).
enum class PoolState {
  kBooting,   // Workers are starting; tasks queue.
  kReady,     // Tasks run.
  kBroken,    // A worker initializer failed: tasks fail with FAILED_PRECONDITION "BrokenExecutor:".
  kDraining,  // The service is stopping: no new tasks (UNAVAILABLE).
};

struct SubmitOptions {
  // The full name of the Protobuf message in the payload, e.g. "mpigate.v1.ExecRequest". The
  // service rejects the task with INVALID_ARGUMENT if the function declares another request type.
  // Empty: not checked. client/typed.h sets it.
  std::string payload_type;
  // How long the task may wait for a worker: if none has taken it by then, it fails with
  // DEADLINE_EXCEEDED and never runs. Counted from when the service accepts it; whole
  // milliseconds, rounded up.
  absl::Duration queue_timeout = absl::InfiniteDuration();
  // For a gang function (FunctionInfo::gang): how many workers run it at once, each with its rank
  // in a communicator of their own (worker/gang.h); the result is gang rank 0's, or the error of
  // the lowest rank that failed. 0 means 1. The task waits until that many workers are idle at
  // once, and no other task starts meanwhile, so a stream of small tasks cannot starve it. The
  // service rejects with INVALID_ARGUMENT a gang larger than the pool, or above 1 for a function
  // that is not a gang function. Unsigned, as on the wire.
  uint32_t gang_size = 0;
  // How long the task may run once a worker has started it: past that it is killed and fails
  // with DEADLINE_EXCEEDED (with --isolation=none, and for gang functions, its cancellation flag
  // is set instead and it fails so when the function returns). Whole milliseconds, rounded up.
  absl::Duration run_timeout = absl::InfiniteDuration();
  // How many times to run the task again if the process running it dies under it (a segfault,
  // abort(), exit(), the OOM killer). 0: the first crash fails the task with ABORTED. At most 10;
  // not for broadcasts. Future::attempts() says how many runs it took.
  uint32_t max_retries = 0;
};

// A function the pool's workers can run (Executor::ListFunctions).
struct FunctionInfo {
  std::string name;
  // One line on what it does and what its payload and result are.
  std::string description;
  // For a typed function, the full names of its request and response messages, e.g.
  // "mpigate.v1.ExecRequest"; empty for a function of raw bytes.
  std::string request_type;
  std::string response_type;
  // A gang function (worker/gang.h): submit it with SubmitOptions::gang_size.
  bool gang = false;
};

struct MapOptions {
  // Inputs per task (mpi4py's chunksize): one task carries this many inputs and the worker runs
  // the function on each. Larger chunks cost fewer round trips for small tasks. Must be >= 1.
  int chunksize = 1;
  // Yield results as chunks complete (mpi4py's unordered=True) rather than in input order.
  bool unordered = false;
  // Counted from the Map() call, as in Python: each result waits at most until then.
  absl::Duration timeout = absl::InfiniteDuration();
  // As SubmitOptions::payload_type, for every input. MapTyped (client/typed.h) sets it.
  std::string payload_type;
  // As SubmitOptions, for each chunk: a chunk that runs longer is killed, and one whose runner
  // dies runs again this many times; its items then fail together.
  absl::Duration run_timeout = absl::InfiniteDuration();
  uint32_t max_retries = 0;
  // Beyond concurrent.futures: an item's error is yielded at its place and the iteration goes on;
  // a chunk that failed as a whole (rejected, cancelled, connection lost) yields its error once
  // for each of its items; only the map's timeout ends the iteration early (DEADLINE_EXCEEDED,
  // unstarted chunks cancelled). Every input then has exactly one result, and
  // MapResults::index() says whose, also in an unordered map.
  bool keep_going = false;
};

// A seeded range map (Executor::MapRange): items [first, first + count), each computed from the
// same payload and its own index and seed (TaskContext::item_index() and item_seed() on the
// worker, the seed being ItemSeed(base_seed, index) of worker/task.h). Nothing per item crosses
// the network, and an item's result does not depend on how the range is split into batches.
struct RangeOptions {
  // Items in the map; 0 makes an empty map.
  uint64_t count = 0;
  // Items per task, as MapOptions::chunksize: one task computes this many in a row. Must be >= 1;
  // the service refuses batches above 1,048,576 items (INVALID_ARGUMENT).
  int batch_size = 1;
  // Mixed with each item's index into its seed: the same base seed gives the same items.
  uint64_t base_seed = 0;
  // The first item's index: a later map from `first` = the earlier `count` extends an ensemble
  // with items the earlier map did not compute.
  uint64_t first = 0;
  // As MapOptions: by batch as they complete rather than in index order; the map's timeout.
  bool unordered = false;
  absl::Duration timeout = absl::InfiniteDuration();
  // As SubmitOptions::payload_type. MapRangeTyped (client/typed.h) sets it.
  std::string payload_type;
  // As MapOptions, for each batch.
  absl::Duration run_timeout = absl::InfiniteDuration();
  uint32_t max_retries = 0;
  // As MapOptions::keep_going: every item's result or error, a failed batch's error once per
  // item; MapResults::index() is then the item's offset from `first`.
  bool keep_going = false;
};

class Executor {
 public:
  // Connects to the service and opens a session. UNAVAILABLE if the service does not answer
  // within the connect timeout; NOT_FOUND if no endpoint is known.
  static absl::StatusOr<std::unique_ptr<Executor>> Connect(ExecutorOptions options = {});

  // Shutdown(wait=true), then closes the connection: Python's `with` block ending.
  ~Executor();

  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Submits `function(payload)` and returns its future at once; never blocks on the network.
  // After Shutdown() the future fails with FAILED_PRECONDITION "cannot submit after shutdown".
  Future Submit(absl::string_view function, std::string payload);
  Future Submit(absl::string_view function, std::string payload, const SubmitOptions& options);

  // Submits `function` over `inputs` in chunks of `options.chunksize` (one task each) and returns
  // the results to iterate; see client/map_results.h. Never blocks on the network. A chunksize
  // below 1 yields one INVALID_ARGUMENT (keep_going or not); after Shutdown() the first result is
  // FAILED_PRECONDITION (with keep_going, every result).
  MapResults Map(absl::string_view function, std::vector<std::string> inputs,
                 const MapOptions& options = {});

  // A seeded range map: submits ceil(count / batch_size) tasks, each computing a batch of
  // consecutive items of the range (see RangeOptions) with `payload` as input, and returns the
  // results to iterate, item `first` first, exactly as Map() does (client/map_results.h). Never
  // blocks on the network. A batch_size below 1, or a range past the largest index, yields one
  // INVALID_ARGUMENT; after Shutdown() the first result is FAILED_PRECONDITION (with keep_going,
  // every result).
  MapResults MapRange(absl::string_view function, std::string payload, const RangeOptions& options);

  // Submits `function(payload)` to run once on every worker of the pool at once, and returns its
  // future at once (client/broadcast.h); never blocks on the network. `options` as for Submit(),
  // except gang_size, which a broadcast refuses (INVALID_ARGUMENT): a gang function broadcast runs
  // as a gang of the whole pool.
  BroadcastFuture Broadcast(absl::string_view function, std::string payload,
                            const SubmitOptions& options = {});

  // Stops accepting submissions, as Executor.shutdown(wait, cancel_futures):
  // - `cancel_futures`: cancels this session's tasks that have not started; their futures are
  //   CANCELLED when this returns. Works also after an earlier Shutdown() without it.
  // - `wait`: blocks until every future of this session is done.
  // Safe to call more than once.
  void Shutdown(bool wait = true, bool cancel_futures = false);

  // mpi4py's bootup(). With `wait`, blocks until the pool is ready to run tasks and says how it
  // ended up: OK when READY; FAILED_PRECONDITION "BrokenExecutor: <reason>" when BROKEN;
  // UNAVAILABLE when the service drains or the connection is lost. Without `wait`, reports the
  // state as known now (BOOTING is OK). FAILED_PRECONDITION after Shutdown().
  absl::Status Bootup(bool wait = true);

  // The pool's state as last reported (READY for a service that does not report it).
  PoolState pool_state() const;

  // The number of workers in the pool, as the service last reported.
  int workers() const;

  // The functions the workers can run, sorted by name: one call to the service, which waits at
  // most `timeout` (DEADLINE_EXCEEDED then). UNAVAILABLE while the pool is still booting or if the
  // service cannot be reached. Works also after Shutdown().
  absl::StatusOr<std::vector<FunctionInfo>> ListFunctions(
      absl::Duration timeout = absl::Seconds(10)) const;

  // The secret that resumes this executor's session from another executor, typically in a new
  // process after this one died (ExecutorOptions::resume_token). Whoever holds it can read the
  // session's results: keep it as private as they are. Empty if the service cannot resume
  // sessions.
  const std::string& resume_token() const;

  // For an executor that resumed a session (ExecutorOptions::resume_token): futures of the tasks
  // the earlier executor submitted whose outcomes were not read (acknowledged) or listed in
  // acked_task_ids, in task id order (Future::task_id() is the earlier executor's). Whether queued,
  // running or ended meanwhile, each completes as Submit()'s futures do. Empty otherwise.
  const std::vector<Future>& Reattached() const;

 private:
  explicit Executor(std::shared_ptr<internal::Session> session);
  // Shared with the futures' weak references; see client/internal/session.h.
  std::shared_ptr<internal::Session> session_;
};

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_EXECUTOR_H_
