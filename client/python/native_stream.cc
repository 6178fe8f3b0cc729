// mpigate._native_stream: the bytes of the Python client's Session stream, moved by gRPC C++.
//
// The Python client (mpigate/_session.py) serializes SessionRequest and parses SessionEvent with
// Python protobuf; this module only carries the bytes, over a gRPC C++ bidi stream of
// grpc::ByteBuffer (the generic stub), so it depends on no proto of ours. Against grpcio's
// synchronous stream it saves the threads grpcio puts between the caller and the socket (a
// request-consumer thread that drains the request iterator, the channel's completion thread): a
// write starts on the thread that calls write(), which does not wait for it to complete, and the
// thread that calls read() polls gRPC itself, with the GIL released while it waits.
//
//   channel = Channel(target, method, max_message_bytes, tls=False, root_certificates=None,
//                     private_key=None, certificate_chain=None)
//   stream = channel.stream(metadata=[("authorization", "Bearer ...")], wait_for_ready=True)
//   stream.write(b"...")    # True: it goes after those before; False once the call has ended
//   stream.read()           # the next message's bytes; None once the call has ended
//   stream.finish()         # (status code as an int, message), after read() gave None
//   stream.cancel()         # from any thread: ends the call (CANCELLED), unblocking both sides
//
// The channel is made as grpcio made it: insecure, or TLS with the given PEMs (root certificates
// None: gRPC's default roots), the message size limits both ways, and reconnection backoff of 0.1
// up to 1 s. Each stream's initial metadata (the bearer token) goes out with its first write, so
// making a stream never blocks; with wait_for_ready that write and the first read wait for the
// service until cancel().
//
// Threads: a Channel may be used from any thread. A Stream may be written from any thread (in
// the order of the calls; a write waits only while 16 MiB are queued behind the one gRPC sends)
// while one thread reads (read(), then finish()): that thread polls the stream's completions, so
// writes after the first of a burst go out as it reads (or waits to read). cancel() may be called
// from any thread at any time. Blocking calls release the GIL. Objects are freed as Python frees
// them: a Stream not finished is cancelled and finished then.

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace mpigate::python {
namespace {

// Messages at least this large are copied into Python bytes without the GIL.
constexpr size_t kCopyWithoutGilBytes = 1 << 20;
// Writes queued behind the one in flight, beyond which write() waits for room.
constexpr size_t kMaxQueuedWriteBytes = 16 << 20;

// One call of the stream method, over gRPC's asynchronous API with a completion queue of its own
// that only the reading thread polls (in Read and Finish). Write starts the message's write, or
// queues it behind the one in flight, and returns: the writing thread never waits for gRPC to
// report the write done (with the synchronous API it did, most of the time woken by another
// thread), and the reader, which waits on the queue anyway, starts the next queued write as the
// one before completes. Thread-safe as the file comment says.
class Stream {
 public:
  // Starts the call; sends nothing yet (its metadata goes with the first write).
  Stream(std::shared_ptr<grpc::Channel> channel, const std::string& method,
         const std::vector<std::pair<std::string, std::string>>& metadata, bool wait_for_ready)
      : channel_(std::move(channel)), stub_(channel_) {
    for (const auto& [key, value] : metadata) context_.AddMetadata(key, value);
    context_.set_wait_for_ready(wait_for_ready);
    context_.set_initial_metadata_corked(true);
    call_ = stub_.PrepareCall(&context_, method, &queue_);
    call_->StartCall(nullptr);  // Corked: no completion comes for it.
  }

  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Ends a call still open (as cancelled) and drains the queue, which gRPC requires.
  ~Stream() {
    Cancel();
    Finish();
    queue_.Shutdown();
    void* tag;
    bool ok;
    while (queue_.Next(&tag, &ok)) {
    }
  }

  // Sends `size` bytes at `data` as one message after those written before; false if the call
  // is known to have ended. Waits only while kMaxQueuedWriteBytes are queued.
  bool Write(const char* data, size_t size) ABSL_LOCKS_EXCLUDED(mu_) {
    grpc::Slice slice(data, size);  // A copy: the caller's buffer is only borrowed.
    grpc::ByteBuffer buffer(&slice, 1);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &Stream::HasRoomLocked));
    if (ended_) return false;
    if (write_in_flight_) {
      queued_bytes_ += size;
      queued_.push_back(std::move(buffer));
    } else {
      StartWriteLocked(buffer);
    }
    return true;
  }

  // Half-closes the stream after the writes before; false if the call is known to have ended.
  bool WritesDone() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (ended_) return false;
    writes_done_wanted_ = true;
    if (!write_in_flight_) StartWritesDoneLocked();
    return true;
  }

  // The next message, or nullopt once the call has ended. One thread at a time.
  std::optional<grpc::ByteBuffer> Read() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return std::nullopt;
    }
    grpc::ByteBuffer buffer;
    call_->Read(&buffer, Tag(kRead));
    if (!AwaitCompletion(kRead)) {
      absl::MutexLock lock(&mu_);
      EndLocked();
      return std::nullopt;
    }
    return buffer;
  }

  // The call's status: blocks until the service ended the call (or Cancel()); call it from the
  // reading thread once Read() gave nullopt. Later calls return the same status.
  grpc::Status Finish() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return status_;
      EndLocked();
    }
    call_->Finish(&status_, Tag(kFinish));
    AwaitCompletion(kFinish);
    // A write in flight completes too (failed, the call being over): its buffer is gRPC's until.
    while (WriteInFlight()) AwaitCompletion(kNone);
    absl::MutexLock lock(&mu_);
    finished_ = true;
    return status_;
  }

  void Cancel() { context_.TryCancel(); }

 private:
  enum Kind : intptr_t { kNone, kWrite, kWritesDone, kRead, kFinish };

  static void* Tag(Kind kind) { return reinterpret_cast<void*>(kind); }

  bool WriteInFlight() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return write_in_flight_;
  }

  bool HasRoomLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_ || queued_bytes_ < kMaxQueuedWriteBytes;
  }

  void StartWriteLocked(const grpc::ByteBuffer& buffer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    write_in_flight_ = true;
    call_->Write(buffer, Tag(kWrite));
  }

  void StartWritesDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writes_done_wanted_ = false;
    write_in_flight_ = true;
    call_->WritesDone(Tag(kWritesDone));
  }

  // No more writes start; those queued are dropped.
  void EndLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ended_ = true;
    queued_.clear();
    queued_bytes_ = 0;
  }

  // Polls the queue until `wanted` completes (kNone: any one), handling write completions on
  // the way; whether `wanted` succeeded.
  bool AwaitCompletion(Kind wanted) ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      void* tag;
      bool ok;
      if (!queue_.Next(&tag, &ok)) return false;
      const auto kind = static_cast<Kind>(reinterpret_cast<intptr_t>(tag));
      if (kind == kWrite || kind == kWritesDone) {
        absl::MutexLock lock(&mu_);
        write_in_flight_ = false;
        if (!ok) {
          EndLocked();  // The call is over; the reader learns why from Finish.
        } else if (!queued_.empty()) {
          queued_bytes_ -= queued_.front().Length();
          StartWriteLocked(queued_.front());
          queued_.pop_front();
        } else if (writes_done_wanted_) {
          StartWritesDoneLocked();
        }
      }
      if (kind == wanted || wanted == kNone) return ok;
    }
  }

  const std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  grpc::ClientContext context_;
  grpc::CompletionQueue queue_;
  // Constant after construction. Write and WritesDone start under mu_; Read and Finish start on
  // the reading thread, which alone polls queue_.
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  grpc::Status status_;  // Written by Finish's completion, read once finished_.

  absl::Mutex mu_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;  // a Write or WritesDone op
  std::deque<grpc::ByteBuffer> queued_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool writes_done_wanted_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the call is over, or being finished
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// ---- Python types ------------------------------------------------------------------------------

