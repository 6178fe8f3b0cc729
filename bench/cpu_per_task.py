"""Where the time of a Python client's tasks goes: the CPU time and the voluntary context switches
(wake-ups) per task of this client and of each kind of process of the mpigate service (gateway,
workers, task runners), from /proc, over a submit loop or sequential round trips of the no-op
Python function of bench/compare.py's Python workloads (h).

    PYTHONPATH=client/python:bazel-bin/client/python /usr/bin/python3 bench/cpu_per_task.py \\
        --endpoint=unix:/tmp/x/s.sock --server_pid=PID --workload=round_trips --tasks=2000

--client=futures (default) runs echo through mpigate.futures (python.call on the workers);
--client=executor runs the built-in echo through mpigate.Executor, the same session without
Python on the workers, for the difference. Run it against a service that does nothing else; the
client and service must be on this host. Prints one line per process kind.
"""

import argparse
import os
import resource
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(BENCH, "peers"))
# pylint: disable=wrong-import-position
import process_tree
import workloads


def by_kind(server_pid):
    """{program name: [pids]} of the service's process tree."""
    kinds = {}
    for pid in process_tree.descendants(server_pid):
        name = os.path.basename(process_tree.command_line(pid).split(" ", 1)[0])
        kinds.setdefault(name, []).append(pid)
    return kinds


def client_pool(kind, endpoint):
    """A workloads.Pool whose submit(payload) is the no-op task of `kind`, and its shutdown."""
    if kind == "futures":
        from mpigate.futures import MPIPoolExecutor  # pylint: disable=import-outside-toplevel
        executor = MPIPoolExecutor(max_workers=2, endpoint=endpoint,
                                   path=[os.path.join(BENCH, "peers")])
        return workloads.ExecutorPool(executor), executor.shutdown

    import mpigate  # pylint: disable=import-outside-toplevel

    class BuiltinEcho(workloads.ExecutorPool):
        def submit(self, payload):
            return self.executor.submit("echo", payload)

    executor = mpigate.Executor(endpoint)
    return BuiltinEcho(executor), executor.shutdown


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--server_pid", type=int, required=True,
                        help="the mpigate-server whose process tree to measure")
    parser.add_argument("--client", choices=("futures", "executor"), default="futures")
    parser.add_argument("--workload", choices=("submit_loop", "round_trips"), required=True)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()

    pool, shutdown = client_pool(args.client, args.endpoint)
    if args.client == "futures":
        workloads.warm_up(pool, 1000)
    else:
        pool.results([pool.submit(b"") for _ in range(1000)])
    kinds = by_kind(args.server_pid)
    cpu_before = {kind: process_tree.cpu_seconds(pids) for kind, pids in kinds.items()}
    switches_before = {kind: process_tree.voluntary_switches(pids) for kind, pids in kinds.items()}
    own_switches_before = process_tree.voluntary_switches([os.getpid()])[os.getpid()]
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if args.workload == "submit_loop":
        rate = workloads.submit_loop_rate(pool, args.tasks)
    else:
        workloads.round_trips_us(pool, args.tasks)
        rate = round(args.tasks / (time.perf_counter() - start))
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    own_switches = process_tree.voluntary_switches([os.getpid()])[os.getpid()] - own_switches_before
    print(f"{args.client} {args.workload}: {rate} tasks/s; per task, CPU and voluntary context "
          f"switches (load average {os.getloadavg()[0]:.2f}):")
    own_cpu = (own_after.ru_utime + own_after.ru_stime - own_before.ru_utime - own_before.ru_stime)
    print(f"  client: {own_cpu / args.tasks * 1e6:.1f} us, {own_switches / args.tasks:.2f}")
    for kind, pids in kinds.items():
        after = process_tree.cpu_seconds(pids)
        cpu = sum(seconds - cpu_before[kind].get(pid, 0.0) for pid, seconds in after.items())
        switches = sum(count - switches_before[kind].get(pid, 0) for pid, count in
                       process_tree.voluntary_switches(pids).items())
        print(f"  {kind} ({len(pids)}): {cpu / args.tasks * 1e6:.1f} us, "
              f"{switches / args.tasks:.2f}")
    shutdown()


if __name__ == "__main__":
    main()
