"""Where the DAVIS data lives: ../shared/data beside the repository; tests skip when it is absent."""

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
