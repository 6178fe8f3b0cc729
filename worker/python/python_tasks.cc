// libmpigate_python.so: the workers' Python task runtime, a task library registering
//   - `python.call`: runs one Python call or map chunk (the wire format of
//     client/python/mpigate/_python_task.py) and answers its encoded outcome;
//   - `python.gang`: the same payload (one call) on every rank of a gang, in the worker process;
//     the task's result is rank 0's outcome.
// Python exceptions of the user's function travel in the outcome. The task itself fails only
// with INVALID_ARGUMENT (a payload that is not a Python task), CANCELLED (the function let the
// interrupt's KeyboardInterrupt escape) or INTERNAL (the runtime itself failed).
//
// One CPython interpreter (Debian's libpython3.11) per process, started by the first Python task
// and never finalised: imported modules, globals and caches persist between tasks. The wire
// format module and runtime.py are compiled into this library (embedded_sources.cc) and imported
// under private names, so workers need no PYTHONPATH for them. Python code also sees the module
// `_mpigate_worker`: report_progress(fraction, message=""), cancelled(), and comm_workers() (the
// gang's mpi4py Intracomm, in python.gang tasks only).
//
// Threads: a task runner runs tasks on its main thread, a worker with --isolation=none on its
// task thread, and gangs on the worker's MPI thread. Each such thread keeps its own Python thread
// state, and holds the GIL only while it runs a task. Interrupts: while a task runs, a watcher
// thread polls its TaskContext's cancellation flag (the task API has no notification) and, when
// it is set, raises KeyboardInterrupt in the task: in a task runner by sending SIGINT to the main
// thread, whose Python handler raises it even inside a blocking call such as time.sleep; in the
// worker process (whose SIGINT is not Python's to take) with PyThreadState_SetAsyncExc, which the
// task sees at its next Python instruction. A gang's flag is set only when its code calls
// _mpigate_worker.cancelled() (worker/gang.h).
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/gang.h"
#include "worker/task.h"

extern char** environ;

namespace mpigate::python {

// The embedded Python sources (embedded_sources.cc, generated at build time).
extern const char kPythonTaskSource[];
extern const char kRuntimeSource[];

namespace {

// How often the watcher looks at a running task's cancellation flag: an interrupt reaches Python
// within about this long.
constexpr absl::Duration kWatchInterval = absl::Milliseconds(5);
// How long the watcher keeps looking after the last task ended before it sleeps until the next.
constexpr absl::Duration kWatchIdleAfter = absl::Seconds(1);

// A new reference's owner.
struct PyDecRef {
  void operator()(PyObject* object) const { Py_XDECREF(object); }
};
using PyRef = std::unique_ptr<PyObject, PyDecRef>;

// Thread-locals of this library in the static TLS block (glibc keeps room there for libraries
// loaded later) rather than the dynamic TLS a dlopen'd library gets by default, which
// LeakSanitizer's thread walk crashes on in sanitizer builds.
#define MPIGATE_STATIC_TLS __attribute__((tls_model("initial-exec")))

// The task the calling thread runs, for _mpigate_worker's functions (called under the GIL, on
// that thread).
struct CurrentTask {
  const TaskContext* context = nullptr;
  const GangContext* gang = nullptr;
  PyRef comm;  // comm_workers(), made on first use
};
ABSL_CONST_INIT thread_local CurrentTask* current_task MPIGATE_STATIC_TLS = nullptr;

// The calling thread's Python thread state, kept between its tasks (threading.local and the
// like persist), made on its first task; the thread that started Python keeps its first one.
ABSL_CONST_INIT thread_local PyThreadState* this_thread_state MPIGATE_STATIC_TLS = nullptr;

// The Python exception being raised, as "Type: message" (and clears it).
std::string TakePythonError() {
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  PyRef owned_type(type), owned_value(value), owned_traceback(traceback);
  std::string text = type != nullptr ? reinterpret_cast<PyTypeObject*>(type)->tp_name : "?";
  if (value != nullptr) {
    PyRef str(PyObject_Str(value));
    const char* utf8 = str != nullptr ? PyUnicode_AsUTF8(str.get()) : nullptr;
    if (utf8 != nullptr) absl::StrAppend(&text, ": ", utf8);
  }
  PyErr_Clear();
  return text;
}

// ---- _mpigate_worker ---------------------------------------------------------------------------

PyObject* ReportProgress(PyObject*, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"fraction", "message", nullptr};
  double fraction = 0;
  const char* message = "";
  Py_ssize_t length = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "d|s#", const_cast<char**>(keywords), &fraction,
                                   &message, &length)) {
    return nullptr;
  }
  if (current_task != nullptr) {
    current_task->context->ReportProgress(fraction,
                                          absl::string_view(message, static_cast<size_t>(length)));
  }
  Py_RETURN_NONE;
}

