"""raw.csv rows as bench/report.py reads them, for the tests of its table and its guard."""

import csv
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"], "bench"))
import report  # pylint: disable=wrong-import-position


def raw_from(rows):
    """A report.Raw of `rows` (system, workload, metric, value, unit)."""
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("system", "workload", "metric", "value", "unit"))
        writer.writerows(rows)
    try:
        return report.Raw(out.name)
    finally:
        os.unlink(out.name)
