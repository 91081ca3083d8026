"""Optical flow behind a small interface, and backward warping.

The paper's FlowNet2-S has no reachable weights; OpenCV DIS needs none. Flow is
*backward* (current frame -> previous frame): for each pixel of the current frame
it gives where that pixel came from, so warping a previous mask is a bilinear
lookup with no holes (forward splatting would leave them).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class FlowEstimator(Protocol):
    scale: float  # flow resolution / frame resolution

    def prepare(self, image_rgb: np.ndarray) -> np.ndarray:
        """Per-frame preprocessing (done once per frame, reused for the next pair)."""

    def backward(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """(h, w, 2) float32 displacement from each `cur` pixel to its source in `prev`."""


class DISFlow:
    """OpenCV Dense Inverse Search on grayscale frames scaled by `scale`."""

    def __init__(self, preset: str = "fast", scale: float = 0.5):
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown DIS preset '{preset}' (choose from {sorted(_DIS_PRESETS)})")
        self.preset, self.scale = preset, float(scale)
        self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])

    def prepare(self, image_rgb: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        if self.scale != 1.0:
            h, w = gray.shape
            gray = cv2.resize(gray, flow_shape(w, h, self.scale)[::-1], interpolation=cv2.INTER_AREA)
        return gray

    def backward(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        return self._dis.calc(cur, prev, None)


def flow_shape(width: int, height: int, scale: float) -> tuple[int, int]:
    """(h, w) of the flow field for a frame of the given size."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def build_flow(method: str, preset: str, scale: float) -> FlowEstimator:
    if method != "dis":
        raise ValueError(f"unknown flow method '{method}'")
    return DISFlow(preset, scale)


@lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def warp_backward(src: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `src` (previous frame's map) at x + flow: the map moved into the current frame."""
    grid_x, grid_y = _pixel_grid(*flow.shape[:2])
    return cv2.remap(
        src, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
