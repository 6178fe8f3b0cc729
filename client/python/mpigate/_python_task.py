"""The wire format of Python tasks (`python.call`, `python.gang`): one module for both ends.

The client encodes calls and decodes outcomes; the workers' runtime (libmpigate_python.so, which
embeds this file and imports it under a private name) decodes calls, runs them and encodes
outcomes. Standard library and cloudpickle only.

Client side:
    setup = executor_setup(initializer=init, initargs=(1,), globals={"K": 3}, path=[...])
    parts = encode_call(setup, fn, args, kwargs)       # payload = b"".join(parts)
    value = decode_outcome(result)                     # or raises the remote exception
    parts = encode_chunk(setup, fn, [(1,), (2,)])      # a map chunk: fn(*args) per item
    values, exception = decode_chunk_outcome(result)

Worker side (the runtime): `run_payload(payload)` -> outcome parts; raises `NotAPythonTask` for a
payload that is not one, and lets KeyboardInterrupt escape.

Pickles are protocol 5. Buffers of 64 KiB or more (numpy arrays, bytearrays, PickleBuffers) go out
of band: they are parts of their own, never copied into the pickle, and the decoder takes them as
memoryview slices of the payload (zero copy; a value decoded from them keeps the payload alive).
Callables go by value (cloudpickle) when their module is `__main__`, when they are lambdas,
closures or nested functions, or when their module is not one the workers can import: a module is
importable when its file lies in the interpreter's library directories (stdlib, site- or
dist-packages) or under one of the executor's `path` entries; built-in modules are. Everything else
goes by reference. What holds no function or class that must go by value is pickled by the
standard pickler (several times faster than cloudpickle's, whose checks run in Python for every
object); the same bytes either way, for whatever reads them.

Binary layout (little-endian), of payloads and outcomes alike:

    offset  size           field
    0       4              magic b"MPGT"
    4       1              version (1)
    5       1              kind: 1 call, 2 chunk (payloads); 3 value, 4 raised, 5 setup failed,
                           6 chunk outcome (outcomes)
    6       2              n, the number of out-of-band buffers
    8       4              s, the length of the setup blob (0 in outcomes)
    12      4              p, the length of the pickle
    16      16             the executor key (zeros in outcomes)
    32      8 * n          the length of each buffer
    ...     s              the setup blob (a pickle of the setup's fields; empty for a default one)
    ...     p              the pickle
    then each buffer, starting at the next multiple of 64 from the start of the payload.

The pickle of a call is (fn, args, kwargs); of a chunk, (fn, args_list); of a value outcome, the
value; of a raised or setup-failed outcome, (exception, traceback text); of a chunk outcome,
(values, exception or None, traceback text).

Thread-safety: every function may be called from any thread. The worker's executor table is used
only under the GIL by one task at a time.
"""

import collections
import concurrent.futures
import functools
import io
import os
import pickle
import struct
import sys
import sysconfig
import threading
import traceback
import types

import cloudpickle

MAGIC = b"MPGT"
VERSION = 1

KIND_CALL = 1
KIND_CHUNK = 2
KIND_VALUE = 3
KIND_RAISED = 4
KIND_SETUP_FAILED = 5
KIND_CHUNK_OUTCOME = 6

_HEADER = struct.Struct("<4sBBHII16s")
_NO_KEY = bytes(16)
_ALIGN = 64
# Buffers smaller than this are cheaper in the pickle than as parts of their own.
_OUT_OF_BAND_MIN = 64 << 10
# How many executors a worker remembers (their applied setup); the oldest is forgotten first, and
# set up again if its tasks come back.
_MAX_EXECUTORS = 256


