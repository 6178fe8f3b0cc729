// mpigate._native_stream: the bytes of the Python client's Session stream, moved by gRPC C++.
//
// The Python client (mpigate/_session.py) serializes SessionRequest and parses SessionEvent with
// Python protobuf; this module only carries the bytes, over a synchronous gRPC C++ bidi stream of
// grpc::ByteBuffer, so it depends on no proto of ours. Against grpcio's synchronous stream it
// saves the threads grpcio puts between the caller and the socket (a request-consumer thread that
// drains the request iterator, the channel's completion thread): here a write runs on the thread
// that calls write() and a read on the thread that calls read(), each polling gRPC itself, with
// the GIL released while it waits.
//
//   channel = Channel(target, method, max_message_bytes, tls=False, root_certificates=None,
//                     private_key=None, certificate_chain=None)
//   stream = channel.stream(metadata=[("authorization", "Bearer ...")], wait_for_ready=True)
//   stream.write(b"...")    # True; False once the call has ended (finish() says how)
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
// Threads: a Channel may be used from any thread. On a Stream, one thread at a time may write
// (a second writer waits for the first) while one thread reads; cancel() may be called from any
// thread at any time; finish() waits for a write in progress and makes later reads and writes
// fail at once. Blocking calls release the GIL. Objects are freed as Python frees them: a Stream
// not finished is cancelled and finished then.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/sync_stream.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace mpigate::python {
namespace {

using StreamCall = grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>;

// Messages at least this large are copied into Python bytes without the GIL.
constexpr size_t kCopyWithoutGilBytes = 1 << 20;

// One call of the stream method. Thread-safe as the file comment says.
class Stream {
 public:
  // Starts the call; sends nothing yet (its metadata goes with the first write).
  Stream(std::shared_ptr<grpc::Channel> channel, const grpc::internal::RpcMethod& method,
         const std::vector<std::pair<std::string, std::string>>& metadata, bool wait_for_ready)
      : channel_(std::move(channel)) {
    for (const auto& [key, value] : metadata) context_.AddMetadata(key, value);
    context_.set_wait_for_ready(wait_for_ready);
    context_.set_initial_metadata_corked(true);
    call_.reset(grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::
                    Create(channel_.get(), method, &context_));
  }

  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  ~Stream() {
    if (!Finished()) {
      Cancel();
      Finish();
    }
  }

  // Blocks until gRPC has taken the message; false if the call has ended.
  bool Write(const char* data, size_t size) ABSL_LOCKS_EXCLUDED(write_mu_) {
    grpc::Slice slice(data, size);  // A copy: the caller's buffer is only borrowed.
    grpc::ByteBuffer buffer(&slice, 1);
    absl::MutexLock lock(&write_mu_);
    if (finished_) return false;
    return call_->Write(buffer);
  }

  // Half-closes the stream; false if the call has ended.
  bool WritesDone() ABSL_LOCKS_EXCLUDED(write_mu_) {
    absl::MutexLock lock(&write_mu_);
    if (finished_) return false;
    return call_->WritesDone();
  }

  // The next message, or nullopt once the call has ended.
  std::optional<grpc::ByteBuffer> Read() ABSL_LOCKS_EXCLUDED(read_mu_) {
    absl::MutexLock lock(&read_mu_);
    grpc::ByteBuffer buffer;
    if (finished_ || !call_->Read(&buffer)) return std::nullopt;
    return buffer;
  }

  // The call's status. Blocks until the service ended the call (or cancel()); call it once
  // Read() gave nullopt. Later calls return the same status.
  grpc::Status Finish() ABSL_LOCKS_EXCLUDED(write_mu_, read_mu_) {
    absl::MutexLock write_lock(&write_mu_);
    absl::MutexLock read_lock(&read_mu_);
    if (!finished_) {
      status_ = call_->Finish();
      finished_ = true;
    }
    return status_;
  }

  void Cancel() { context_.TryCancel(); }

 private:
  bool Finished() ABSL_LOCKS_EXCLUDED(write_mu_) {
    absl::MutexLock lock(&write_mu_);
    return finished_;
  }

  const std::shared_ptr<grpc::Channel> channel_;
  grpc::ClientContext context_;
  // Constant after construction; Write/WritesDone under write_mu_, Read under read_mu_, Finish
  // under both.
  std::unique_ptr<StreamCall> call_;
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(read_mu_);
  absl::Mutex read_mu_;
  // Written under both mutexes, so read under either.
  bool finished_ = false;
  grpc::Status status_;
};

// ---- Python types ------------------------------------------------------------------------------

struct ChannelObject {
  PyObject_HEAD
  std::shared_ptr<grpc::Channel>* channel;  // null once closed
  std::string* method_name;                 // outlives method: RpcMethod keeps the pointer
  grpc::internal::RpcMethod* method;
};

struct StreamObject {
  PyObject_HEAD
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
  static const char* keywords[] = {"target",           "method",      "max_message_bytes",
                                   "tls",              "root_certificates", "private_key",
                                   "certificate_chain", nullptr};
  const char* target = nullptr;
  const char* method = nullptr;
  int max_message_bytes = 0;
  int tls = 0;
  PyObject* root_certificates = nullptr;
  PyObject* private_key = nullptr;
  PyObject* certificate_chain = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ssi|pOOO", const_cast<char**>(keywords),
                                   &target, &method, &max_message_bytes, &tls,
                                   &root_certificates, &private_key, &certificate_chain)) {
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
  self->channel = new std::shared_ptr<grpc::Channel>(
      grpc::CreateCustomChannel(target, credentials, arguments));
  self->method_name = new std::string(method);
  self->method = new grpc::internal::RpcMethod(
      self->method_name->c_str(), grpc::internal::RpcMethod::BIDI_STREAMING, *self->channel);
  return 0;
}

void ChannelDealloc(ChannelObject* self) {
  delete self->method;
  delete self->method_name;
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
      if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "ss;metadata entries are (str, str)",
                            &key, &value)) {
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
  Py_BEGIN_ALLOW_THREADS ok = self->stream->Write(static_cast<const char*>(view.buf),
                                                  static_cast<size_t>(view.len));
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&view);
  return PyBool_FromLong(ok);
}

PyObject* StreamWritesDone(StreamObject* self, PyObject*) {
  bool ok;
  Py_BEGIN_ALLOW_THREADS ok = self->stream->WritesDone();
  Py_END_ALLOW_THREADS
  return PyBool_FromLong(ok);
}

PyObject* StreamRead(StreamObject* self, PyObject*) {
  std::optional<grpc::ByteBuffer> buffer;
  Py_BEGIN_ALLOW_THREADS buffer = self->stream->Read();
  Py_END_ALLOW_THREADS
  if (!buffer.has_value()) Py_RETURN_NONE;
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
  Py_END_ALLOW_THREADS
  return Py_BuildValue("(is#)", static_cast<int>(status.error_code()),
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
