"""Shared memory objects of a session: large payloads and results that skip the stream.

The Python side of common/shared_memory.h, for the protocol of proto/mpigate/v1/task.proto
(SharedBytes). Where the service runs on this host as this user (it compares the domain() a session
sends in OpenSession.shared_memory_domain with its own), SessionOpened.shared_memory_prefix names
its objects, and:

- create() writes a payload into a new POSIX shared memory object (a file in /dev/shm) named with
  that prefix and 16 random lowercase hex digits, part by part as given (a pickle-5 frame and the
  buffers of its numpy arrays are never joined): the session then submits
  TaskSpec.shared_payload{name, size}, and the object is the service's.
- map_result() maps an object the service made for a result (TaskOutcome.shared_result), checks it
  and removes its name: the result is a writable memoryview of the mapping, no copy, which stays
  mapped for as long as anything (a slice, a numpy array made from it) refers to it.

/dev/shm is shared with every local user, who may create any name there, so no name is trusted:
create() uses O_CREAT|O_EXCL and mode 0600, never a name that exists, and map_result() reads an
object only if, on the open descriptor, it is a regular file of this process's effective user with
no group or other permission bits and holds the size the outcome says (SharedMemoryError
otherwise, the object unread; it is removed all the same where we may). Unlike the C++ client,
objects are not recycled (parked): every payload goes into fresh pages.

Thread-safety: functions only; any thread may call them.
"""

import ctypes
import errno
import os
import stat
import weakref

# Payloads of at least this many bytes go through shared memory, and the service is asked to send
# results that large so: the C++ client's default (ExecutorOptions::shared_memory_min_bytes).
DEFAULT_MIN_BYTES = 64 << 10

_SHM_DIRECTORY = "/dev/shm"
_SUFFIX_BYTES = 8  # 16 hex digits
# As CreateSharedObject: a name that exists already is someone else's doing (2^-64 by chance), so
# a few tries tell a squatter from bad luck.
_CREATE_ATTEMPTS = 4
# shm_open's flags (glibc adds O_NOFOLLOW and O_CLOEXEC); O_NONBLOCK: a FIFO planted under the name
# must not block the open.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

_PROT_READ = 0x1
_PROT_WRITE = 0x2
_MAP_PRIVATE = 0x02
_MAP_POPULATE = 0x08000
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.mprotect.restype = ctypes.c_int
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


class SharedMemoryError(Exception):
    """An object that cannot be used: missing, of another size, or not private to this user.
    The session fails that task's future with DATA_LOSS and this message."""


def domain():
    """This process's shared memory domain, as SharedMemoryDomain() in common/shared_memory.h:
    "<boot id>/<st_dev>:<st_ino of /dev/shm>/<euid>"; "" (matching no service) when it cannot
    tell, or with MPIGATE_SHARED_MEMORY=off in the environment."""
    if os.environ.get("MPIGATE_SHARED_MEMORY") == "off":
        return ""
    try:
        shm = os.stat(_SHM_DIRECTORY)
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot_id = file.readline().strip()
    except OSError:
        return ""
    if not boot_id:
        return ""
    return f"{boot_id}/{shm.st_dev}:{shm.st_ino}/{os.geteuid()}"


def payload_size(parts):
    """The length of the concatenation of `parts` (bytes-like objects)."""
    return sum(memoryview(part).nbytes for part in parts)


def create(prefix, parts):
    """Writes the concatenation of `parts` (bytes-like, C-contiguous objects) into a new object
    named `prefix` and 16 random hex digits; returns its name. Raises OSError when it cannot
    (/dev/shm full, or every name tried exists already), leaving nothing behind: the caller then
    sends the payload in the message."""
    for _ in range(_CREATE_ATTEMPTS):
        name = prefix + os.urandom(_SUFFIX_BYTES).hex()
        try:
            fd = os.open(_path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY | _OPEN_FLAGS, 0o600)
        except FileExistsError:
            continue  # Never a name that exists: it may be another user's object.
        try:
            # write(2) rather than a mapping: the kernel fills the pages without a fault per page.
            for part in parts:
                _write_all(fd, part)
        except BaseException:
            unlink(name)
            raise
        finally:
            os.close(fd)
        return name
    raise OSError(errno.EEXIST, f"cannot create a shared memory object with prefix {prefix}: "
                  f"{_CREATE_ATTEMPTS} random names in a row exist already")