PyObject* Cancelled(PyObject*, PyObject*) {
  if (current_task == nullptr) Py_RETURN_FALSE;
  // A gang's flag is set by its poll of the gateway, on this thread (worker/gang.h).
  const bool cancelled = current_task->gang != nullptr ? current_task->gang->cancelled()
                                                       : current_task->context->cancelled();
  return PyBool_FromLong(cancelled ? 1 : 0);
}

PyObject* CommWorkers(PyObject*, PyObject*) {
  if (current_task == nullptr || current_task->gang == nullptr) {
    PyErr_SetString(PyExc_RuntimeError,
                    "comm_workers() is only available in a gang task (submit with gang_size)");
    return nullptr;
  }
  if (current_task->comm == nullptr) {
    PyRef mpi(PyImport_ImportModule("mpi4py.MPI"));
    if (mpi == nullptr) return nullptr;
    PyRef intracomm(PyObject_GetAttrString(mpi.get(), "Intracomm"));
    if (intracomm == nullptr) return nullptr;
    // f2py wraps the handle without owning it: the worker frees the communicator after the task.
    current_task->comm.reset(PyObject_CallMethod(intracomm.get(), "f2py", "i",
                                                 MPI_Comm_c2f(current_task->gang->comm())));
    if (current_task->comm == nullptr) return nullptr;
  }
  PyObject* comm = current_task->comm.get();
  Py_INCREF(comm);
  return comm;
}

PyMethodDef kWorkerMethods[] = {
    {"report_progress", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(ReportProgress)),
     METH_VARARGS | METH_KEYWORDS,
     "report_progress(fraction, message='')\n--\n\nTells the client how far the running task "
     "has got: fraction from 0 to 1 and a few words."},
    {"cancelled", Cancelled, METH_NOARGS,
     "cancelled()\n--\n\nTrue once the running task has been interrupted."},
    {"comm_workers", CommWorkers, METH_NOARGS,
     "comm_workers()\n--\n\nThe mpi4py Intracomm of the running gang task's workers."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kWorkerModule = {PyModuleDef_HEAD_INIT, "_mpigate_worker",
                             "What a Python task may know of, and tell, the mpigate worker it "
                             "runs on.",
                             -1, kWorkerMethods};

PyObject* InitWorkerModule() { return PyModule_Create(&kWorkerModule); }

// ---- The interrupt watcher ---------------------------------------------------------------------

// Raises KeyboardInterrupt in the running task once its cancellation flag is set (see the top of
// this file). Thread-safety: Begin and End are called by the task's thread, holding the GIL.
class Watcher {
 public:
  explicit Watcher(bool use_signal) : use_signal_(use_signal) {
    std::thread(&Watcher::Loop, this).detach();
  }

  void Begin(const TaskContext& context) {
    absl::MutexLock lock(&mu_);
    context_ = &context;
    thread_ = pthread_self();
    thread_id_ = PyThread_get_thread_ident();  // what PyThreadState_SetAsyncExc matches
    ++generation_;
  }

  // After it returns, no interrupt of the ended task is sent; one already sent is cleared.
  void End() {
    {
      absl::MutexLock lock(&mu_);
      context_ = nullptr;
    }
    if (use_signal_) {
      // The signal, if one was sent, went to this thread before End took the lock; its handler
      // has tripped Python's flag, which this runs and clears.
      if (PyErr_CheckSignals() != 0) PyErr_Clear();
    } else {
      PyThreadState_SetAsyncExc(thread_id_, nullptr);
    }
  }

 private:
  // A task began that the loop has not looked at yet.
  bool NewTask() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return context_ != nullptr && generation_ != watched_;
  }

  // Idle, it sleeps until a task begins: one wake-up per idle spell. Busy, it looks every
  // kWatchInterval without waiting on a condition, so that neither Begin nor End of a task wakes
  // it: a wake-up at each start and end was two context switches per task, a good part of a
  // short task's round trip on a small machine. It goes back to sleep once no task has run for
  // kWatchIdleAfter.
  void Loop() {
    absl::MutexLock lock(&mu_);
    while (true) {
      mu_.Await(absl::Condition(this, &Watcher::NewTask));
      absl::Time last_busy = absl::Now();
      while (absl::Now() - last_busy < kWatchIdleAfter) {
        watched_ = generation_;
        if (context_ != nullptr) {
          last_busy = absl::Now();
          if (fired_ != generation_ && context_->cancelled()) {
            fired_ = generation_;
            Fire();
          }
        }
        mu_.Unlock();
        absl::SleepFor(kWatchInterval);
        mu_.Lock();
      }
    }
  }

  void Fire() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (use_signal_) {
      pthread_kill(thread_, SIGINT);
      return;
    }
    // The GIL comes before mu_ (the task's thread holds it when it takes mu_): let go, take the
    // GIL, and check that the same task still runs.
    const uint64_t task = generation_;
    mu_.Unlock();
    const PyGILState_STATE gil = PyGILState_Ensure();
    mu_.Lock();
    if (context_ != nullptr && generation_ == task) {
      PyThreadState_SetAsyncExc(thread_id_, PyExc_KeyboardInterrupt);
    }
    mu_.Unlock();
    PyGILState_Release(gil);
    mu_.Lock();
  }

  const bool use_signal_;
  absl::Mutex mu_;
  const TaskContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  pthread_t thread_ ABSL_GUARDED_BY(mu_) = {};
  unsigned long thread_id_ = 0;  // the running task's Python thread; read under the GIL
  // Bumped by each Begin; the loop's `watched_` is the task it looks at.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t watched_ ABSL_GUARDED_BY(mu_) = 0;
  // The task the loop interrupted last.
  uint64_t fired_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---- The interpreter ---------------------------------------------------------------------------

