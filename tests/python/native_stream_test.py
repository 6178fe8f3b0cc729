"""mpigate._native_stream, the Session stream's bytes over gRPC C++, end to end against a real
mpigate-server: what the session tests do not reach by themselves (a read cancelled from another
thread, writes queued behind each other, half-close, large messages, ended calls, bad endpoints
and arguments)."""

import faulthandler
import os
import signal
import threading
import unittest

import grpc

import mpigate
from mpigate import _native_stream
from mpigate.v1 import gateway_pb2
from mpigate.v1 import task_pb2
from server_process import ServerProcess

METHOD = "/mpigate.v1.Gateway/Session"
MAX_MESSAGE_BYTES = 64 << 20
# How long a test waits for what must happen soon; reached only when something is wrong.
PATIENCE_S = 60

SERVER = ServerProcess(workers=2)


def request(**fields):
    return gateway_pb2.SessionRequest(**fields).SerializeToString()


def event(data):
    return gateway_pb2.SessionEvent.FromString(data)


def code_name(number):
    return {code.value[0]: code for code in grpc.StatusCode}[number].name


class NativeStreamTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        SERVER.start()

    @classmethod
    def tearDownClass(cls):
        SERVER.stop_checked()

    def open_session(self):
        """A stream with an opened session (no shared memory: everything in the messages)."""
        channel = _native_stream.Channel(SERVER.target, METHOD, MAX_MESSAGE_BYTES)
        stream = channel.stream(wait_for_ready=True)
        self.assertTrue(stream.write(request(open=gateway_pb2.OpenSession(
            client_name=self.id(), max_message_bytes=MAX_MESSAGE_BYTES))))
        opened = event(stream.read())
        self.assertEqual(opened.WhichOneof("event"), "opened")
        return channel, stream

    def outcomes(self, stream, count):
        """The next `count` outcomes read, by task id."""
        outcomes = {}
        while len(outcomes) < count:
            data = stream.read()
            self.assertIsNotNone(data, "the stream ended before every outcome came")
            for outcome in event(data).updates.outcomes:
                outcomes[outcome.task_id] = outcome
        return outcomes

    def test_cancel_from_another_thread_ends_a_blocked_read(self):
        _, stream = self.open_session()
        read = []
        reader = threading.Thread(target=lambda: read.append(stream.read()))
        reader.start()
        # Nothing comes on an idle session: the reader waits in read(), without the GIL (this
        # thread runs on). cancel() ends the call, whichever happens first.
        stream.cancel()
        reader.join(PATIENCE_S)
        self.assertFalse(reader.is_alive())
        self.assertEqual(read, [None])
        code, _ = stream.finish()
        self.assertEqual(code_name(code), "CANCELLED")

    def test_writes_queued_behind_each_other_all_arrive_in_order(self):
        _, stream = self.open_session()
        # Written back to back without reading: the writes after the first wait in the stream
        # and go out as this thread reads. A cancel after its task must not overtake it.
        count = 300
        for task_id in range(1, count + 1):
            spec = task_pb2.TaskSpec(task_id=task_id, function="echo",
                                     payload=str(task_id).encode() * 100)
            self.assertTrue(stream.write(request(submit=gateway_pb2.SubmitTasks(tasks=[spec]))))
        outcomes = self.outcomes(stream, count)
        self.assertEqual({i: o.result for i, o in outcomes.items()},
                         {i: str(i).encode() * 100 for i in range(1, count + 1)})
        # Shutdown, then half-close: the service ends the stream once the session is closed and
        # it saw the half-close.
        self.assertTrue(stream.write(request(shutdown=gateway_pb2.ShutdownSession())))
        kinds = []
        while (data := stream.read()) is not None:
            kinds.append(event(data).WhichOneof("event"))
            if kinds[-1] == "closed":
                self.assertTrue(stream.writes_done())
        self.assertEqual(kinds[-1:], ["closed"])
        self.assertEqual(stream.finish(), (0, ""))

    def test_large_messages_both_ways(self):
        _, stream = self.open_session()
        payload = os.urandom(40 << 20)
        spec = task_pb2.TaskSpec(task_id=1, function="echo", payload=payload)
        self.assertTrue(stream.write(request(submit=gateway_pb2.SubmitTasks(tasks=[spec]))))
        [outcome] = self.outcomes(stream, 1).values()
        self.assertEqual(outcome.state, task_pb2.TASK_STATE_SUCCEEDED)
        self.assertTrue(outcome.result == payload)
        stream.cancel()

    def test_an_ended_call_fails_writes_and_reads_and_keeps_its_status(self):
        _, stream = self.open_session()
        stream.cancel()
        self.assertIsNone(stream.read())
        first = stream.finish()
        self.assertEqual(code_name(first[0]), "CANCELLED")
        self.assertFalse(stream.write(request(shutdown=gateway_pb2.ShutdownSession())))
        self.assertFalse(stream.writes_done())
        self.assertIsNone(stream.read())
        self.assertEqual(stream.finish(), first)

    def test_a_message_above_the_limit_fails_the_call_with_its_reason(self):
        channel = _native_stream.Channel(SERVER.target, METHOD, 1 << 20)
        stream = channel.stream(wait_for_ready=True)
        stream.write(b"\0" * (2 << 20))
        self.assertIsNone(stream.read())
        code, message = stream.finish()
        self.assertEqual(code_name(code), "RESOURCE_EXHAUSTED")
        self.assertIn("message larger than max", message)

    def test_no_service_at_the_endpoint(self):
        missing = f"unix:{SERVER.dir}/missing.sock"
        # Without wait_for_ready the call fails at once, saying why.
        stream = _native_stream.Channel(missing, METHOD, 1 << 20).stream()
        stream.write(request(open=gateway_pb2.OpenSession()))
        self.assertIsNone(stream.read())
        code, message = stream.finish()
        self.assertEqual(code_name(code), "UNAVAILABLE")
        self.assertIn("missing.sock", message)
        # The session waits for a service still starting, up to its connect timeout.
        with self.assertRaisesRegex(ConnectionError, "did not answer within 0.5 s"):
            mpigate.Executor(missing, connect_timeout=0.5)

    def test_a_tls_channel_to_a_plain_service_fails_the_handshake(self):
        stream = _native_stream.Channel(SERVER.target, METHOD, 1 << 20, tls=True,
                                        root_certificates=b"not a certificate").stream()
        stream.write(request(open=gateway_pb2.OpenSession()))
        self.assertIsNone(stream.read())
        code, _ = stream.finish()
        self.assertEqual(code_name(code), "UNAVAILABLE")

    def test_bad_arguments_raise_type_errors(self):
        with self.assertRaises(TypeError):
            _native_stream.Channel(None, METHOD, 1 << 20)
        with self.assertRaises(TypeError):
            _native_stream.Channel(SERVER.target, METHOD, 1 << 20, tls=True,
                                   root_certificates="text, not bytes")
        channel = _native_stream.Channel(SERVER.target, METHOD, 1 << 20)
        with self.assertRaises(TypeError):
            channel.stream(metadata=[("authorization", 1)])
        stream = channel.stream()
        with self.assertRaises(TypeError):
            stream.write("text, not bytes")
        stream.cancel()
        channel.close()
        with self.assertRaisesRegex(ValueError, "closed"):
            channel.stream()


if __name__ == "__main__":
    faulthandler.register(signal.SIGTERM)
    unittest.main(verbosity=2)
