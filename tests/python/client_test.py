"""The Python client end to end: mpigate.Executor against a real mpigate-server and its MPI
workers, through gRPC and MPI.

ExecutorTest's tests share one server (started before the first, stopped after the last; it must
exit 0); BrokenPoolTest starts one of its own (one server at a time). The shared server hands each
worker one task at a time (--max-tasks-per-worker=1), so that a task submitted while every worker
is busy stays queued, and can be cancelled, rather than waiting in a busy worker's backlog, where
it would count as running (see the README on --max-tasks-per-worker).
"""

import concurrent.futures
import faulthandler
import os
import signal
import subprocess
import tempfile
import threading
import unittest
from unittest import mock

import grpc

import mpigate
from mpigate.v1 import gateway_pb2
from mpigate.v1 import gateway_pb2_grpc
from server_process import ServerProcess, runfile

# Long enough that a test's next few steps (a round trip or two) surely happen while it runs, with
# room for a loaded machine and sanitizer builds (the C++ tests' kBusyMs).
BUSY_MS = b"1500"
# How long a test waits for what must happen soon; reached only when something is wrong.
PATIENCE_S = 60

SERVER = ServerProcess(workers=2, flags=[
    "--max-tasks-per-worker=1",
    "--worker-env=MPIGATE_PYTEST_VAR=one",
])


def pool_status(target):
    with grpc.insecure_channel(target) as channel:
        return gateway_pb2_grpc.GatewayStub(channel).GetPoolStatus(
            gateway_pb2.GetPoolStatusRequest(), timeout=PATIENCE_S)


class ExecutorTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        SERVER.start()

    @classmethod
    def tearDownClass(cls):
        SERVER.stop_checked()

    def connect(self, **options):
        """An executor of the shared server, shut down (its queued tasks cancelled) after the
        test."""
        executor = mpigate.Executor(SERVER.target, client_name=self.id(), **options)
        self.addCleanup(executor.shutdown, wait=True, cancel_futures=True)
        return executor

    def occupy_workers(self, executor):
        """Gives every worker a sleep of BUSY_MS; returns their futures once all of them run."""
        busy = [executor.submit("sleep", BUSY_MS) for _ in range(executor.num_workers)]
        for future in busy:
            self.assertTrue(future.wait_started(PATIENCE_S))
        return busy

    # --- submit ---

    def test_submit_returns_a_future_of_the_result_bytes(self):
        executor = self.connect()
        self.assertEqual(executor.num_workers, 2)
        self.assertEqual(executor.pool_state, "READY")
        future = executor.submit("echo", b"hello\x00world")
        self.assertIsInstance(future, concurrent.futures.Future)
        self.assertEqual(future.result(timeout=PATIENCE_S), b"hello\x00world")
        self.assertTrue(future.done())
        self.assertFalse(future.running())
        self.assertFalse(future.cancelled())
        self.assertIsNone(future.exception())
        self.assertEqual(executor.submit("echo", b"").result(timeout=PATIENCE_S), b"")
        self.assertEqual(executor.submit("echo", bytearray(b"ba")).result(timeout=PATIENCE_S),
                         b"ba")
        with self.assertRaises(TypeError):
            executor.submit("echo", "text is not bytes")
        with self.assertRaises(TypeError):
            executor.submit("echo", b"x", no_such_option=1)

    def test_an_executors_env_reaches_its_tasks_and_no_others(self):
        with_env = self.connect(env={"MPIGATE_PY_TEST_VAR": "from env"})
        without = self.connect()
        for _ in range(2 * with_env.num_workers):
            self.assertEqual(with_env.submit("getenv", b"MPIGATE_PY_TEST_VAR").result(PATIENCE_S),
                             b"from env")
            with self.assertRaises(mpigate.TaskError) as raised:
                without.submit("getenv", b"MPIGATE_PY_TEST_VAR").result(PATIENCE_S)
            self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(ConnectionError) as refused:
            mpigate.Executor(SERVER.target, client_name=self.id(), env={"A=B": "1"})
        self.assertIn("not an environment variable name", str(refused.exception))

    def test_executor_finds_the_service_through_the_endpoint_file(self):
        environment = {"MPIGATE_ENDPOINT": "", "MPIGATE_ENDPOINT_FILE": SERVER.endpoint_file}
        with mock.patch.dict(os.environ, environment):
            with mpigate.Executor(client_name=self.id()) as executor:
                self.assertEqual(executor.endpoint, SERVER.target)
                self.assertEqual(executor.submit("echo", b"found").result(PATIENCE_S), b"found")

    def test_result_times_out_while_the_task_goes_on(self):
        executor = self.connect()
        future = executor.submit("sleep", BUSY_MS)
        with self.assertRaises(TimeoutError):
            future.result(timeout=0.01)
        self.assertEqual(future.result(timeout=PATIENCE_S), b"")

    def test_done_callbacks_and_concurrent_futures_wait(self):
        executor = self.connect()
        called = []
        called_back = threading.Event()

        def callback(future):
            called.append(future)
            called_back.set()

        future = executor.submit("echo", b"called back")
        future.add_done_callback(callback)
        done, not_done = concurrent.futures.wait([future], timeout=PATIENCE_S)
        self.assertEqual((done, not_done), ({future}, set()))
        self.assertTrue(called_back.wait(PATIENCE_S))
        self.assertEqual(called, [future])
        # Added after completion: runs at once, on this thread.
        future.add_done_callback(called.append)
        self.assertEqual(called, [future, future])

    # --- map ---

    def test_map_ships_chunks_and_yields_results_in_input_order(self):
        executor = self.connect()
        inputs = [f"item-{i}".encode() for i in range(25)]
        before = pool_status(SERVER.target).tasks_succeeded
        self.assertEqual(list(executor.map("echo", inputs, chunksize=4)), inputs)
        # 25 inputs in chunks of 4 are 7 tasks on the service.
        self.assertEqual(pool_status(SERVER.target).tasks_succeeded - before, 7)
        self.assertEqual(list(executor.map("echo", [])), [])
        with self.assertRaises(ValueError):
            executor.map("echo", inputs, chunksize=0)

    def test_unordered_map_yields_every_result(self):
        executor = self.connect()
        inputs = [f"item-{i}".encode() for i in range(25)]
        results = list(executor.map("echo", inputs, chunksize=3, unordered=True))
        self.assertCountEqual(results, inputs)

    def test_map_timeout_raises_timeout_error_and_cancels_the_remaining_chunks(self):
        before = pool_status(SERVER.target)
        executor = mpigate.Executor(SERVER.target, client_name=self.id())
        # 40 chunks of 100 ms on 2 workers need 2 s; the map allows 250 ms.
        chunks = 40
        results = executor.map("sleep", [b"100"] * chunks, timeout=0.25)
        received = []
        with self.assertRaises(TimeoutError):
            for result in results:
                received.append(result)
        self.assertLess(len(received), chunks)
        # Once the session's tasks have all ended, most of them must have been cancelled, not run.
        executor.shutdown(wait=True)
        after = pool_status(SERVER.target)
        succeeded = after.tasks_succeeded - before.tasks_succeeded
        cancelled = after.tasks_cancelled - before.tasks_cancelled
        self.assertEqual(succeeded + cancelled, chunks)
        self.assertGreaterEqual(cancelled, chunks // 2)

    def test_map_raises_an_items_error_at_its_position(self):
        executor = self.connect()
        names = [b"MPIGATE_PYTEST_VAR", b"MPIGATE_PYTEST_UNSET", b"MPIGATE_PYTEST_VAR"]
        results = executor.map("getenv", names, chunksize=3)
        self.assertEqual(next(results), b"one")
        with self.assertRaises(mpigate.TaskError) as raised:
            next(results)
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("MPIGATE_PYTEST_UNSET", raised.exception.message)

    # --- cancel and shutdown ---

    def test_a_queued_task_cancels_and_a_running_one_does_not(self):
        executor = self.connect()
        busy = self.occupy_workers(executor)
        pending = executor.submit("echo", b"never")
        callbacks = []
        pending.add_done_callback(callbacks.append)
        self.assertFalse(pending.running())

        self.assertTrue(busy[0].running())
        self.assertFalse(busy[0].cancel())
        self.assertTrue(busy[0].running())

        self.assertTrue(pending.cancel())
        self.assertTrue(pending.cancelled())
        self.assertTrue(pending.done())
        self.assertEqual(callbacks, [pending])
        with self.assertRaises(concurrent.futures.CancelledError):
            pending.result()
        self.assertTrue(pending.cancel(), "cancelling twice still answers True")
        done, _ = concurrent.futures.wait([pending], timeout=PATIENCE_S)
        self.assertEqual(done, {pending})

        for future in busy:
            self.assertEqual(future.result(timeout=PATIENCE_S), b"")
            self.assertFalse(future.cancel(), "a finished future cannot be cancelled")

    def test_queue_timeout_fails_a_task_no_worker_took(self):
        executor = self.connect()
        self.occupy_workers(executor)
        late = executor.submit("echo", b"late", queue_timeout=0.05)
        with self.assertRaises(mpigate.TaskError) as raised:
            late.result(timeout=PATIENCE_S)
        self.assertEqual(raised.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_shutdown_with_cancel_futures_cancels_only_queued_tasks(self):
        executor = mpigate.Executor(SERVER.target, client_name=self.id())
        busy = self.occupy_workers(executor)
        pending = [executor.submit("echo", b"pending") for _ in range(3)]
        executor.shutdown(wait=False, cancel_futures=True)
        for future in pending:
            self.assertTrue(future.cancelled())
        with self.assertRaises(RuntimeError):
            executor.submit("echo", b"after shutdown")
        for future in busy:
            self.assertFalse(future.cancelled())
            self.assertEqual(future.result(timeout=PATIENCE_S), b"")
        executor.shutdown(wait=True)  # Again, and waiting: the session closes.

    def test_context_manager_waits_for_its_tasks(self):
        with mpigate.Executor(SERVER.target, client_name=self.id()) as executor:
            slow = executor.submit("sleep", b"300")
            fast = executor.submit("echo", b"fast")
        self.assertTrue(slow.done())
        self.assertEqual(slow.result(), b"")
        self.assertEqual(fast.result(), b"fast")
        with self.assertRaises(RuntimeError):
            executor.submit("echo", b"after the with block")

    def test_shutdown_does_not_wait_for_a_connectivity_poll(self):
        # grpc.channel_ready_future subscribes to the channel's connectivity, and a channel with a
        # subscription closes only after its watch thread's next 0.2 s poll: every shutdown took
        # about 0.2 s. The session must not subscribe, so that its close returns once the stream
        # has ended.
        with mock.patch.object(grpc._channel.Channel, "subscribe",
                               autospec=True, side_effect=grpc._channel.Channel.subscribe) as watch:
            executor = mpigate.Executor(SERVER.target, client_name=self.id())
            self.assertEqual(executor.submit("echo", b"x").result(timeout=PATIENCE_S), b"x")
            executor.shutdown()
        self.assertEqual(watch.call_count, 0)

    # --- errors ---

    def test_errors_come_back_as_task_errors(self):
        executor = self.connect()
        unknown = executor.submit("no.such.function", b"")
        with self.assertRaises(mpigate.TaskError) as raised:
            unknown.result(timeout=PATIENCE_S)
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("no.such.function", raised.exception.message)

        failed = executor.submit("fail", b"boom")
        error = failed.exception(timeout=PATIENCE_S)
        self.assertIsInstance(error, mpigate.TaskError)
        self.assertEqual(error.code, grpc.StatusCode.UNKNOWN)
        self.assertEqual(error.message, "boom")
        self.assertEqual(error.exception_type, "")
        self.assertEqual(error.task_id, failed.task_id)
        self.assertEqual(str(error), "UNKNOWN: boom")

    # --- threads ---

    def test_many_threads_submit_through_one_executor(self):
        executor = self.connect()
        threads, per_thread = 8, 100
        start = threading.Barrier(threads)
        futures = {}  # payload -> future
        lock = threading.Lock()

        def submit_all(thread):
            start.wait()
            for i in range(per_thread):
                payload = f"thread-{thread}-task-{i}".encode()
                future = executor.submit("echo", payload)
                with lock:
                    futures[payload] = future

        with concurrent.futures.ThreadPoolExecutor(threads) as submitters:
            for done in [submitters.submit(submit_all, t) for t in range(threads)]:
                done.result()
        self.assertEqual(len(futures), threads * per_thread)
        self.assertEqual(len({future.task_id for future in futures.values()}), len(futures))
        completed = list(concurrent.futures.as_completed(futures.values(), timeout=PATIENCE_S))
        self.assertEqual(len(completed), len(futures))
        for payload, future in futures.items():
            self.assertEqual(future.result(), payload)

    def test_max_inflight_makes_submit_wait_for_room(self):
        executor = self.connect(max_inflight=2)
        busy = self.occupy_workers(executor)
        # Both slots are taken by tasks that run for BUSY_MS: this submit returns only once one
        # of them has ended.
        third = executor.submit("echo", b"third")
        self.assertTrue(any(future.done() for future in busy))
        self.assertEqual(third.result(timeout=PATIENCE_S), b"third")


class TcpTokenTest(unittest.TestCase):
    """A service on TCP requires the bearer token of its endpoint file on every call."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(workers=1, flags=["--listen=127.0.0.1:0"])
        cls.server.start()
        with open(cls.server.endpoint_file, encoding="utf-8") as file:
            lines = file.read().splitlines()
        cls.target = lines[0]
        cls.token = dict(line.split("=", 1) for line in lines[1:])["token"]

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_the_endpoint_files_token_lets_in_and_no_token_does_not(self):
        environment = {"MPIGATE_ENDPOINT": "", "MPIGATE_TOKEN": "",
                       "MPIGATE_ENDPOINT_FILE": self.server.endpoint_file}
        with mock.patch.dict(os.environ, environment):
            with mpigate.Executor(client_name=self.id()) as executor:
                self.assertEqual(executor.endpoint, self.target)
                self.assertEqual(executor.submit("echo", b"in").result(PATIENCE_S), b"in")
            with mpigate.Executor(self.target, token=self.token) as executor:
                self.assertEqual(executor.submit("echo", b"in").result(PATIENCE_S), b"in")
            with self.assertRaises(Exception) as raised:
                with mpigate.Executor(self.target, connect_timeout=5) as executor:
                    executor.submit("echo", b"x").result(PATIENCE_S)
            self.assertIn("token", str(raised.exception))


class TlsTest(unittest.TestCase):
    """A service on TCP with TLS that requires client certificates (--tls-client-ca), with the
    certificates of tests/shell/make_test_certs.sh: the client speaks TLS because the endpoint
    file says so, and gets in only trusting the CA that signed the server's certificate and
    showing one of its own."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="certs-", dir=os.environ.get("TEST_TMPDIR"))
        subprocess.run([runfile("tests/shell/make_test_certs"), cls.certs], check=True)
        cls.server = ServerProcess(workers=1, flags=[
            "--listen=127.0.0.1:0", f"--tls-cert={cls.file('server.pem')}",
            f"--tls-key={cls.file('server.key')}", f"--tls-client-ca={cls.file('ca.pem')}"])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    @classmethod
    def file(cls, name):
        return os.path.join(cls.certs, name)

    def setUp(self):
        environment = mock.patch.dict(os.environ, {
            "MPIGATE_ENDPOINT": "", "MPIGATE_TOKEN": "", "MPIGATE_TLS_CA": "",
            "MPIGATE_TLS_CERT": "", "MPIGATE_TLS_KEY": "",
            "MPIGATE_ENDPOINT_FILE": self.server.endpoint_file})
        environment.start()
        self.addCleanup(environment.stop)

    def test_the_trusted_ca_and_a_client_certificate_get_in(self):
        with open(self.server.endpoint_file, encoding="utf-8") as file:
            self.assertIn("tls=1", file.read().splitlines()[1:])
        with mpigate.Executor(tls_ca=self.file("ca.pem"), tls_cert=self.file("client.pem"),
                              tls_key=self.file("client.key")) as executor:
            self.assertEqual(executor.submit("echo", b"over tls").result(PATIENCE_S), b"over tls")
        # The same from the environment, the CA given as PEM text.
        with open(self.file("ca.pem"), encoding="utf-8") as file:
            os.environ["MPIGATE_TLS_CA"] = file.read()
        os.environ["MPIGATE_TLS_CERT"] = self.file("client.pem")
        os.environ["MPIGATE_TLS_KEY"] = self.file("client.key")
        with mpigate.Executor() as executor:
            self.assertEqual(executor.submit("echo", b"env").result(PATIENCE_S), b"env")

    def test_an_untrusted_ca_or_no_client_certificate_fails_the_handshake(self):
        for refused in ({"tls_ca": self.file("other_ca.pem"), "tls_cert": self.file("client.pem"),
                         "tls_key": self.file("client.key")},
                        {"tls_ca": self.file("ca.pem")}):
            with self.subTest(**refused):
                with self.assertRaises(ConnectionError) as raised:
                    mpigate.Executor(connect_timeout=3, **refused)
                self.assertIn("handshake", str(raised.exception))


class ManyTasksTest(unittest.TestCase):
    """One client's burst of many small tasks on a pool with the default prefetch, which hands a
    worker's runner hundreds of them at once while it writes their results back."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(workers=2)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        exit_code, stderr_text = cls.server.stop()
        if exit_code != 0:
            raise AssertionError(f"mpigate-server exited with {exit_code}:\n{stderr_text}")

    def test_two_thousand_4_kib_and_64_kib_echoes_from_one_client_finish(self):
        # Both sides of the worker/runner socket used to block writing to each other (tasks one
        # way, results the other) while neither read: the pool hung after 2 to 464 of these.
        for size in (4 << 10, 64 << 10):
            with self.subTest(size=size):
                executor = mpigate.Executor(self.server.target, client_name=self.id())
                # Not waiting: a hung pool must fail the test, not hang it.
                self.addCleanup(executor.shutdown, wait=False, cancel_futures=True)
                payloads = [os.urandom(size) for _ in range(2000)]
                futures = [executor.submit("echo", payload) for payload in payloads]
                for future, payload in zip(futures, payloads):
                    self.assertEqual(future.result(timeout=PATIENCE_S), payload)


class BrokenPoolTest(unittest.TestCase):
    """A pool whose worker initializer fails is BROKEN: the executor raises BrokenExecutor."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(workers=2,
                                   flags=["--initializer=fail", "--initargs=no database"])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_bootup_submit_and_map_raise_broken_executor(self):
        with mpigate.Executor(self.server.target, client_name=self.id()) as executor:
            with self.assertRaises(mpigate.BrokenExecutor) as raised:
                executor.bootup()
            self.assertIsInstance(raised.exception, concurrent.futures.BrokenExecutor)
            self.assertIn("initializer 'fail' failed: no database", str(raised.exception))
            self.assertEqual(executor.pool_state, "BROKEN")
            with self.assertRaises(mpigate.BrokenExecutor):
                executor.submit("echo", b"x")
            with self.assertRaises(mpigate.BrokenExecutor):
                executor.map("echo", [b"x"])


if __name__ == "__main__":
    # On Bazel's timeout (SIGTERM), every thread's stack shows where the test hung.
    faulthandler.register(signal.SIGTERM, chain=True)
    unittest.main(verbosity=2)
