"""Large echoes from the Python client, through shared memory and through the messages, side by
side in one run against a running pool (its `echo` builtin), with where the client's time goes.

    PYTHONPATH=client/python:bazel-bin/client/python /usr/bin/python3 \\
        bench/python_shared_memory.py --endpoint unix:/tmp/x/s.sock [--mib 64] [--rounds 5]

Each round echoes a numpy array of --mib MiB as a pickle-5 frame and its out-of-band buffer (the
parts mpigate.futures sends) once through shared memory and once through the messages, in
alternating order, and decodes the result into an array without copying it where it can.
Prints, per path, the median round trip and GB/s (both as the array's size over the round trip,
"one way", and as bench/mpigate_bench.cc counts, "both ways": twice the size), and the medians of
the phases the client sees: submit (encode, and for shared memory writing the object), the wait
for the result (the pool: gateway, worker, runner, the echo's own copy, and the result's object
or message), and decode (for shared memory mapping the result's object).
"""

import argparse
import pickle
import statistics
import time

import numpy

import mpigate
from mpigate.v1 import task_pb2


def echo_once(executor, array):
    """One echo of `array`; returns the decoded array and the phases' durations in seconds."""
    start = time.perf_counter()
    buffers = []
    frame = pickle.dumps(array, protocol=5, buffer_callback=buffers.append)
    parts = [frame] + [buffer.raw() for buffer in buffers]
    [future] = executor._session.submit_many([task_pb2.TaskSpec(function="echo")], parts=[parts])
    submitted = time.perf_counter()
    result = future.result()
    returned = time.perf_counter()
    view = memoryview(result)
    echoed = pickle.loads(view[:len(frame)], buffers=[view[len(frame):]])
    decoded = time.perf_counter()
    return echoed, (submitted - start, returned - submitted, decoded - returned,
                    decoded - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.mib << 20
    array = numpy.random.default_rng(1).integers(0, 255, size, dtype=numpy.uint8)
    paths = {
        "shared memory": mpigate.Executor(args.endpoint, client_name="python_shared_memory"),
        "messages": mpigate.Executor(args.endpoint, client_name="python_messages",
                                     shared_memory_min_bytes=0),
    }
    samples = {name: [] for name in paths}
    for round_number in range(args.rounds + 1):
        order = list(paths) if round_number % 2 == 0 else list(paths)[::-1]
        for name in order:
            echoed, phases = echo_once(paths[name], array)
            if not numpy.array_equal(echoed, array):
                raise SystemExit(f"the {name} echo came back different")
            del echoed
            if round_number > 0:  # the first warms up
                samples[name].append(phases)
    for executor in paths.values():
        executor.shutdown()
    print(f"{args.mib} MiB numpy echo, median of {args.rounds} rounds:")
    for name, phases in samples.items():
        submit, wait, decode, total = (statistics.median(p[i] for p in phases) for i in range(4))
        print(f"  {name:14s} {total * 1e3:7.1f} ms round trip: {size / total / 1e9:5.2f} GB/s one "
              f"way, {2 * size / total / 1e9:5.2f} GB/s both ways; submit {submit * 1e3:.1f} ms, "
              f"wait {wait * 1e3:.1f} ms, decode {decode * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
