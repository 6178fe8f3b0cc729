"""Large payloads and results of the Python client through shared memory (_shared_memory.py).

SharedObjectsTest checks the module on the real /dev/shm: objects written part by part, private
and exclusive; results mapped, checked and removed; objects that are not private refused.
EndToEndTest runs a real mpigate-server (its workers on this host, as this user): payloads at or
above the threshold travel in objects of the session's prefix and come back byte-identical,
results in objects the client maps and removes, small ones in the messages, and nothing is left
in /dev/shm once tasks end, fail or are refused, or the server stops. HostileObjectsTest plays
another local user against the session with the fake gateway, which names whatever objects the
test wants in its outcomes.

Objects "of another user" are made by this test as root and given to `nobody` (as
tests/hostile_user_test.cc's hostile process makes them); run as another user, those tests use
objects of ours with group and other permission bits instead, which must be refused the same way.
"""

import array
import os
import pwd
import stat
import time
import unittest
from unittest import mock

import grpc

import mpigate
from mpigate import _shared_memory
from mpigate.v1 import task_pb2

import fake_gateway
from server_process import ServerProcess

# How long a test waits for what must happen soon; reached only when something is wrong.
PATIENCE_S = 60
# Long enough that the steps a test takes while the workers sleep surely happen before they wake.
BUSY_MS = b"1500"
THRESHOLD = _shared_memory.DEFAULT_MIN_BYTES
HEX_DIGITS = "0123456789abcdef"

SERVER = ServerProcess(workers=2, flags=["--max-tasks-per-worker=1"])


def objects_with(prefix):
    """The names in /dev/shm that start with `prefix`."""
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


def live_objects(prefix):
    """Objects of `prefix` in use: its name and 16 hex digits (not the service's parked ones)."""
    return [name for name in objects_with(prefix)
            if len(name) == len(prefix) + 16 and set(name[len(prefix):]) <= set(HEX_DIGITS)]