class RemoteTraceback(Exception):
    """The `__cause__` of an exception raised by a task: its str is the remote traceback text."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


class ExecutorSetupError(concurrent.futures.BrokenExecutor):
    """The executor's initializer raised on the worker that got the task; its exception is the
    `__cause__` (and `.exception`)."""

    def __init__(self, exception):
        super().__init__(f"the executor's initializer failed on a worker: {exception!r}")
        self.exception = exception


class NotAPythonTask(ValueError):
    """A payload or outcome that is not in this format (wrong magic, version, kind or lengths)."""


class ExecutorSetup:
    """What one executor's tasks carry so that workers set it up once: `key` (16 random bytes)
    and `blob` (the pickled setup, empty when every field is default). Make it with
    executor_setup(), once per executor."""

    __slots__ = ("key", "blob", "path", "importable")

    def __init__(self, key, blob, path=()):
        self.key = bytes(key)
        self.blob = bytes(blob)
        # The executor's `path`: encode_call and encode_chunk send modules under it by reference.
        self.path = tuple(path)
        # Module name -> whether the workers can import it, as found for this executor's calls.
        self.importable = {}

    def __repr__(self):
        return f"ExecutorSetup(key={self.key.hex()}, blob={len(self.blob)} bytes)"


def executor_setup(initializer=None, initargs=(), globals=None, path=None, wdir=None):
    """An ExecutorSetup for an executor: `initializer(*initargs)` runs once on each worker before
    the executor's first task there; `globals` (a dict) are names its by-value functions see;
    `path` entries go before sys.path during its tasks (and make modules under them travel by
    reference); `wdir` is the current directory during its tasks. Raises TypeError for a
    non-callable initializer and the pickling error for a setup that cannot be pickled."""
    if initializer is not None and not callable(initializer):
        raise TypeError("initializer must be callable")
    path = [os.fspath(entry) for entry in (path or ())]
    wdir = os.fspath(wdir) if wdir is not None else None
    globals = dict(globals or {})
    initargs = tuple(initargs)
    if initializer is None and not initargs and not globals and not path and wdir is None:
        return ExecutorSetup(os.urandom(16), b"")
    fields = {"initializer": initializer, "initargs": initargs, "globals": globals, "path": path,
              "wdir": wdir}
    with _by_value_for(initializer, path):
        blob = cloudpickle.dumps(fields, protocol=5)
    return ExecutorSetup(os.urandom(16), blob, path)


# ---- Which callables travel by value ----------------------------------------------------------

def _library_dirs():
    dirs = {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(entry for entry in sys.path if entry.endswith(("site-packages", "dist-packages")))
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


_LIBRARY_DIRS = _library_dirs()
_by_value_lock = threading.Lock()


def _module_importable(module, path):
    """True if workers can import `module` (a module object): see the module docstring."""
    file = getattr(module, "__file__", None)
    if file is None:
        return module.__name__ in sys.builtin_module_names or module.__name__ == "builtins"
    return _file_importable(file, tuple(path))


@functools.lru_cache(maxsize=1024)
def _file_importable(file, path):
    """Whether a module of `file` is under the library directories or an entry of `path`.
    Cached: resolving links takes a system call per path component, which per submit was most
    of a call's encoding."""
    roots = _LIBRARY_DIRS + tuple(os.path.join(os.path.realpath(entry), "") for entry in path)
    return os.path.realpath(file).startswith(roots)


def _module_by_value(fn, path, importable=None):
    """The module of `fn` if it must be registered with cloudpickle to travel by value, else None
    (__main__, lambdas and closures go by value anyway). `importable`, if given, is a dict that
    remembers the answer per module for this `path`."""
    name = getattr(fn, "__module__", None)
    if not name or name == "__main__":
        return None
    module = sys.modules.get(name)
    if module is None:
        return None
    known = importable.get(name) if importable is not None else None
    if known is None:
        known = _module_importable(module, path)
        if importable is not None:
            importable[name] = known
    return None if known else module


class _by_value_for:
    """Within it, the module of `fn` pickles by value if workers cannot import it."""

    def __init__(self, fn, path, importable=None):
        self._module = _module_by_value(fn, path, importable) if fn is not None else None

    def __enter__(self):
        if self._module is not None:
            _by_value_lock.acquire()
            cloudpickle.register_pickle_by_value(self._module)

    def __exit__(self, *exc):
        if self._module is not None:
            try:
                cloudpickle.unregister_pickle_by_value(self._module)
            finally:
                _by_value_lock.release()


class _NeedsValue(Exception):
    """_ByReferencePickler met something that must travel by value."""


