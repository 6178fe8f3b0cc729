"""Functions for the Python runtime's tests, in a module of their own: the tests run as __main__,
and these must be reachable by reference (with this directory in an executor's path) or travel by
value (without it)."""

import os

INIT_COUNTS = {}


def count_init(key):
    """An initializer that counts its runs in this module (in the process that runs it)."""
    INIT_COUNTS[key] = INIT_COUNTS.get(key, 0) + 1


def init_count(key):
    return INIT_COUNTS.get(key, 0)


class InitFailed(Exception):
    pass


def raise_init(*args):
    raise InitFailed("init failed", *args)


def remember(key, value):
    """Keeps `value` in this module between tasks; returns what was there before."""
    previous = INIT_COUNTS.get(("remembered", key))
    INIT_COUNTS[("remembered", key)] = value
    return previous


def pid():
    return os.getpid()