def await_condition(condition, what):
    """Polls `condition` until it holds; fails the test if it does not within PATIENCE_S. For
    what the service does on a thread of its own after the client heard of it (releasing a
    task's input), which no event of the session tells."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {PATIENCE_S} s")
        time.sleep(0.01)


def plant(name, data=b"planted", mode=0o600, owner=None):
    """Creates /dev/shm/`name` with `data`, `mode` and `owner` (a uid; None: ours)."""
    fd = os.open(f"/dev/shm/{name}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)  # not reduced by the umask
        if owner is not None:
            os.fchown(fd, owner, -1)
    finally:
        os.close(fd)


def another_users_object_kinds():
    """(description, mode, owner) of objects that are not private to this user."""
    kinds = [("group and other may read it", 0o644, None),
             ("group may write it", 0o620, None)]
    if os.geteuid() == 0:
        kinds.append(("another user owns it", 0o600, pwd.getpwnam("nobody").pw_uid))
    return kinds


class SharedObjectsTest(unittest.TestCase):

    def setUp(self):
        self.prefix = f"mpigate-pytest-{os.getpid()}-{os.urandom(8).hex()}-"
        self.addCleanup(lambda: [_shared_memory.unlink(n) for n in objects_with(self.prefix)])

    def test_an_object_holds_the_parts_in_order_and_is_private(self):
        doubles = array.array("d", [1.5, -2.25, 1e300])
        parts = [b"header", memoryview(doubles), bytearray(b"\x00" * 3), b""]
        payload = b"header" + doubles.tobytes() + b"\x00" * 3
        self.assertEqual(_shared_memory.payload_size(parts), len(payload))
        name = _shared_memory.create(self.prefix, parts)
        self.assertRegex(name[len(self.prefix):], "^[0-9a-f]{16}$")
        self.assertTrue(name.startswith(self.prefix))
        st = os.stat(f"/dev/shm/{name}")
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, os.geteuid())
        with open(f"/dev/shm/{name}", "rb") as file:
            self.assertEqual(file.read(), payload)

    def test_a_result_is_a_writable_view_of_a_private_copy_and_its_name_is_removed(self):
        payload = os.urandom(3 * 4096 + 17)
        name = _shared_memory.create(self.prefix, [payload])
        view = _shared_memory.map_result(name, len(payload))
        self.assertEqual(objects_with(self.prefix), [])
        self.assertIsInstance(view, memoryview)
        self.assertEqual(view, payload)
        self.assertEqual(view.format, "B")
        self.assertFalse(view.readonly)
        view[0] ^= 0xff  # a private mapping: only this process's copy of the page changes
        self.assertEqual(view[1:], payload[1:])
        # Slices outlive the view they came from: the mapping stays while anything refers to it.
        tail = view[-17:]
        del view
        self.assertEqual(tail, payload[-17:])

    def test_an_empty_result_maps_to_an_empty_view(self):
        name = _shared_memory.create(self.prefix, [b""])
        self.assertEqual(_shared_memory.map_result(name, 0), b"")
        self.assertEqual(objects_with(self.prefix), [])

    def test_a_name_that_exists_is_never_opened_for_writing(self):
        squatted = self.prefix + "00" * 8
        plant(squatted, b"theirs", mode=0o666)
        suffixes = iter([bytes(8), bytes.fromhex("0123456789abcdef")])
        with mock.patch.object(_shared_memory.os, "urandom", lambda n: next(suffixes)):
            name = _shared_memory.create(self.prefix, [b"ours"])
        self.assertEqual(name, self.prefix + "0123456789abcdef")
        with open(f"/dev/shm/{squatted}", "rb") as file:
            self.assertEqual(file.read(), b"theirs")

    def test_create_gives_up_after_a_few_names_that_exist(self):
        plant(self.prefix + "00" * 8)
        with mock.patch.object(_shared_memory.os, "urandom", lambda n: bytes(n)):
            with self.assertRaises(FileExistsError):
                _shared_memory.create(self.prefix, [b"ours"])
        self.assertEqual(objects_with(self.prefix), [self.prefix + "00" * 8])

    def test_objects_that_are_not_private_are_refused_unread_and_removed(self):
        for what, mode, owner in another_users_object_kinds():
            with self.subTest(what):
                name = self.prefix + os.urandom(8).hex()
                plant(name, b"x" * 100, mode=mode, owner=owner)
                with self.assertRaisesRegex(_shared_memory.SharedMemoryError,
                                            "is not private to user"):
                    _shared_memory.map_result(name, 100)
                self.assertEqual(objects_with(self.prefix), [])

    def test_a_missing_object_a_wrong_size_a_fifo_and_a_path_are_refused(self):
        missing = self.prefix + os.urandom(8).hex()
        with self.assertRaisesRegex(_shared_memory.SharedMemoryError, "cannot open"):
            _shared_memory.map_result(missing, 10)
        short = _shared_memory.create(self.prefix, [b"12345"])
        with self.assertRaisesRegex(_shared_memory.SharedMemoryError, "holds 5 bytes, not 10"):
            _shared_memory.map_result(short, 10)
        fifo = self.prefix + os.urandom(8).hex()
        os.mkfifo(f"/dev/shm/{fifo}", 0o600)  # opening it must not wait for a writer
        with self.assertRaisesRegex(_shared_memory.SharedMemoryError, "not a regular file"):
            _shared_memory.map_result(fifo, 0)
        with self.assertRaisesRegex(_shared_memory.SharedMemoryError, "not a shared memory"):
            _shared_memory.map_result("../etc/passwd", 10)
        self.assertEqual(objects_with(self.prefix), [])

    def test_the_domain_names_this_dev_shm_and_user_unless_turned_off(self):
        shm = os.stat("/dev/shm")
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot_id = file.read().strip()
        with mock.patch.dict(os.environ, {"MPIGATE_SHARED_MEMORY": "on"}):
            self.assertEqual(_shared_memory.domain(),
                             f"{boot_id}/{shm.st_dev}:{shm.st_ino}/{os.geteuid()}")
        with mock.patch.dict(os.environ, {"MPIGATE_SHARED_MEMORY": "off"}):
            self.assertEqual(_shared_memory.domain(), "")


class EndToEndTest(unittest.TestCase):
    """Tests share one server, so one prefix: each waits for the objects of the one before to be
    released before it counts objects."""

    prefixes = set()

    @classmethod
    def setUpClass(cls):
        SERVER.start()

    @classmethod
    def tearDownClass(cls):
        SERVER.stop_checked()
        # The gateway removes its objects, parked ones too, when it exits.
        leftover = [name for prefix in cls.prefixes for name in objects_with(prefix)]
        if leftover:
            raise AssertionError(f"left in /dev/shm after the server stopped: {leftover}")

    def connect(self, **options):
        executor = mpigate.Executor(SERVER.target, client_name=self.id(), **options)
        self.addCleanup(executor.shutdown, wait=True, cancel_futures=True)
        return executor

    def prefix_of(self, executor):
        prefix = executor._session._shared_memory_prefix
        self.assertTrue(prefix.startswith("mpigate-"), prefix)
        EndToEndTest.prefixes.add(prefix)
        self.assert_no_live_objects_once_released(prefix)
        return prefix

    def occupy_workers(self, executor):
        busy = [executor.submit("sleep", BUSY_MS) for _ in range(executor.num_workers)]
        for future in busy:
            self.assertTrue(future.wait_started(PATIENCE_S))
        return busy

    def assert_no_live_objects_once_released(self, prefix):
        # The service releases a finished task's input on a thread of its own.
        await_condition(lambda: not live_objects(prefix),
                        f"the release of every object of {prefix} ({live_objects(prefix)})")

    def test_a_large_payload_travels_in_an_object_written_from_its_parts(self):
        executor = self.connect()
        prefix = self.prefix_of(executor)
        doubles = array.array("d", range(40000))  # 320,000 bytes, not one of them joined
        parts = [b"pickle-5 frame", memoryview(doubles), os.urandom(1000)]
        payload = b"".join(bytes(memoryview(part).cast("B")) for part in parts)
        busy = self.occupy_workers(executor)
        spec = task_pb2.TaskSpec(function="echo")
        with mock.patch.object(_shared_memory, "map_result",
                               wraps=_shared_memory.map_result) as map_result:
            [future] = executor._session.submit_many([spec], parts=[parts])
            # Queued behind the sleeps: its input is an object of the session's prefix, holding
            # exactly the payload, and the spec that went out carries only its name and size.
            [name] = live_objects(prefix)
            self.assertEqual(spec.payload, b"")
            self.assertEqual((spec.shared_payload.name, spec.shared_payload.size),
                             (name, len(payload)))
            self.assertEqual(stat.S_IMODE(os.stat(f"/dev/shm/{name}").st_mode), 0o600)
            with open(f"/dev/shm/{name}", "rb") as file:
                self.assertEqual(file.read(), payload)
            result = future.result(PATIENCE_S)
        # The result came back in an object too, which the client mapped and removed.
        self.assertIsInstance(result, memoryview)
        self.assertEqual(result, payload)
        [(result_name, result_size)] = [c.args for c in map_result.call_args_list]
        self.assertEqual(result_size, len(payload))
        self.assertTrue(result_name.startswith(prefix))
        self.assertNotIn(result_name, objects_with(prefix))
        for sleeping in busy:
            sleeping.result(PATIENCE_S)
        self.assert_no_live_objects_once_released(prefix)

    def test_a_64_mib_echo_is_byte_identical(self):
        executor = self.connect()
        payload = os.urandom(1 << 20) * 64
        result = executor.submit("echo", memoryview(payload)).result(PATIENCE_S)
        self.assertIsInstance(result, memoryview)
        self.assertEqual(len(result), len(payload))
        self.assertTrue(result == payload)
        self.assert_no_live_objects_once_released(self.prefix_of(executor))

    def test_payloads_and_results_below_the_threshold_stay_in_the_messages(self):
        executor = self.connect()
        with mock.patch.object(_shared_memory, "create") as create, \
                mock.patch.object(_shared_memory, "map_result") as map_result:
            for size in (0, 1000, THRESHOLD - 1):
                payload = os.urandom(size)
                result = executor.submit("echo", payload).result(PATIENCE_S)
                self.assertIsInstance(result, bytes)
                self.assertEqual(result, payload)
            # Chunks of a map carry items, which never go into shared memory.
            self.assertEqual(list(executor.map("echo", [b"a" * THRESHOLD], chunksize=2)),
                             [b"a" * THRESHOLD])
        create.assert_not_called()
        map_result.assert_not_called()
        # At the threshold, both ways.
        result = executor.submit("echo", b"t" * THRESHOLD).result(PATIENCE_S)
        self.assertIsInstance(result, memoryview)
        self.assertEqual(result, b"t" * THRESHOLD)

    def test_shared_memory_can_be_turned_off(self):
        off = self.connect(shared_memory_min_bytes=0)
        with mock.patch.dict(os.environ, {"MPIGATE_SHARED_MEMORY": "off"}):
            off_by_environment = self.connect()
        for executor in (off, off_by_environment):
            self.assertEqual(executor._session._shared_memory_prefix, "")
            with mock.patch.object(_shared_memory, "create") as create:
                result = executor.submit("echo", b"o" * (1 << 20)).result(PATIENCE_S)
            self.assertIsInstance(result, bytes)
            self.assertEqual(result, b"o" * (1 << 20))
            create.assert_not_called()

    def test_the_threshold_is_the_sessions_own(self):
        executor = self.connect(shared_memory_min_bytes=1 << 20)
        self.assertIsInstance(executor.submit("echo", b"s" * THRESHOLD).result(PATIENCE_S),
                              bytes)
        self.assertIsInstance(executor.submit("echo", b"s" * (1 << 20)).result(PATIENCE_S),
                              memoryview)

    def test_nothing_is_left_when_tasks_fail_are_refused_or_cancelled(self):
        executor = self.connect()
        prefix = self.prefix_of(executor)
        large = b"f" * (THRESHOLD * 2)
        # A function that fails, one that does not exist (refused), and a queued task cancelled.
        failed = executor.submit("fail", large)
        with self.assertRaises(mpigate.TaskError) as raised:
            failed.result(PATIENCE_S)
        self.assertEqual(raised.exception.code, grpc.StatusCode.UNKNOWN)
        unknown = executor.submit("no-such-function", large)
        with self.assertRaises(mpigate.TaskError) as raised:
            unknown.result(PATIENCE_S)
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assert_no_live_objects_once_released(prefix)
        busy = self.occupy_workers(executor)
        queued = executor.submit("echo", large)
        self.assertEqual(len(live_objects(prefix)), 1)
        self.assertTrue(queued.cancel())
        for sleeping in busy:
            sleeping.result(PATIENCE_S)
        self.assert_no_live_objects_once_released(prefix)

    def test_nothing_is_left_after_shutdown_with_tasks_cancelled(self):
        executor = mpigate.Executor(SERVER.target, client_name=self.id())
        prefix = self.prefix_of(executor)
        busy = self.occupy_workers(executor)
        queued = [executor.submit("echo", os.urandom(THRESHOLD)) for _ in range(5)]
        self.assertEqual(len(live_objects(prefix)), 5)
        executor.shutdown(wait=True, cancel_futures=True)
        self.assertTrue(all(future.cancelled() for future in queued))
        self.assertTrue(all(future.done() for future in busy))
        self.assert_no_live_objects_once_released(prefix)

    def test_a_squatted_name_is_skipped_and_left_intact(self):
        executor = self.connect()
        prefix = self.prefix_of(executor)
        squatted = prefix + "00" * 8
        owner = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else None
        plant(squatted, b"theirs", mode=0o666, owner=owner)
        self.addCleanup(_shared_memory.unlink, squatted)
        suffixes = iter([bytes(8), bytes.fromhex("0123456789abcdef")])
        with mock.patch.object(_shared_memory.os, "urandom", lambda n: next(suffixes)):
            result = executor.submit("echo", b"q" * THRESHOLD).result(PATIENCE_S)
        self.assertEqual(result, b"q" * THRESHOLD)
        with open(f"/dev/shm/{squatted}", "rb") as file:
            self.assertEqual(file.read(), b"theirs")
        self.assertEqual(stat.S_IMODE(os.stat(f"/dev/shm/{squatted}").st_mode), 0o666)


class HostileObjectsTest(unittest.TestCase):
    """The session against outcomes naming objects the test planted, from the fake gateway."""

    def setUp(self):
        self.prefix = f"mpigate-pytest-{os.getpid()}-{os.urandom(16).hex()}-"
        self.addCleanup(lambda: [_shared_memory.unlink(n) for n in objects_with(self.prefix)])
        opened = fake_gateway.opened()
        opened.opened.shared_memory_prefix = self.prefix
        with mock.patch.object(fake_gateway, "opened", lambda *args: opened):
            self.fake = fake_gateway.FakeGateway()
            self.addCleanup(self.fake.close)
            self.executor = mpigate.Executor(self.fake.target, connect_timeout=PATIENCE_S)
        self.addCleanup(self.executor.shutdown, wait=False)
        [open_request] = self.fake.await_requests("open")
        self.assertEqual(open_request.shared_memory_domain, _shared_memory.domain())
        self.assertEqual(open_request.shared_result_min_bytes, THRESHOLD)

    def submit_small_tasks(self, count):
        futures = [self.executor.submit("echo", b"small") for _ in range(count)]
        last = futures[-1].task_id
        self.fake.await_requests("submit", until=lambda submits: any(
            task.task_id == last for submit in submits for task in submit.tasks))
        return futures

    def test_a_result_in_an_object_that_is_not_private_fails_its_future_with_data_loss(self):
        kinds = another_users_object_kinds()
        futures = self.submit_small_tasks(len(kinds) + 2)
        outcomes = []
        for (what, mode, owner), future in zip(kinds, futures):
            name = self.prefix + os.urandom(8).hex()
            plant(name, b"r" * 100, mode=mode, owner=owner)
            outcomes.append(shared_outcome(future.task_id, name, 100))
        # One of ours that says it holds more than it does, and a good one.
        short = _shared_memory.create(self.prefix, [b"r" * 50])
        outcomes.append(shared_outcome(futures[-2].task_id, short, 100))
        good = _shared_memory.create(self.prefix, [b"g" * 100])
        outcomes.append(shared_outcome(futures[-1].task_id, good, 100))
        self.fake.send(fake_gateway.updates(outcomes=outcomes))
        for (what, _, _), future in zip(kinds, futures):
            with self.subTest(what):
                error = future.exception(PATIENCE_S)
                self.assertIsInstance(error, mpigate.TaskError)
                self.assertEqual(error.code, grpc.StatusCode.DATA_LOSS)
                self.assertIn("is not private to user", error.message)
        error = futures[-2].exception(PATIENCE_S)
        self.assertEqual(error.code, grpc.StatusCode.DATA_LOSS)
        self.assertIn("holds 50 bytes, not 100", error.message)
        self.assertEqual(futures[-1].result(PATIENCE_S), b"g" * 100)
        # Every object named in an outcome is removed (that of another user too: we are root, or
        # it is ours with bad bits), and the session goes on.
        self.assertEqual(objects_with(self.prefix), [])
        [later] = self.submit_small_tasks(1)
        self.fake.send(fake_gateway.updates(outcomes=[fake_gateway.succeeded(later.task_id, b"k")]))
        self.assertEqual(later.result(PATIENCE_S), b"k")

    def test_a_result_object_nobody_waits_for_is_removed_and_acknowledged(self):
        name = _shared_memory.create(self.prefix, [b"u" * 100])
        self.fake.send(fake_gateway.updates(outcomes=[shared_outcome(77, name, 100)]))
        [ack] = self.fake.await_requests("ack")
        self.assertEqual(list(ack.task_ids), [77])
        self.assertEqual(objects_with(self.prefix), [])

    def test_a_payload_the_service_never_gets_is_removed(self):
        [first] = self.submit_small_tasks(1)
        self.fake.end(grpc.StatusCode.UNAVAILABLE, "gone")
        self.assertIsInstance(first.exception(PATIENCE_S), mpigate.ConnectionLost)
        with mock.patch.object(_shared_memory, "create",
                               wraps=_shared_memory.create) as create:
            with self.assertRaises(mpigate.ConnectionLost):
                self.executor.submit("echo", b"p" * THRESHOLD)
        create.assert_called_once()
        self.assertEqual(objects_with(self.prefix), [])

    def test_payloads_written_before_a_part_that_is_not_bytes_like_are_removed(self):
        specs = [task_pb2.TaskSpec(function="echo") for _ in range(2)]
        with mock.patch.object(_shared_memory, "create",
                               wraps=_shared_memory.create) as create:
            with self.assertRaises(TypeError):
                self.executor._session.submit_many(
                    specs, parts=[[b"w" * THRESHOLD], [b"w" * THRESHOLD, "not bytes"]])
        create.assert_called_once()  # the second payload fails before its object is made
        self.assertEqual(objects_with(self.prefix), [])
        self.assertEqual(self.fake.requests("submit"), [])


def shared_outcome(task_id, name, size):
    return task_pb2.TaskOutcome(task_id=task_id, state=task_pb2.TASK_STATE_SUCCEEDED,
                                shared_result=task_pb2.SharedBytes(name=name, size=size))


if __name__ == "__main__":
    unittest.main()