class _ByReferencePickler(pickle.Pickler):
    """The standard pickler, for what cloudpickle would pickle all by reference: it gives up
    (_NeedsValue) at the first function or class that cloudpickle would pickle by value (of
    __main__, local, a lambda, of a module not imported; the caller checks that no module is
    registered by value), and fails as the standard pickler does on what only cloudpickle
    pickles (code objects, modules, ...). Either way the caller pickles with cloudpickle then."""

    def reducer_override(self, obj):
        if isinstance(obj, (types.FunctionType, type)):
            module = getattr(obj, "__module__", None)
            if (module is None or module == "__main__" or module not in sys.modules or
                    "<" in obj.__qualname__):
                raise _NeedsValue
        return NotImplemented


def _dumps_by_reference_or_value(obj):
    """_dumps with the standard pickler where it pickles `obj` as cloudpickle would, else with
    cloudpickle (which then raises the pickling error of what cannot be pickled)."""
    if not cloudpickle.list_registry_pickle_by_value():
        try:
            return _dumps(obj, _ByReferencePickler)
        except Exception:  # noqa: BLE001 - _NeedsValue, or what only cloudpickle pickles
            pass
    return _dumps(obj, cloudpickle.CloudPickler)


# ---- Framing ----------------------------------------------------------------------------------

def _dumps(obj, pickler_class):
    """(pickle bytes, [out-of-band buffers as flat memoryviews])."""
    buffers = []

    def buffer_callback(buffer):
        view = buffer.raw()
        if view.nbytes < _OUT_OF_BAND_MIN:
            return True  # in band
        buffers.append(view)
        return False

    stream = io.BytesIO()
    pickler_class(stream, protocol=5, buffer_callback=buffer_callback).dump(obj)
    return stream.getvalue(), buffers


def _frame(kind, key, blob, pickled, buffers):
    """The parts of a payload or outcome (see the module docstring)."""
    header = _HEADER.pack(MAGIC, VERSION, kind, len(buffers), len(blob), len(pickled), key)
    if not buffers:
        return [b"".join((header, blob, pickled))]
    lengths = struct.pack(f"<{len(buffers)}Q", *(b.nbytes for b in buffers))
    offset = len(header) + len(lengths) + len(blob) + len(pickled)
    padding = bytes(-offset % _ALIGN)
    offset += len(padding)
    parts = [b"".join((header, lengths, blob, pickled, padding))]
    for index, buffer in enumerate(buffers):
        parts.append(buffer)
        offset += buffer.nbytes
        if index + 1 < len(buffers) and offset % _ALIGN:
            pad = -offset % _ALIGN
            parts.append(bytes(pad))
            offset += pad
    return parts


class _Frame:
    __slots__ = ("kind", "key", "blob", "pickle", "buffers")


def _unframe(payload, kinds):
    """Parses a payload or outcome of one of `kinds`; raises NotAPythonTask."""
    view = memoryview(payload).cast("B")
    if view.nbytes < _HEADER.size:
        raise NotAPythonTask(f"{view.nbytes} bytes are too short for a Python task frame")
    magic, version, kind, count, setup_length, pickle_length, key = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise NotAPythonTask("not a Python task frame (bad magic)")
    if version != VERSION:
        raise NotAPythonTask(f"Python task frame version {version}, this side speaks {VERSION}")
    if kind not in kinds:
        raise NotAPythonTask(f"unexpected Python task frame kind {kind}")
    offset = _HEADER.size
    lengths_end = offset + 8 * count
    if lengths_end > view.nbytes:
        raise NotAPythonTask("Python task frame truncated in its buffer table")
    lengths = struct.unpack_from(f"<{count}Q", view, offset)
    frame = _Frame()
    frame.kind = kind
    frame.key = key
    offset = lengths_end
    end = offset + setup_length + pickle_length
    if end > view.nbytes:
        raise NotAPythonTask("Python task frame truncated in its pickle")
    frame.blob = view[offset:offset + setup_length]
    frame.pickle = view[offset + setup_length:end]
    offset = end
    frame.buffers = []
    for length in lengths:
        offset += -offset % _ALIGN
        if offset + length > view.nbytes:
            raise NotAPythonTask("Python task frame truncated in its buffers")
        frame.buffers.append(view[offset:offset + length])
        offset += length
    if offset != view.nbytes:
        raise NotAPythonTask("Python task frame has trailing bytes")
    return frame


