"""Functions for the mpigate.futures tests that must travel by reference or by value as a user's
module would: an executor with this directory in its `path` imports them on the workers, one
without it gets them by value. The tests run as __main__, whose functions always go by value."""

import os
import time


def append_and_sleep(directory, index, seconds):
    """Leaves a file for `index` in `directory`, then sleeps: which calls ran, and when."""
    with open(os.path.join(directory, str(index)), "w", encoding="utf-8"):
        pass
    time.sleep(seconds)
    return index