// The process's interpreter; Get() starts it. Thread-safety: Run may be called from any thread,
// one task at a time per thread; the GIL serialises them.
class Interpreter {
 public:
  // The interpreter, started on the first call; an error if it could not start (and on every
  // later call: a process gets one try).
  static absl::StatusOr<Interpreter*> Get() {
    static Interpreter* const interpreter = new Interpreter();
    if (!interpreter->start_status_.ok()) return interpreter->start_status_;
    return interpreter;
  }

  // Runs `payload` and returns its outcome. `gang` is null for python.call.
  absl::StatusOr<std::string> Run(const TaskContext& context, const GangContext* gang,
                                  absl::string_view payload) {
    if (this_thread_state == nullptr) this_thread_state = PyThreadState_New(interpreter_);
    PyEval_RestoreThread(this_thread_state);
    absl::StatusOr<std::string> outcome = RunHoldingGil(context, gang, payload);
    this_thread_state = PyEval_SaveThread();
    return outcome;
  }

 private:
  Interpreter() { start_status_ = Start(); }

  absl::Status Start() {
    // Extension modules (numpy's, mpi4py's) expect libpython's symbols to be global, but the
    // worker loads this library, and with it libpython, RTLD_LOCAL.
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&Py_IsInitialized), &info) == 0 ||
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL) == nullptr) {
      return absl::InternalError("cannot make libpython's symbols global");
    }
    if (PyImport_AppendInittab("_mpigate_worker", &InitWorkerModule) != 0) {
      return absl::InternalError("cannot add the _mpigate_worker module");
    }
    int mpi_initialized = 0;
    MPI_Initialized(&mpi_initialized);
    // A task runner (no MPI) runs tasks on its main thread, this one, and owns its SIGINT.
    const bool own_sigint = mpi_initialized == 0;
#if defined(__SANITIZE_ADDRESS__)
    // Python's small objects live in its own arenas, mapped with mmap, which LeakSanitizer does
    // not scan: whatever only they point to would look leaked. Under AddressSanitizer they come
    // from malloc, which it scans (and checks).
    PyPreConfig preconfig;
    PyPreConfig_InitPythonConfig(&preconfig);
    preconfig.allocator = PYMEM_ALLOCATOR_MALLOC;
    if (PyStatus pre = Py_PreInitialize(&preconfig); PyStatus_Exception(pre)) {
      return absl::InternalError(absl::StrCat("cannot start Python: ",
                                              pre.err_msg != nullptr ? pre.err_msg : "?"));
    }
