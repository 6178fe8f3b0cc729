"""The Python client's side of the Session protocol, against a fake Gateway the test drives
(fake_gateway.py): what goes on the wire (one SubmitTasks for a burst, chunks as TaskSpec.items,
acknowledgements, cancels), ordering of map results whatever order outcomes come in, cancel
answers, rejections, a broken pool and a broken stream; and endpoint resolution. No MPI, no server
process: every outcome arrives when the test sends it.
"""

import concurrent.futures
import faulthandler
import os
import shutil
import signal
import tempfile
import threading
import unittest
from unittest import mock

import grpc

import fake_gateway as fake
import mpigate
from mpigate import _endpoint
from mpigate.v1 import gateway_pb2
from mpigate.v1 import task_pb2

PATIENCE_S = 30


def await_tasks(gateway, count):
    """The first `count` TaskSpecs submitted, in order, however many `submit` messages carried
    them: a submit that finds the stream idle goes out at once, in a message of its own."""
    submits = gateway.await_requests(
        "submit", until=lambda those: sum(len(m.tasks) for m in those) >= count)
    return [task for submit in submits for task in submit.tasks][:count]


class FakeSessionTest(unittest.TestCase):

    def start(self, pool_state=gateway_pb2.POOL_STATE_READY, **executor_options):
        """A fake service and an executor of it. After the test the fake stops first, which
        breaks the stream of a session the test left open, and the executor's shutdown then
        returns at once."""
        gateway = fake.FakeGateway(pool_state=pool_state)
        executor = mpigate.Executor(gateway.target, client_name=self.id(), **executor_options)
        self.addCleanup(executor.shutdown, wait=True)
        self.addCleanup(gateway.close)
        return gateway, executor

    def test_a_map_is_one_submit_of_chunks_and_yields_in_input_order(self):
        gateway, executor = self.start()
        inputs = [bytes([ord("a") + i]) for i in range(7)]
        results = executor.map("upper", inputs, chunksize=3)

        [submit] = gateway.await_requests("submit")
        self.assertEqual([list(task.items) for task in submit.tasks],
                         [inputs[0:3], inputs[3:6], inputs[6:7]])
        self.assertEqual({task.function for task in submit.tasks}, {"upper"})
        ids = [task.task_id for task in submit.tasks]
        self.assertEqual(len(set(ids)), 3)
        # Outcomes in reverse order, each in its own message.
        for task in reversed(submit.tasks):
            gateway.send(fake.updates(started=[task.task_id]),
                         fake.updates(outcomes=[fake.succeeded(
                             task.task_id, items=[item.upper() for item in task.items])]))
        self.assertEqual(list(results), [item.upper() for item in inputs])
        # Every outcome handled is acknowledged.
        gateway.await_requests("ack", until=lambda acks: {i for a in acks for i in a.task_ids}
                               == set(ids))

    def test_an_unordered_map_yields_chunks_as_they_complete(self):
        gateway, executor = self.start()
        inputs = [bytes([ord("a") + i]) for i in range(7)]
        results = executor.map("upper", inputs, chunksize=3, unordered=True)
        [submit] = gateway.await_requests("submit")
        tasks = {task.task_id: task for task in submit.tasks}
        first, middle, last = sorted(tasks)
        # Each outcome is sent only once the previous chunk's results have been read, so the
        # order of completion is the test's.
        for task_id in (last, first, middle):
            task = tasks[task_id]
            gateway.send(fake.updates(outcomes=[fake.succeeded(
                task_id, items=[item.upper() for item in task.items])]))
            self.assertEqual([next(results) for _ in task.items],
                             [item.upper() for item in task.items])
        with self.assertRaises(StopIteration):
            next(results)

    def test_submits_from_a_burst_share_messages(self):
        gateway, executor = self.start()
        # A map queues its chunks at once: the writer takes them all in one message.
        executor.map("echo", [b"x"] * 100)
        [submit] = gateway.await_requests("submit")
        self.assertEqual(len(submit.tasks), 100)
        self.assertEqual([task.task_id for task in submit.tasks],
                         sorted(task.task_id for task in submit.tasks))

    def test_submit_options_reach_the_task_spec(self):
        gateway, executor = self.start()
        executor.submit("fn", b"payload", queue_timeout=0.0001, run_timeout=2.5, max_retries=3,
                        gang_size=2, payload_type="pkg.Request")
        [submit] = gateway.await_requests("submit")
        [task] = submit.tasks
        self.assertEqual(task.payload, b"payload")
        self.assertEqual(task.payload_type, "pkg.Request")
        self.assertEqual(task.options.queue_timeout_ms, 1)  # Rounded up: 0 would be no limit.
        self.assertEqual(task.options.run_timeout_ms, 2500)
        self.assertEqual(task.options.max_retries, 3)
        self.assertEqual(task.options.gang_size, 2)

    def test_cancel_reports_what_the_service_answered(self):
        gateway, executor = self.start()
        future = executor.submit("echo", b"x")
        [submit] = gateway.await_requests("submit")
        task_id = submit.tasks[0].task_id
        with concurrent.futures.ThreadPoolExecutor(1) as canceller:
            # The service says the task has started: cancel() is False, the future pending.
            refused = canceller.submit(future.cancel)
            [cancel] = gateway.await_requests("cancel")
            self.assertEqual(list(cancel.task_ids), [task_id])
            self.assertFalse(refused.done(), "cancel() waits for the service's answer")
            gateway.send(fake.cancel_results((task_id, False)))
            self.assertFalse(refused.result(PATIENCE_S))
            self.assertFalse(future.done())
            # Asked again, the service cancels it.
            accepted = canceller.submit(future.cancel)
            gateway.await_requests("cancel", count=2)
            gateway.send(fake.cancel_results((task_id, True)))
            self.assertTrue(accepted.result(PATIENCE_S))
        self.assertTrue(future.cancelled())
        # The CANCELLED outcome that follows finds the future done, and is acknowledged.
        gateway.send(fake.updates(outcomes=[fake.cancelled(task_id)]))
        gateway.await_requests("ack", until=lambda acks: any(task_id in a.task_ids for a in acks))
        self.assertTrue(future.cancelled())

    def test_shutdown_cancel_futures_waits_for_the_cancel_answer(self):
        gateway, executor = self.start()
        futures = [executor.submit("echo", b"x") for _ in range(3)]
        gateway.await_requests("submit", until=lambda s: sum(len(m.tasks) for m in s) == 3)
        with concurrent.futures.ThreadPoolExecutor(1) as stopper:
            stopping = stopper.submit(executor.shutdown, wait=False, cancel_futures=True)
            [cancel] = gateway.await_requests("cancel")
            self.assertCountEqual(cancel.task_ids, [f.task_id for f in futures])
            # The first had started; the others were cancelled.
            gateway.send(fake.updates(started=[futures[0].task_id]),
                         fake.cancel_results((futures[0].task_id, False),
                                             (futures[1].task_id, True),
                                             (futures[2].task_id, True)))
            stopping.result(PATIENCE_S)
        self.assertEqual([f.cancelled() for f in futures], [False, True, True])
        self.assertTrue(futures[0].running())
        with self.assertRaises(RuntimeError):
            executor.submit("echo", b"after shutdown")
        gateway.await_requests("shutdown")
        gateway.send(fake.updates(outcomes=[fake.succeeded(futures[0].task_id, b"done")]),
                     fake.closed())
        gateway.end()
        executor.shutdown(wait=True)
        self.assertEqual(futures[0].result(), b"done")

    def test_interrupt_and_kill_send_their_flags_and_report_the_answer(self):
        gateway, executor = self.start()
        running, queued = executor.submit("sleep", b"9"), executor.submit("sleep", b"9")
        running_id, queued_id = (task.task_id for task in await_tasks(gateway, 2))
        gateway.send(fake.updates(started=[running_id]))
        self.assertTrue(running.wait_started(PATIENCE_S))
        self.assertFalse(running.cancel(), "cancel() does not touch a running task")
        self.assertEqual(gateway.requests("cancel"), [], "nor asks the service")
        with concurrent.futures.ThreadPoolExecutor(1) as canceller:
            interrupting = canceller.submit(running.interrupt)
            [cancel] = gateway.await_requests("cancel")
            self.assertEqual(list(cancel.task_ids), [running_id])
            self.assertTrue(cancel.interrupt_running)
            self.assertFalse(cancel.force)
            self.assertFalse(interrupting.done(), "interrupt() waits for the service's answer")
            gateway.send(fake.cancel_results((running_id, False, True)))
            self.assertTrue(interrupting.result(PATIENCE_S))
            self.assertFalse(running.done(), "it runs on until its function gives up")

            killing = canceller.submit(queued.kill)
            [_, cancel] = gateway.await_requests("cancel", count=2)
            self.assertEqual((list(cancel.task_ids), cancel.force), ([queued_id], True))
            gateway.send(fake.cancel_results((queued_id, True)))
            self.assertTrue(killing.result(PATIENCE_S), "a queued task is cancelled")
        self.assertTrue(queued.cancelled())

        # The interrupted task gave up: it ends with its CANCELLED error, not CANCELLED itself
        # (concurrent.futures has no way from RUNNING to CANCELLED).
        gateway.send(fake.updates(outcomes=[fake.cancelled(running_id)]))
        with self.assertRaises(mpigate.TaskError) as raised:
            running.result(PATIENCE_S)
        self.assertEqual(raised.exception.code, grpc.StatusCode.CANCELLED)
        self.assertFalse(running.interrupt(), "an ended task is not interrupted again")
        self.assertTrue(queued.kill(), "a cancelled one stays so")
        self.assertEqual(len(gateway.requests("cancel")), 2, "known answers need no request")

    def test_interrupt_from_a_done_callback_sends_without_waiting(self):
        gateway, executor = self.start()
        first, second = executor.submit("echo", b"1"), executor.submit("sleep", b"9")
        await_tasks(gateway, 2)
        answers = []
        first.add_done_callback(lambda _: answers.append(second.interrupt()))
        gateway.send(fake.updates(started=[second.task_id],
                                  outcomes=[fake.succeeded(first.task_id, b"1")]))
        [cancel] = gateway.await_requests("cancel")
        self.assertEqual((list(cancel.task_ids), cancel.interrupt_running),
                         ([second.task_id], True))
        gateway.send(fake.cancel_results((second.task_id, False, True)))
        gateway.send(fake.updates(outcomes=[fake.succeeded(second.task_id)]))
        self.assertEqual(second.result(PATIENCE_S), b"")
        # The callback ran on the reader thread, which has delivered second's result since.
        self.assertEqual(answers, [False])

    def test_progress_reaches_the_future_and_its_callbacks_until_it_is_done(self):
        gateway, executor = self.start()
        future = executor.submit("sleep", b"9")
        [submit] = gateway.await_requests("submit")
        task_id = submit.tasks[0].task_id
        self.assertIsNone(future.progress())
        reports = []
        reported = threading.Event()
        future.add_progress_callback(lambda f, p: reports.append((f, p)))
        # A callback that raises is logged; the others still run.
        future.add_progress_callback(lambda f, p: 1 / 0)
        future.add_progress_callback(
            lambda f, p: (reports.append(("second", p.fraction)), reported.set()))
        with self.assertLogs("mpigate", "ERROR"):
            gateway.send(fake.updates(started=[task_id], progress=[(task_id, 0.25, "a quarter")]))
            self.assertTrue(reported.wait(PATIENCE_S))
        self.assertEqual(reports, [(future, (0.25, "a quarter")), ("second", 0.25)])
        self.assertEqual(future.progress(), mpigate.Progress(0.25, "a quarter"))
        self.assertEqual(future.progress().message, "a quarter")
        gateway.send(fake.updates(progress=[(task_id, 0.5, "half")],
                                  outcomes=[fake.succeeded(task_id, b"done")]))
        self.assertEqual(future.result(PATIENCE_S), b"done")
        self.assertEqual(future.progress(), (0.5, "half"), "the last report stays")
        late = []
        future.add_progress_callback(lambda f, p: late.append(p))
        self.assertEqual(len(reports), 4)
        self.assertEqual(late, [])

    def test_task_errors_carry_code_message_and_exception_type(self):
        gateway, executor = self.start()
        unknown = executor.submit("nope", b"")
        thrown = executor.submit("word_count", b"\xff")
        unknown_id, thrown_id = (task.task_id for task in await_tasks(gateway, 2))
        gateway.send(fake.rejected(unknown_id, grpc.StatusCode.NOT_FOUND, "no function 'nope'"))
        outcome = fake.succeeded(thrown_id)
        outcome.state = task_pb2.TASK_STATE_FAILED
        outcome.error.code = grpc.StatusCode.UNKNOWN.value[0]
        outcome.error.message = "not UTF-8"
        outcome.error.exception_type = "std::invalid_argument"
        gateway.send(fake.updates(outcomes=[outcome]))

        error = unknown.exception(PATIENCE_S)
        self.assertIsInstance(error, mpigate.TaskError)
        self.assertEqual((error.code, error.message), (grpc.StatusCode.NOT_FOUND,
                                                       "no function 'nope'"))
        error = thrown.exception(PATIENCE_S)
        self.assertEqual(error.code, grpc.StatusCode.UNKNOWN)
        self.assertEqual(error.exception_type, "std::invalid_argument")
        self.assertEqual(str(error), "UNKNOWN: std::invalid_argument: not UTF-8")

    def test_a_broken_pool_raises_broken_executor(self):
        gateway, executor = self.start(pool_state=gateway_pb2.POOL_STATE_BOOTING)
        self.assertEqual(executor.pool_state, "BOOTING")
        queued = executor.submit("echo", b"queued while booting")
        [submit] = gateway.await_requests("submit")
        gateway.send(fake.rejected(submit.tasks[0].task_id, grpc.StatusCode.FAILED_PRECONDITION,
                                   "BrokenExecutor: initializer 'init' failed: no database"))
        self.assertIsInstance(queued.exception(PATIENCE_S), mpigate.BrokenExecutor)
        gateway.send(fake.pool(gateway_pb2.POOL_STATE_BROKEN, "initializer 'init' failed"))
        with self.assertRaises(concurrent.futures.BrokenExecutor) as raised:
            executor.bootup(wait=True)  # Returns once the pool is no longer booting.
        self.assertIn("initializer 'init' failed", str(raised.exception))
        with self.assertRaises(mpigate.BrokenExecutor):
            executor.submit("echo", b"x")

    def test_a_broken_stream_fails_what_is_pending_and_never_hangs(self):
        gateway, executor = self.start()
        futures = [executor.submit("echo", b"x") for _ in range(2)]
        gateway.await_requests("submit", until=lambda s: sum(len(m.tasks) for m in s) == 2)
        with concurrent.futures.ThreadPoolExecutor(1) as canceller:
            cancelling = canceller.submit(futures[1].cancel)
            gateway.await_requests("cancel")
            gateway.end(grpc.StatusCode.UNAVAILABLE, "the fake went away")
            # The cancel waiter is released: nothing was cancelled.
            self.assertFalse(cancelling.result(PATIENCE_S))
        for future in futures:
            error = future.exception(PATIENCE_S)
            self.assertIsInstance(error, mpigate.ConnectionLost)
            self.assertIsInstance(error, ConnectionError)
            self.assertIn("the fake went away", str(error))
        with self.assertRaises(mpigate.ConnectionLost):
            executor.submit("echo", b"after the loss")
        executor.shutdown(wait=True)

    # --- Resuming a session ---

    def resumable(self, token=b"token", **resumed_fields):
        """A fake that opens sessions resumable with `token` and answers a resuming `open` with
        `resumed_fields`, or with the next of them if it is a list (a tuple: abort so); the
        executor; and the list of resuming `open`s received."""
        answers = resumed_fields.pop("answers", None)
        resumes = []

        def on_open(open_request):
            if not open_request.resume_token:
                return fake.opened(resume_token=token, resume_grace_ms=60000)
            resumes.append(open_request)
            answer = answers.pop(0) if answers else resumed_fields
            if isinstance(answer, tuple):
                return answer
            return fake.opened(resume_token=token, resume_grace_ms=60000, resumed=True, **answer)

        gateway = fake.FakeGateway(on_open=on_open)
        self.addCleanup(gateway.close)
        executor = mpigate.Executor(gateway.target, client_name=self.id())
        self.addCleanup(self.close_session, gateway, executor)
        return gateway, executor, resumes

    @staticmethod
    def close_session(gateway, executor):
        """Ends a resumable session as the service would: a broken stream would be resumed."""
        gateway.send(fake.closed())
        gateway.end()
        executor.shutdown(wait=True)

    def test_a_broken_stream_is_resumed_sending_again_only_what_the_service_lacks(self):
        gateway, executor, resumes = self.resumable(last_task_id=1)
        self.assertEqual(executor.resume_token, b"token")
        first, second = executor.submit("echo", b"1"), executor.submit("echo", b"2")
        self.assertEqual([task.task_id for task in await_tasks(gateway, 2)], [1, 2])
        gateway.send(fake.updates(started=[1]))
        self.assertTrue(first.wait_started(PATIENCE_S))
        with concurrent.futures.ThreadPoolExecutor(1) as canceller:
            cancelling = canceller.submit(second.cancel)
            gateway.await_requests("cancel")
            # The stream breaks before the service answers; it had only task 1 (last_task_id).
            gateway.end(grpc.StatusCode.UNAVAILABLE, "connection reset")
            gateway.await_requests("open", count=2)
            self.assertEqual(resumes[0].resume_token, b"token")
            # Task 2 goes again, alone, and so does the unanswered cancel.
            again = await_tasks(gateway, 3)[2:]
            self.assertEqual([(t.task_id, t.payload) for t in again], [(2, b"2")])
            [_, cancel] = gateway.await_requests("cancel", count=2)
            self.assertEqual(list(cancel.task_ids), [2])
            self.assertFalse(cancelling.done())
            gateway.send(fake.cancel_results((2, True)))
            self.assertTrue(cancelling.result(PATIENCE_S))
        # Submitting goes on with the next id, on the new stream; outcomes complete the futures.
        third = executor.submit("echo", b"3")
        self.assertEqual([task.task_id for task in await_tasks(gateway, 4)], [1, 2, 2, 3])
        gateway.send(fake.updates(outcomes=[fake.succeeded(1, b"1"), fake.cancelled(2),
                                            fake.succeeded(3, b"3")]))
        self.assertEqual((first.result(PATIENCE_S), third.result(PATIENCE_S)), (b"1", b"3"))
        self.assertTrue(second.cancelled())
        self.assertEqual(len(resumes), 1)

    def test_outcomes_sent_again_after_a_resume_complete_nothing_twice(self):
        gateway, executor, resumes = self.resumable(last_task_id=2)
        futures = [executor.submit("echo", b"x") for _ in range(2)]
        gateway.await_requests("submit", until=lambda s: sum(len(m.tasks) for m in s) == 2)
        done = []
        futures[0].add_done_callback(done.append)
        gateway.send(fake.updates(outcomes=[fake.succeeded(1, b"first")]))
        self.assertEqual(futures[0].result(PATIENCE_S), b"first")
        gateway.end(grpc.StatusCode.INTERNAL, "stream reset")
        gateway.await_requests("open", count=2)
        # The service did not see the acknowledgement (if it went out at all): it sends task 1's
        # outcome again, which changes nothing. The client did not need to send task 2 again.
        gateway.send(fake.updates(outcomes=[fake.succeeded(1, b"again"),
                                            fake.succeeded(2, b"second")]))
        self.assertEqual(futures[1].result(PATIENCE_S), b"second")
        self.assertEqual((futures[0].result(), done), (b"first", [futures[0]]))
        self.assertEqual(sum(len(m.tasks) for m in gateway.requests("submit")), 2)
        # Task 1 was acknowledged on the first stream or in the resuming `open`, and task 1 and
        # 2 after it.
        acked = lambda: ({i for a in gateway.requests("ack") for i in a.task_ids} |
                         set(resumes[0].acked_task_ids))
        gateway.await_requests("ack", until=lambda _: acked() >= {1, 2})

    def test_a_resume_the_service_refuses_fails_the_futures_with_connection_lost(self):
        gateway, executor, _ = self.resumable(
            answers=[fake.abort(grpc.StatusCode.NOT_FOUND, "no session to resume")])
        future = executor.submit("echo", b"x")
        gateway.await_requests("submit")
        gateway.end(grpc.StatusCode.UNAVAILABLE, "connection reset")
        with self.assertRaises(mpigate.ConnectionLost) as raised:
            future.result(PATIENCE_S)
        self.assertIn("could not be resumed", str(raised.exception))
        self.assertIn("no session to resume", str(raised.exception))
        with self.assertRaises(mpigate.ConnectionLost):
            executor.submit("echo", b"y")

    def test_a_resume_is_tried_again_while_the_service_holds_the_old_stream(self):
        gateway, executor, resumes = self.resumable(answers=[
            fake.abort(grpc.StatusCode.FAILED_PRECONDITION, "another stream holds the session"),
            {"last_task_id": 1}])
        future = executor.submit("echo", b"x")
        gateway.await_requests("submit")
        gateway.end(grpc.StatusCode.UNAVAILABLE, "connection reset")
        gateway.await_requests("open", count=3)
        gateway.send(fake.updates(outcomes=[fake.succeeded(1, b"x")]))
        self.assertEqual(future.result(PATIENCE_S), b"x")
        self.assertEqual(len(resumes), 2)

    def test_a_stream_the_service_ended_on_purpose_or_after_closed_is_not_resumed(self):
        gateway, executor, resumes = self.resumable()
        future = executor.submit("echo", b"x")
        gateway.await_requests("submit")
        gateway.end(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        with self.assertRaises(mpigate.ConnectionLost):
            future.result(PATIENCE_S)
        self.assertEqual(resumes, [])

    def test_an_executor_resumes_another_ones_session_with_its_token(self):
        resumes = []

        def on_open(open_request):
            resumes.append(open_request)
            return fake.opened(resume_token=b"token", resume_grace_ms=60000, resumed=True,
                               last_task_id=7, pending_task_ids=[6, 7])

        gateway = fake.FakeGateway(on_open=on_open)
        self.addCleanup(gateway.close)
        with self.assertRaises(TypeError):
            mpigate.Executor(gateway.target, resume_token="token")
        with self.assertRaises(ValueError):
            mpigate.Executor(gateway.target, acked_task_ids=[5])
        executor = mpigate.Executor(gateway.target, resume_token=b"token", acked_task_ids=[3, 5])
        self.addCleanup(self.close_session, gateway, executor)
        [open_request] = resumes
        self.assertEqual((open_request.resume_token, list(open_request.acked_task_ids)),
                         (b"token", [3, 5]))
        chunk, single = executor.reattached
        self.assertEqual((chunk.task_id, single.task_id), (6, 7))
        # New tasks take ids after the session's last.
        executor.submit("echo", b"new")
        [submit] = gateway.await_requests("submit")
        self.assertEqual([task.task_id for task in submit.tasks], [8])
        # Which kind of task a reattached one was shows in its outcome: a map's chunk has items.
        gateway.send(fake.updates(outcomes=[fake.succeeded(6, items=[b"a", b"b"]),
                                            fake.succeeded(7, b"seven")]))
        self.assertEqual(chunk.result(PATIENCE_S), [b"a", b"b"])
        self.assertEqual(single.result(PATIENCE_S), b"seven")

    def test_a_task_above_the_message_limit_fails_alone(self):
        gateway, executor = self.start(max_message_bytes=4096)
        too_large = executor.submit("echo", b"x" * 8192)
        error = too_large.exception(0)
        self.assertEqual(error.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        small = executor.submit("echo", b"small")
        [submit] = gateway.await_requests("submit")
        self.assertEqual([task.payload for task in submit.tasks], [b"small"])
        self.assertFalse(small.done())

    def test_a_service_that_does_not_answer_open_fails_the_connect(self):
        gateway = fake.FakeGateway(answer_open=False)
        self.addCleanup(gateway.close)
        with self.assertRaises(ConnectionError) as raised:
            mpigate.Executor(gateway.target, connect_timeout=0.5)
        self.assertIn("did not answer within 0.5 s", str(raised.exception))

    def test_no_service_at_the_endpoint_fails_the_connect(self):
        with tempfile.TemporaryDirectory(dir="/tmp") as directory:
            with self.assertRaises(ConnectionError) as raised:
                mpigate.Executor(f"unix:{directory}/nothing.sock", connect_timeout=0.2)
        self.assertIn("did not answer", str(raised.exception))


class ResolveEndpointTest(unittest.TestCase):
    """The endpoint is found as common/endpoint.h says."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir)
        environment = mock.patch.dict(os.environ, {
            "MPIGATE_ENDPOINT": "", "MPIGATE_ENDPOINT_FILE": "", "MPIGATE_RUN_DIR": self.dir})
        environment.start()
        self.addCleanup(environment.stop)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        return path

    def test_explicit_then_environment_then_endpoint_file(self):
        self.write("endpoint", "unix:/run/dir.sock\n")
        self.assertEqual(mpigate.resolve_endpoint(), "unix:/run/dir.sock")
        os.environ["MPIGATE_ENDPOINT_FILE"] = self.write("other", "  node1:50051 \n")
        self.assertEqual(mpigate.resolve_endpoint(), "node1:50051")
        os.environ["MPIGATE_ENDPOINT"] = "node2:50051"
        self.assertEqual(mpigate.resolve_endpoint(), "node2:50051")
        self.assertEqual(mpigate.resolve_endpoint("node3:50051"), "node3:50051")

    def test_default_run_dir_is_per_user(self):
        del os.environ["MPIGATE_RUN_DIR"]
        self.assertEqual(_endpoint.default_endpoint_file(), f"/tmp/mpigate-{os.getuid()}/endpoint")

    def test_a_missing_or_empty_endpoint_file_says_what_to_do(self):
        with self.assertRaises(ConnectionError) as raised:
            mpigate.resolve_endpoint()
        self.assertIn(f"no endpoint file at {self.dir}/endpoint", str(raised.exception))
        self.assertIn("MPIGATE_ENDPOINT", str(raised.exception))
        self.write("endpoint", "\n")
        with self.assertRaises(ConnectionError) as raised:
            mpigate.resolve_endpoint()
        self.assertIn("is empty", str(raised.exception))

    def test_token_and_tls_come_from_the_endpoint_file_unless_given(self):
        for name in ("MPIGATE_TOKEN", "MPIGATE_TLS_CA", "MPIGATE_TLS_CERT", "MPIGATE_TLS_KEY"):
            os.environ[name] = ""
        self.write("endpoint", "node1:50051\ntoken=from-the-file\ntls=1\n")
        access = _endpoint.resolve_access()
        self.assertEqual((access.target, access.token, access.tls), ("node1:50051",
                                                                     "from-the-file", True))
        # TLS without a CA: the system's roots; no client certificate.
        self.assertEqual(access[3:], (None, None, None))
        self.assertEqual(_endpoint.resolve_access(token="given").token, "given")
        # An explicit target takes nothing from the file.
        self.assertEqual(_endpoint.resolve_access("node2:50051")[:3], ("node2:50051", None, False))

        self.write("endpoint", "unix:/run/dir.sock\n")
        self.assertFalse(_endpoint.resolve_access().tls)
        pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        os.environ["MPIGATE_TLS_CA"] = self.write("ca.pem", pem)
        access = _endpoint.resolve_access("node3:50051")
        self.assertTrue(access.tls)
        self.assertEqual(access.root_certificates, pem.encode())
        # PEM given as its text, and a client certificate with its key.
        access = _endpoint.resolve_access("node3:50051", tls_cert=pem, tls_key=pem)
        self.assertEqual((access.certificate_chain, access.private_key), (pem.encode(),) * 2)

    def test_a_client_certificate_without_its_key_or_a_missing_pem_file_is_refused(self):
        with self.assertRaises(ValueError) as raised:
            _endpoint.resolve_access("node1:50051", tls_ca="-----BEGIN x", tls_cert="c.pem")
        self.assertIn("needs its key", str(raised.exception))
        with self.assertRaises(FileNotFoundError) as raised:
            _endpoint.resolve_access("node1:50051", tls_ca=f"{self.dir}/none.pem")
        self.assertIn(f"TLS CA certificate: no file {self.dir}/none.pem", str(raised.exception))
        with self.assertRaises(ValueError) as raised:
            _endpoint.resolve_access("node1:50051", tls_ca=self.write("empty.pem", "no pem\n"))
        self.assertIn(f"TLS CA certificate {self.dir}/empty.pem holds no PEM",
                      str(raised.exception))


if __name__ == "__main__":
    # On Bazel's timeout (SIGTERM), every thread's stack shows where the test hung.
    faulthandler.register(signal.SIGTERM, chain=True)
    unittest.main(verbosity=2)