struct ChannelObject {
  PyObject ob_base;                         // PyObject_HEAD
  std::shared_ptr<grpc::Channel>* channel;  // null once closed
  std::string* method;
};

struct StreamObject {
  PyObject ob_base;  // PyObject_HEAD
  Stream* stream;
};

extern PyTypeObject StreamType;

// An optional bytes argument as a string ("" for None).
bool OptionalBytes(PyObject* object, const char* name, std::string& out) {
  if (object == nullptr || object == Py_None) return true;
  if (!PyBytes_Check(object)) {
    PyErr_Format(PyExc_TypeError, "%s must be bytes or None, not %s", name,
                 Py_TYPE(object)->tp_name);
    return false;
  }
  out.assign(PyBytes_AS_STRING(object), PyBytes_GET_SIZE(object));
  return true;
}

int ChannelInit(ChannelObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"target",
                                   "method",
                                   "max_message_bytes",
                                   "tls",
                                   "root_certificates",
                                   "private_key",
                                   "certificate_chain",
                                   nullptr};
  const char* target = nullptr;
  const char* method = nullptr;
  int max_message_bytes = 0;
  int tls = 0;
  PyObject* root_certificates = nullptr;
  PyObject* private_key = nullptr;
  PyObject* certificate_chain = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ssi|pOOO", const_cast<char**>(keywords), &target,
                                   &method, &max_message_bytes, &tls, &root_certificates,
                                   &private_key, &certificate_chain)) {
    return -1;
  }
  if (self->channel != nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "Channel is already initialized");
    return -1;
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (tls) {
    grpc::SslCredentialsOptions options;
    if (!OptionalBytes(root_certificates, "root_certificates", options.pem_root_certs) ||
        !OptionalBytes(private_key, "private_key", options.pem_private_key) ||
        !OptionalBytes(certificate_chain, "certificate_chain", options.pem_cert_chain)) {
      return -1;
    }
    credentials = grpc::SslCredentials(options);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  if (credentials == nullptr) {
    PyErr_SetString(PyExc_ValueError, "gRPC refused the channel's TLS credentials");
    return -1;
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(max_message_bytes);
  arguments.SetMaxReceiveMessageSize(max_message_bytes);
  // After a dropped connection the channel reconnects within a second, not gRPC's default of up
  // to two minutes, so that a resumed session is back well within the service's grace period.
  arguments.SetInt("grpc.initial_reconnect_backoff_ms", 100);
  arguments.SetInt("grpc.max_reconnect_backoff_ms", 1000);
  self->channel =
      new std::shared_ptr<grpc::Channel>(grpc::CreateCustomChannel(target, credentials, arguments));
  self->method = new std::string(method);
  return 0;
}

void ChannelDealloc(ChannelObject* self) {
  delete self->method;
  delete self->channel;
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

PyObject* ChannelClose(ChannelObject* self, PyObject*) {
  // Streams hold the channel too: it goes once the last of them does.
  delete self->channel;
  self->channel = nullptr;
  Py_RETURN_NONE;
}

PyObject* ChannelStream(ChannelObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"metadata", "wait_for_ready", nullptr};
  PyObject* metadata_object = nullptr;
  int wait_for_ready = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Op", const_cast<char**>(keywords),
                                   &metadata_object, &wait_for_ready)) {
    return nullptr;
  }
  if (self->channel == nullptr) {
    PyErr_SetString(PyExc_ValueError, "the channel is closed");
    return nullptr;
  }
  std::vector<std::pair<std::string, std::string>> metadata;
  if (metadata_object != nullptr && metadata_object != Py_None) {
    PyObject* items = PySequence_Fast(metadata_object, "metadata must be a sequence of pairs");
    if (items == nullptr) return nullptr;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < count; ++i) {
      const char* key = nullptr;
      const char* value = nullptr;
      if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i),
                            "ss;metadata entries are (str, str)", &key, &value)) {
        Py_DECREF(items);
        return nullptr;
      }
      metadata.emplace_back(key, value);
    }
    Py_DECREF(items);
  }
  auto* object = PyObject_New(StreamObject, &StreamType);
  if (object == nullptr) return nullptr;
  object->stream = new Stream(*self->channel, *self->method, metadata, wait_for_ready != 0);
  return reinterpret_cast<PyObject*>(object);
}

