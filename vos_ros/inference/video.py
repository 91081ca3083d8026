"""Running a tracker over a finite video (used by the CLI, benchmarks and training checks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .engine import Tracker
from .types import FrameResult, Stream


@dataclass
class VideoRun:
    labels: list[np.ndarray]  # one uint16 label map per frame, frame 0 = the given mask
    seconds: float = 0.0  # wall time of the step() calls (frames 1..N-1)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    br_frames: int = 0

    @property
    def steps(self) -> int:
        return len(self.labels) - 1

    @property
    def fps(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")

    @property
    def br_share(self) -> float:
        return self.br_frames / self.steps if self.steps else 0.0


def segment_video(
    tracker: Tracker, frames: Iterable[np.ndarray], first_labels: np.ndarray,
    on_frame: Callable[[int, np.ndarray, FrameResult], None] | None = None,
) -> VideoRun:
    """Semi-supervised protocol: frame 0's mask is given, every later frame is predicted."""
    tracker.reset()
    run = VideoRun(labels=[])
    for index, frame in enumerate(frames):
        if index == 0:
            tracker.add_targets(frame, first_labels)
            run.labels.append(first_labels.astype(np.uint16))
            continue
        start = time.perf_counter()
        result = tracker.step(frame)
        run.seconds += time.perf_counter() - start
        for stage, seconds in result.timings.items():
            run.stage_seconds[stage] = run.stage_seconds.get(stage, 0.0) + seconds
        run.br_frames += result.stream == Stream.BR
        run.labels.append(result.labels)
        if on_frame is not None:
            on_frame(index, frame, result)
    return run


def segment_video_offline(tracker: Tracker, frames: Iterable[np.ndarray], first_labels: np.ndarray) -> VideoRun:
    """The whole clip at once, by a method with an offline mode (DyeNet's): frames may be
    looked at in any order and any number of times; frame 0's mask is given."""
    from .methods.dyenet import DyeNetMethod
    from .methods.dyenet_offline import segment_offline

    if not isinstance(tracker.method, DyeNetMethod):
        raise ValueError(f"the offline mode needs method dyenet, not {tracker.method.name}")
    frames = list(frames)
    start = time.perf_counter()
    labels = segment_offline(tracker.method, frames, first_labels)
    return VideoRun(labels=labels, seconds=time.perf_counter() - start)