def _loads(frame):
    return pickle.loads(frame.pickle, buffers=frame.buffers)


# ---- Client side ------------------------------------------------------------------------------

def _encode(kind, setup, fn, obj):
    if not callable(fn):
        raise TypeError(f"{fn!r} is not callable")
    by_value = _by_value_for(fn, setup.path, setup.importable)
    if by_value._module is None:
        pickled, buffers = _dumps_by_reference_or_value(obj)
    else:
        with by_value:
            pickled, buffers = _dumps(obj, cloudpickle.CloudPickler)
    return _frame(kind, setup.key, setup.blob, pickled, buffers)


def encode_call(setup, fn, args=(), kwargs=None):
    """The parts of a payload that runs fn(*args, **kwargs) with `setup`'s executor. Raises the
    pickling error if the call cannot be pickled."""
    return _encode(KIND_CALL, setup, fn, (fn, tuple(args), dict(kwargs or {})))


def encode_chunk(setup, fn, args_list):
    """The parts of a payload that runs fn(*args) for each args tuple of `args_list`, in order,
    stopping at the first that raises."""
    return _encode(KIND_CHUNK, setup, fn, (fn, [tuple(args) for args in args_list]))


def _with_remote_traceback(exception, text):
    exception.__cause__ = RemoteTraceback(text)
    return exception


def decode_outcome(payload):
    """The value of a call's outcome (any bytes-like `payload`), or raises: the remote exception
    (with a RemoteTraceback `__cause__`), ExecutorSetupError, NotAPythonTask for a payload that is
    not an outcome, or the unpickling error."""
    frame = _unframe(payload, (KIND_VALUE, KIND_RAISED, KIND_SETUP_FAILED))
    if frame.kind == KIND_VALUE:
        return _loads(frame)
    exception, text = _loads(frame)
    if frame.kind == KIND_SETUP_FAILED:
        raise ExecutorSetupError(exception) from _with_remote_traceback(exception, text)
    raise _with_remote_traceback(exception, text)


def decode_chunk_outcome(payload):
    """(values, exception or None) of a chunk's outcome: the values of the items before the first
    that raised, and that item's exception (with a RemoteTraceback cause). An executor whose
    initializer failed gives ([], ExecutorSetupError). Raises NotAPythonTask or the unpickling
    error for a payload it cannot read."""
    frame = _unframe(payload, (KIND_CHUNK_OUTCOME, KIND_SETUP_FAILED))
    if frame.kind == KIND_SETUP_FAILED:
        exception, text = _loads(frame)
        error = ExecutorSetupError(exception)
        error.__cause__ = _with_remote_traceback(exception, text)
        return [], error
    values, exception, text = _loads(frame)
    if exception is not None:
        _with_remote_traceback(exception, text)
    return values, exception


# ---- Worker side ------------------------------------------------------------------------------

class _Executor:
    """One executor's applied setup on this worker."""

    __slots__ = ("path", "wdir", "globals", "failure")

    def __init__(self, fields):
        self.path = list(fields.get("path") or ())
        self.wdir = fields.get("wdir")
        self.globals = dict(fields.get("globals") or {})
        # (exception, traceback text) if the initializer raised.
        self.failure = None


_DEFAULT_EXECUTOR = _Executor({})
_executors = collections.OrderedDict()
# The current directory when the runtime started: that of tasks whose executor has no wdir.
_base_cwd = os.getcwd()


_entered = _DEFAULT_EXECUTOR


def _enter(executor):
    """Makes `executor`'s path and wdir those of the process: its path entries replace those of
    the executor before it at the front of sys.path (what tasks added elsewhere stays), and its
    wdir (else the runtime's starting directory) is the current directory, whatever the task
    before did."""
    global _entered
    if executor is not _entered:
        previous = _entered.path
        if sys.path[:len(previous)] == previous:
            del sys.path[:len(previous)]
        sys.path[:0] = executor.path
        _entered = executor
    os.chdir(executor.wdir if executor.wdir is not None else _base_cwd)


