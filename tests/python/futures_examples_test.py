"""The examples of mpigate.futures (examples/python) run against a real pool: each is started as
a user would, with /usr/bin/python3 and the service in $MPIGATE_ENDPOINT, and its output checked.
"""

import faulthandler
import os
import signal
import subprocess
import unittest

from server_process import ServerProcess, runfile

PATIENCE_S = 120
SERVER = ServerProcess(workers=2)


def setUpModule():
    SERVER.start()


def tearDownModule():
    SERVER.stop_checked()


class ExamplesTest(unittest.TestCase):

    def run_example(self, name, *args):
        done = subprocess.run(["/usr/bin/python3", runfile(f"examples/python/{name}"), *args],
                              env=dict(os.environ, MPIGATE_ENDPOINT=SERVER.target),
                              capture_output=True, text=True, timeout=PATIENCE_S, check=False)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout

    def test_ensemble_sums_seeded_batches_as_a_serial_run_does(self):
        output = self.run_example("ensemble.py", "--batches", "6", "--trajectories", "500",
                                  "--check")
        self.assertIn("6 batches of 500 trajectories on 2 workers", output)
        self.assertIn("<x(t= 0.00)> = +0.99", output)
        self.assertIn("matches the serial run: True", output)

    def test_gang_sum_allreduces_over_the_gang(self):
        output = self.run_example("gang_sum.py", "--ranks", "2", "--n", "100000")
        self.assertIn("a gang of 2 ranks", output)
        self.assertIn("sum(range(100000)) = 4999950000 (expected 4999950000)", output)
        self.assertIn("pi ~= 3.14159265", output)

    def test_julia_map_matches_a_serial_run(self):
        output = self.run_example("julia.py", "--width", "40", "--height", "16", "--chunksize",
                                  "3", "--check")
        lines = output.splitlines()
        self.assertEqual([len(line) for line in lines[:16]], [40] * 16)
        self.assertIn("@", output)
        self.assertEqual(lines[-1], "matches the serial run: True")


if __name__ == "__main__":
    faulthandler.register(signal.SIGTERM, chain=True)
    unittest.main(verbosity=2)