void StreamDealloc(StreamObject* self) {
  if (self->stream != nullptr) {
    Stream* stream = self->stream;
    self->stream = nullptr;
    // Cancels and finishes a call still open, which waits for gRPC: not under the GIL.
    Py_BEGIN_ALLOW_THREADS delete stream;
    Py_END_ALLOW_THREADS
  }
  PyObject_Free(self);
}

PyObject* StreamWrite(StreamObject* self, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return nullptr;
  bool ok;
  Py_BEGIN_ALLOW_THREADS ok =
      self->stream->Write(static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
  Py_END_ALLOW_THREADS PyBuffer_Release(&view);
  return PyBool_FromLong(ok);
}

PyObject* StreamWritesDone(StreamObject* self, PyObject*) {
  bool ok;
  Py_BEGIN_ALLOW_THREADS ok = self->stream->WritesDone();
  Py_END_ALLOW_THREADS return PyBool_FromLong(ok);
}

PyObject* StreamRead(StreamObject* self, PyObject*) {
  std::optional<grpc::ByteBuffer> buffer;
  Py_BEGIN_ALLOW_THREADS buffer = self->stream->Read();
  Py_END_ALLOW_THREADS if (!buffer.has_value()) Py_RETURN_NONE;
  std::vector<grpc::Slice> slices;
  if (!buffer->Dump(&slices).ok()) {
    PyErr_SetString(PyExc_RuntimeError, "gRPC could not read the message's bytes");
    return nullptr;
  }
  size_t size = 0;
  for (const grpc::Slice& slice : slices) size += slice.size();
  if (slices.size() == 1 && size < kCopyWithoutGilBytes) {
    return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(slices[0].begin()),
                                     static_cast<Py_ssize_t>(size));
  }
  PyObject* bytes = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size));
  if (bytes == nullptr) return nullptr;
  // Nobody else sees the new object yet: it may be filled without the GIL.
  char* out = PyBytes_AS_STRING(bytes);
  const bool release = size >= kCopyWithoutGilBytes;
  PyThreadState* state = release ? PyEval_SaveThread() : nullptr;
  for (const grpc::Slice& slice : slices) {
    std::memcpy(out, slice.begin(), slice.size());
    out += slice.size();
  }
  if (release) PyEval_RestoreThread(state);
  return bytes;
}