#endif
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;  // the process's signals are the worker's
    config.parse_argv = 0;
    config.safe_path = 1;                // no current directory in sys.path
    config.user_site_directory = 1;
    PyStatus status = PyConfig_SetString(&config, &config.program_name, L"python3");
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
      return absl::InternalError(absl::StrCat("cannot start Python: ",
                                              status.err_msg != nullptr ? status.err_msg : "?"));
    }
    interpreter_ = PyThreadState_Get()->interp;
    absl::Status loaded = LoadRuntime(own_sigint);
    if (loaded.ok()) watcher_ = std::make_unique<Watcher>(own_sigint);
    this_thread_state = PyEval_SaveThread();
    return loaded;
  }

  // Imports the embedded modules and keeps what Run calls.
  absl::Status LoadRuntime(bool own_sigint) {
    PyRef task_module(ExecModule("_mpigate_python_task", kPythonTaskSource,
                                 "<libmpigate_python.so>/mpigate/_python_task.py"));
    PyRef runtime(
        ExecModule("_mpigate_runtime", kRuntimeSource, "<libmpigate_python.so>/runtime.py"));
    if (task_module == nullptr || runtime == nullptr) {
      return absl::InternalError(
          absl::StrCat("cannot load the Python task runtime: ", TakePythonError()));
    }
    run_.reset(PyObject_GetAttrString(runtime.get(), "run"));
    sync_environ_.reset(PyObject_GetAttrString(runtime.get(), "sync_environ"));
    not_a_task_.reset(PyObject_GetAttrString(task_module.get(), "NotAPythonTask"));
    PyRef started(PyObject_CallMethod(runtime.get(), "start", "O", own_sigint ? Py_True : Py_False));
    if (run_ == nullptr || sync_environ_ == nullptr || not_a_task_ == nullptr ||
        started == nullptr) {
      return absl::InternalError(
          absl::StrCat("cannot start the Python task runtime: ", TakePythonError()));
    }
    return absl::OkStatus();
  }

  // A new module `name` in sys.modules, made by running `source` in it.
  static PyObject* ExecModule(const char* name, const char* source, const char* filename) {
    PyRef module(PyImport_AddModule(name));  // borrowed: keep our own reference
    if (module == nullptr) return nullptr;
    Py_INCREF(module.get());
    PyObject* globals = PyModule_GetDict(module.get());
    PyRef file(PyUnicode_FromString(filename));
    if (file == nullptr || PyDict_SetItemString(globals, "__file__", file.get()) != 0 ||
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) != 0) {
      return nullptr;
    }
    PyRef code(Py_CompileString(source, filename, Py_file_input));
    if (code == nullptr) return nullptr;
    PyRef result(PyEval_EvalCode(code.get(), globals, globals));
    if (result == nullptr) {
      PyObject* modules = PyImport_GetModuleDict();
      PyDict_DelItemString(modules, name);
      return nullptr;
    }
    return module.release();
  }

  // os.environ again in step with the C library's environment if it changed (a task runner
  // installs each executor's own: worker/task_environment.h). Compared by content: the runner
  // reuses its arrays and strings, so the same pointers may hold other variables.
  absl::Status SyncEnviron() {
    size_t count = 0;
    while (environ != nullptr && environ[count] != nullptr) ++count;
    if (count == last_environ_.size() &&
        std::equal(last_environ_.begin(), last_environ_.end(), environ,
                   [](const std::string& last, const char* now) { return last == now; })) {
      return absl::OkStatus();
    }
    std::vector<std::string> entries(environ, environ + count);
    PyRef list(PyList_New(static_cast<Py_ssize_t>(count)));
    if (list == nullptr) return absl::InternalError(TakePythonError());
    for (size_t i = 0; i < count; ++i) {
      PyObject* bytes = PyBytes_FromStringAndSize(entries[i].data(),
                                                  static_cast<Py_ssize_t>(entries[i].size()));
      if (bytes == nullptr) return absl::InternalError(TakePythonError());
      PyList_SET_ITEM(list.get(), static_cast<Py_ssize_t>(i), bytes);
    }
    PyRef done(PyObject_CallOneArg(sync_environ_.get(), list.get()));
    if (done == nullptr) return absl::InternalError(TakePythonError());
    last_environ_ = std::move(entries);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> RunHoldingGil(const TaskContext& context, const GangContext* gang,
                                            absl::string_view payload) {
    if (absl::Status status = SyncEnviron(); !status.ok()) return status;
    CurrentTask task;
    task.context = &context;
    task.gang = gang;
    current_task = &task;
    watcher_->Begin(context);
    PyRef view(PyMemoryView_FromMemory(const_cast<char*>(payload.data()),
                                       static_cast<Py_ssize_t>(payload.size()), PyBUF_READ));
    PyRef parts(view != nullptr ? PyObject_CallOneArg(run_.get(), view.get()) : nullptr);
    absl::StatusOr<std::string> outcome;
    if (parts == nullptr) {
      const bool interrupted = PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
      const bool invalid = PyErr_ExceptionMatches(not_a_task_.get());
      const std::string error = TakePythonError();
      outcome = interrupted ? absl::CancelledError("interrupted: the Python function let "
                                                   "KeyboardInterrupt escape")
                : invalid   ? absl::InvalidArgumentError(
                                absl::StrCat("python: the payload is not a Python task: ", error))
                            : absl::InternalError(absl::StrCat("python runtime: ", error));
    } else {
      outcome = JoinParts(parts.get());
    }
    parts.reset();
    watcher_->End();
    if (view != nullptr) {
      // Nothing may keep the payload's memory past the task (runtime.py copies what could).
      PyRef released(PyObject_CallMethod(view.get(), "release", nullptr));
      if (released == nullptr) PyErr_Clear();
    }
    current_task = nullptr;
    return outcome;
  }

  // The concatenation of a list of bytes-like parts.
  static absl::StatusOr<std::string> JoinParts(PyObject* parts) {
    PyRef sequence(PySequence_Fast(parts, "the runtime's outcome is not a list of parts"));
    if (sequence == nullptr) return absl::InternalError(TakePythonError());
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence.get());
    std::vector<Py_buffer> buffers(static_cast<size_t>(count));
    size_t total = 0;
    Py_ssize_t held = 0;
    absl::Status status;
    for (; held < count; ++held) {
      PyObject* part = PySequence_Fast_GET_ITEM(sequence.get(), held);
      if (PyObject_GetBuffer(part, &buffers[held], PyBUF_C_CONTIGUOUS) != 0) {
        status = absl::InternalError(TakePythonError());
        break;
      }
      total += static_cast<size_t>(buffers[held].len);
    }
    std::string joined;
    if (status.ok()) {
      joined.reserve(total);
      for (Py_ssize_t i = 0; i < count; ++i) {
        joined.append(static_cast<const char*>(buffers[i].buf),
                      static_cast<size_t>(buffers[i].len));
      }
    }
    for (Py_ssize_t i = 0; i < held; ++i) PyBuffer_Release(&buffers[i]);
    if (!status.ok()) return status;
    return joined;
  }

  absl::Status start_status_;
  PyInterpreterState* interpreter_ = nullptr;
  std::unique_ptr<Watcher> watcher_;
  PyRef run_;
  PyRef sync_environ_;
  PyRef not_a_task_;
  // The environment os.environ was last made from; under the GIL.
  std::vector<std::string> last_environ_;
};

absl::StatusOr<std::string> PythonCall(const TaskContext& context, absl::string_view payload) {
  absl::StatusOr<Interpreter*> interpreter = Interpreter::Get();
  if (!interpreter.ok()) return interpreter.status();
  return (*interpreter)->Run(context, nullptr, payload);
}

absl::StatusOr<std::string> PythonGang(const GangContext& gang, absl::string_view payload) {
  absl::StatusOr<Interpreter*> interpreter = Interpreter::Get();
  if (!interpreter.ok()) return interpreter.status();
  return (*interpreter)->Run(gang, &gang, payload);
}

}  // namespace

MPIGATE_TASK("python.call",
             "Runs a Python call or map chunk (mpigate._python_task's payload); the result is "
             "its encoded outcome.",
             PythonCall);
MPIGATE_GANG_TASK("python.gang",
                  "Runs a Python call on every rank of a gang, where "
                  "mpigate.futures.get_comm_workers() is the gang's communicator; the result is "
                  "rank 0's encoded outcome.",
                  PythonGang);

}  // namespace mpigate::python
