"""Shared fixtures of the engine tests (DAVIS paths: shared_data.py)."""

from __future__ import annotations

import pytest

@pytest.fixture(scope="session")
def cpu_tracker_factory():
    """Trackers with the shipped cpu weights (the networks load once per session)."""
    from vos_ros.inference import Tracker

    cache = {}

    def make(**overrides):
        from vos_ros.config import load_config

        config = load_config("cpu", overrides)
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            cache[key] = Tracker.from_config(config)
        tracker = cache[key]
        tracker.reset()
        return tracker

    return make
