"""A prompt (box, clicks, polygon), the segmenter interface, and clicks from image viewers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class Prompt:
    """A box (x1, y1, x2, y2, corners in any order), positive / negative clicks (x, y) and a
    polygon of (x, y) vertices, in image pixels; a prompt gives a box, a polygon or at least one
    positive click (negatives only refine those)."""

    box: tuple[float, float, float, float] | None = None
    positives: tuple[Point, ...] = field(default_factory=tuple)
    negatives: tuple[Point, ...] = field(default_factory=tuple)
    polygon: tuple[Point, ...] = field(default_factory=tuple)

    def checked_box(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """The box as integer pixel bounds inside the image (None without a box)."""
        if self.box is None:
            return None
        xa, xb = sorted((self.box[0], self.box[2]))
        ya, yb = sorted((self.box[1], self.box[3]))
        x1, y1 = int(np.clip(np.floor(xa), 0, width - 1)), int(np.clip(np.floor(ya), 0, height - 1))
        x2, y2 = int(np.clip(np.ceil(xb), x1 + 1, width)), int(np.clip(np.ceil(yb), y1 + 1, height))
        if x2 - x1 < 2 or y2 - y1 < 2:
            raise ValueError(f"box {self.box} is smaller than 2x2 pixels inside the {width}x{height} image")
        return x1, y1, x2, y2

    def check(self, width: int, height: int) -> None:
        """ValueError naming what is wrong: no object given, a degenerate box or polygon, a click
        outside the image."""
        if self.box is None and not self.positives and not self.polygon:
            raise ValueError("a prompt needs a box, a polygon or at least one positive click")
        self.checked_box(width, height)
        for x, y in (*self.positives, *self.negatives):
            if not (0 <= x < width and 0 <= y < height):
                raise ValueError(f"point ({x:.1f}, {y:.1f}) is outside the {width}x{height} image")
        if self.polygon and len(self.polygon) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(self.polygon)}")


class Segmenter(Protocol):
    name: str

    def segment(self, image_rgb: np.ndarray, prompt: Prompt) -> np.ndarray:
        """(H, W) bool mask of the prompted object; ValueError for a prompt that names none."""


def check_image(image_rgb: np.ndarray) -> tuple[int, int]:
    """(height, width) of an (H, W, 3) uint8 image; ValueError otherwise."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image_rgb.shape} {image_rgb.dtype}")
    return image_rgb.shape[:2]


class Clicks:
    """Pixel clicks (rqt_image_view, rviz) to prompts: in `point` mode each click is a point
    prompt; in `box` mode two clicks are the opposite corners of a box prompt."""

    def __init__(self):
        self.corner: Point | None = None

    def click(self, x: float, y: float, mode: str) -> tuple[Prompt | None, str]:
        """(the prompt, its description), or (None, what to do next)."""
        if mode == "point":
            self.corner = None
            return Prompt(positives=((x, y),)), f"point ({x:.0f}, {y:.0f})"
        if self.corner is None:
            self.corner = (x, y)
            return None, f"box corner 1 at ({x:.0f}, {y:.0f}); click the opposite corner"
        (x0, y0), self.corner = self.corner, None
        return Prompt(box=(x0, y0, x, y)), f"box ({x0:.0f}, {y0:.0f})-({x:.0f}, {y:.0f})"
