"""Shared fixtures. Tests needing the DAVIS data read ../shared/data and skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def data_dir(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"DAVIS data not found at {path} (expected ../shared/data beside the repository)")
    return path


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
