"""Waiting for a condition instead of sleeping: until(cond) polls cond()
until it is true and returns its value, or fails the test with what it
waited for."""
import time

import pytest


def until(cond, timeout=10.0, what=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what or cond.__name__}", pytrace=False)
        time.sleep(interval)