def set_payload(spec, parts, prefix, min_bytes):
    """Puts the payload `parts` make into a new object named with `prefix` (a session's
    SessionOpened.shared_memory_prefix, "" if it may not) if it has at least `min_bytes` and
    /dev/shm has room, else into TaskSpec `spec`'s payload."""
    if prefix:
        size = payload_size(parts)
        if size >= min_bytes:
            try:
                spec.shared_payload.name = create(prefix, parts)
                spec.shared_payload.size = size
                return
            except OSError:
                pass  # As the C++ client: the message carries it instead.
    spec.payload = b"".join(parts)


def map_result(name, size):
    """The `size` bytes of object `name` as a writable memoryview of a private mapping (writes
    go to copies of the pages, never to the object), valid for as long as it is referenced.
    Removes the name whatever happens: the object was handed to us to read once. Raises
    SharedMemoryError if it is missing, of another size, or not private to this user."""
    try:
        fd = _open_checked(name, size)
    finally:
        unlink(name)
    try:
        return _map(fd, size, name)
    finally:
        os.close(fd)


def unlink(name):
    """Removes object `name`; one already gone is no error. Mappings of it stay valid."""
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        pass


def _path(name):
    # A name with a '/' would reach outside /dev/shm: the service never sends one, and shm_open
    # refuses one too.
    if "/" in name or not name:
        raise SharedMemoryError(f"{name!r} is not a shared memory object name")
    return os.path.join(_SHM_DIRECTORY, name)


def _write_all(fd, part):
    view = memoryview(part).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _open_checked(name, size):
    """A read-only descriptor of object `name`, checked on the descriptor (so that no rename
    between the check and the mapping can swap the object)."""
    try:
        fd = os.open(_path(name), os.O_RDONLY | _OPEN_FLAGS)
    except OSError as error:
        raise SharedMemoryError(f"cannot open shared memory object {name}: "
                                f"{error.strerror}") from None
    try:
        st = os.fstat(fd)
        euid = os.geteuid()
        if not stat.S_ISREG(st.st_mode) or st.st_uid != euid or st.st_mode & 0o077:
            raise SharedMemoryError(
                f"shared memory object {name} is not private to user {euid} (owner {st.st_uid}, "
                f"mode {stat.S_IMODE(st.st_mode):04o}, "
                f"{'a regular file' if stat.S_ISREG(st.st_mode) else 'not a regular file'}): "
                "another user may have read or written it, so it is not used")
        if st.st_size != size:
            raise SharedMemoryError(
                f"shared memory object {name} holds {st.st_size} bytes, not {size}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _map(fd, size, name):
    if size == 0:
        return memoryview(bytearray())
    # Populated at once (one call maps every page instead of a fault per page) while read-only:
    # populating a writable private mapping would copy every page. Made writable afterwards, so
    # that a numpy array decoded from the result is writable; a write copies just its page.
    address = _libc.mmap(None, size, _PROT_READ, _MAP_PRIVATE | _MAP_POPULATE, fd, 0)
    if address in (None, _MAP_FAILED):
        raise _os_error("map", name)
    if _libc.mprotect(address, size, _PROT_READ | _PROT_WRITE) != 0:
        error = _os_error("map", name)
        _libc.munmap(address, size)
        raise error
    mapping = (ctypes.c_ubyte * size).from_address(address)
    # Unmapped once the array is gone: every memoryview of it (and numpy array made from those)
    # holds a reference to it.
    weakref.finalize(mapping, _libc.munmap, address, size)
    return memoryview(mapping).cast("B")


def _os_error(what, name):
    code = ctypes.get_errno()
    return SharedMemoryError(f"cannot {what} shared memory object {name}: {os.strerror(code)}")