PyObject* StreamFinish(StreamObject* self, PyObject*) {
  grpc::Status status;
  Py_BEGIN_ALLOW_THREADS status = self->stream->Finish();
  Py_END_ALLOW_THREADS return Py_BuildValue("(is#)", static_cast<int>(status.error_code()),
                                            status.error_message().data(),
                                            static_cast<Py_ssize_t>(status.error_message().size()));
}

PyObject* StreamCancel(StreamObject* self, PyObject*) {
  self->stream->Cancel();
  Py_RETURN_NONE;
}

PyMethodDef kChannelMethods[] = {
    {"stream", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(ChannelStream)),
     METH_VARARGS | METH_KEYWORDS,
     "stream(metadata=None, wait_for_ready=False) -> Stream: starts a call of the method."},
    {"close", reinterpret_cast<PyCFunction>(ChannelClose), METH_NOARGS,
     "Lets go of the channel; it closes once its streams are gone."},
    {nullptr, nullptr, 0, nullptr},
};

PyMethodDef kStreamMethods[] = {
    {"write", reinterpret_cast<PyCFunction>(StreamWrite), METH_O,
     "write(data) -> bool: sends one message (bytes-like); False once the call has ended."},
    {"writes_done", reinterpret_cast<PyCFunction>(StreamWritesDone), METH_NOARGS,
     "writes_done() -> bool: half-closes the stream."},
    {"read", reinterpret_cast<PyCFunction>(StreamRead), METH_NOARGS,
     "read() -> bytes | None: the next message; None once the call has ended."},
    {"finish", reinterpret_cast<PyCFunction>(StreamFinish), METH_NOARGS,
     "finish() -> (code, message): the call's status; after read() returned None."},
    {"cancel", reinterpret_cast<PyCFunction>(StreamCancel), METH_NOARGS,
     "cancel(): ends the call as CANCELLED; any thread, any time."},
    {nullptr, nullptr, 0, nullptr},
};

PyTypeObject ChannelType = {
    PyVarObject_HEAD_INIT(nullptr, 0)  // NOLINT
};

PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(nullptr, 0)  // NOLINT
};

PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT,
    "mpigate._native_stream",
    "The bytes of the Python client's Session stream over gRPC C++ (see native_stream.cc).",
    -1,
    nullptr,
};

}  // namespace
}  // namespace mpigate::python

PyMODINIT_FUNC PyInit__native_stream() {
  using namespace mpigate::python;  // NOLINT(build/namespaces)
  ChannelType.tp_name = "mpigate._native_stream.Channel";
  ChannelType.tp_basicsize = sizeof(ChannelObject);
  ChannelType.tp_flags = Py_TPFLAGS_DEFAULT;
  ChannelType.tp_doc = "A gRPC channel to one target, for streams of one bidi method.";
  ChannelType.tp_new = PyType_GenericNew;
  ChannelType.tp_init = reinterpret_cast<initproc>(ChannelInit);
  ChannelType.tp_dealloc = reinterpret_cast<destructor>(ChannelDealloc);
  ChannelType.tp_methods = kChannelMethods;
  StreamType.tp_name = "mpigate._native_stream.Stream";
  StreamType.tp_basicsize = sizeof(StreamObject);
  StreamType.tp_flags = Py_TPFLAGS_DEFAULT;
  StreamType.tp_doc = "One call of a bidi stream method; made by Channel.stream().";
  StreamType.tp_dealloc = reinterpret_cast<destructor>(StreamDealloc);
  StreamType.tp_methods = kStreamMethods;
  if (PyType_Ready(&ChannelType) < 0 || PyType_Ready(&StreamType) < 0) return nullptr;
  PyObject* module = PyModule_Create(&kModule);
  if (module == nullptr) return nullptr;
  Py_INCREF(&ChannelType);
  if (PyModule_AddObject(module, "Channel", reinterpret_cast<PyObject*>(&ChannelType)) < 0) {
    Py_DECREF(&ChannelType);
    Py_DECREF(module);
    return nullptr;
  }
  Py_INCREF(&StreamType);
  if (PyModule_AddObject(module, "Stream", reinterpret_cast<PyObject*>(&StreamType)) < 0) {
    Py_DECREF(&StreamType);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
