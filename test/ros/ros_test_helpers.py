"""Helpers shared by the ROS tests."""

import time


def spin_until(executor, condition, timeout: float = 10.0) -> bool:
    """Spin until ``condition()`` holds or the deadline passes; returns the condition."""
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    return bool(condition())
