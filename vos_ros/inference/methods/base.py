"""The method seam: what a per-frame segmenter gives the engine.

The engine (inference/engine.py) owns target ids, input checks, the status policy
(inference/targets.py), outputs and adaptation scheduling; a method owns its networks
(behind a deployment backend) and its per-target state (`Target.state`). Per frame the
engine calls `prepare` on the image, `segment` with the targets, merges and decides
statuses, then `commit` with the targets found.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ...backends import Backend
from ...config import EngineConfig
from ..adaptation import AdaptationRunner
from ..targets import FrameSegmentation, Segment, Target


class Method(ABC):
    name: ClassVar[str]
    config: EngineConfig
    backend: Backend
    adaptation: AdaptationRunner | None = None  # first-frame adaptation, when the method has one

    @classmethod
    @abstractmethod
    def from_config(cls, config: EngineConfig, weights: str | None, device: str, untrained: bool, backend: str,
                    precision: str | None, cache_dir: str | None) -> "Method":
        """Networks built, weights loaded (the config's shipped file unless `weights`), behind `backend`."""

    @property
    def mask_threshold(self) -> float:
        """Where its probabilities become a target's mask (DTN's MRN threshold unless the method has its own)."""
        return self.config.mrn.mask_threshold

    @abstractmethod
    def mask_shape(self, width: int, height: int) -> tuple[int, int]:
        """(h, w) of `Target.prev_mask` for frames of this size."""

    @abstractmethod
    def prepare(self, image: np.ndarray) -> Any:
        """Per-frame data that the next step needs of this frame (DTN: the flow's grey image)."""

    @abstractmethod
    def start(self, image: np.ndarray, targets: list[Target], masks: list[np.ndarray]) -> None:
        """Fill each new target's `state` from its first-frame mask (bool, frame size)."""

    @abstractmethod
    def segment(self, targets: list[Target], image: np.ndarray, previous: Any, current: Any) -> FrameSegmentation:
        """Each target's probability window in `image`; `previous`/`current`: `prepare` of the last
        frame and of this one."""

    def reset(self) -> None:
        """Forget every target's state (the engine's `reset`)."""

    def remove(self, ids: list[int]) -> None:
        """Forget these targets (the engine's `remove_targets`); their `state` goes with them."""

    @abstractmethod
    def commit(self, frame: FrameSegmentation, found: list[Segment]) -> None:
        """Refresh the method state of the targets found, after their status and mask were set."""
