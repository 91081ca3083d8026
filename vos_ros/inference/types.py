"""Result and error types of the streaming engine (the contract apps rely on)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class TargetStatus(enum.IntEnum):
    TRACKING = 0
    OCCLUDED = 1  # visible area fell well below its running reference area
    LOST = 2  # no confident mask; the target is searched for every frame
    REIDENTIFIED = 3  # first frame after a lost target was re-acquired by BR


class Stream(enum.IntEnum):
    BP = 0  # box propagation by optical flow
    BR = 1  # box re-identification by the conditional RPN


class EngineInputError(ValueError):
    """An image, mask or id given to the engine is invalid; the engine state is unchanged."""


@dataclass
class TargetResult:
    id: int
    mask: np.ndarray  # (H, W) bool, after the multi-object merge
    box: tuple[float, float, float, float] | None  # x1, y1, x2, y2 in pixels; None while lost
    score: float  # mean mask probability over the mask (0 while lost)
    status: TargetStatus
    stream: Stream  # the stream that produced this target's RoI
    dm_confidence: float  # the frame's decision-module confidence
    area: int = 0

    @property
    def centroid(self) -> tuple[float, float] | None:
        if self.area == 0:
            return None
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())


@dataclass
class FrameResult:
    targets: list[TargetResult]
    labels: np.ndarray  # (H, W) uint16 label map, 0 = background, pixel = target id
    dm_confidence: float  # NaN when no target is tracked (nothing to decide)
    stream: Stream  # stream chosen for the frame by the decision module
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