def _inject_globals(fn, executor):
    """Gives a by-value function the executor's globals (names it does not define itself). A
    function of an imported module is left alone: its globals are that module's."""
    if not executor.globals or not isinstance(fn, types.FunctionType):
        return
    module = sys.modules.get(fn.__module__)
    if module is not None and fn.__globals__ is getattr(module, "__dict__", None):
        return
    for name, value in executor.globals.items():
        fn.__globals__.setdefault(name, value)


def _executor_for(frame):
    """The executor of a payload, set up on first sight (its initializer run once)."""
    if not frame.blob:
        return _DEFAULT_EXECUTOR
    executor = _executors.get(frame.key)
    if executor is not None:
        _executors.move_to_end(frame.key)
        return executor
    executor = None
    try:
        fields = pickle.loads(frame.blob)
        executor = _Executor(fields)
        _enter(executor)
        initializer = fields.get("initializer")
        if initializer is not None:
            _inject_globals(initializer, executor)
            initializer(*fields.get("initargs", ()))
    except Exception as error:  # noqa: BLE001 - the initializer's failure travels as a value
        if executor is None:
            executor = _Executor({})
        executor.failure = (error, traceback.format_exc())
    _executors[frame.key] = executor
    if len(_executors) > _MAX_EXECUTORS:
        _executors.popitem(last=False)
    return executor


def _raised_outcome(kind, error):
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    error.__traceback__ = None
    try:
        return _outcome(kind, (error, text))
    except Exception as pickling_error:  # noqa: BLE001 - an exception that cannot be pickled
        stand_in = RuntimeError(f"{type(error).__qualname__}: {error} (the exception itself cannot"
                                f" be pickled: {pickling_error!r})")
        return _outcome(kind, (stand_in, text))


def _outcome(kind, obj):
    pickled, buffers = _dumps_by_reference_or_value(obj)
    return _frame(kind, _NO_KEY, b"", pickled, buffers)


def _chunk_outcome(values, error):
    text = None
    if error is not None:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        error.__traceback__ = None
    try:
        return _outcome(KIND_CHUNK_OUTCOME, (values, error, text))
    except Exception:  # noqa: BLE001 - find the first value (or the error) that cannot be pickled
        pass
    for index, value in enumerate(values):
        try:
            _dumps_by_reference_or_value(value)
        except Exception as pickling_error:  # noqa: BLE001
            return _chunk_outcome(values[:index], pickling_error)
    stand_in = RuntimeError(f"{type(error).__qualname__}: {error} (the exception itself cannot be"
                            " pickled)")
    return _outcome(KIND_CHUNK_OUTCOME, (values, stand_in, text))


def run_payload(payload):
    """Runs the call or chunk in `payload` (bytes-like) and returns its outcome's parts. Raises
    NotAPythonTask for a payload that is not a Python task; KeyboardInterrupt escapes (the task
    was interrupted); any other exception of the call, of its unpickling or of its result's
    pickling is the outcome."""
    frame = _unframe(payload, (KIND_CALL, KIND_CHUNK))
    executor = _executor_for(frame)
    if executor.failure is not None:
        return _outcome(KIND_SETUP_FAILED, executor.failure)
    _enter(executor)
    if frame.kind == KIND_CALL:
        try:
            fn, args, kwargs = _loads(frame)
            _inject_globals(fn, executor)
            value = fn(*args, **kwargs)
            del fn, args, kwargs
            return _outcome(KIND_VALUE, value)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - SystemExit too travels as a value
            return _raised_outcome(KIND_RAISED, error)
    values = []
    error = None
    try:
        fn, args_list = _loads(frame)
        _inject_globals(fn, executor)
        for args in args_list:
            values.append(fn(*args))
    except KeyboardInterrupt:
        raise
    except BaseException as raised:  # noqa: BLE001
        error = raised
    return _chunk_outcome(values, error)
