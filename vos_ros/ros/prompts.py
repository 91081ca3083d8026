"""Initial masks from the prompts rviz and rqt_image_view produce (no ROS here).

Method (documented in docs/ros.md): OpenCV GrabCut, i.e. colour Gaussian
mixture models for object and background refined with a graph cut, 5 rounds.
- box: GrabCut initialised with the rectangle (outside = background).
- polygon: inside the polygon = probably object, outside = background.
- point: a square of side ``point_box_fraction * min(H, W)`` around the click
  is the box, and a disk around the click is certainly object.
Only the connected component touching the prompt is kept. If GrabCut finds
nothing, the prompt's own region (box, polygon or disk) is the mask.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

GRABCUT_ROUNDS = 5


def _component_at(mask: np.ndarray, seed_region: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` that overlap ``seed_region``."""
    count, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(comp[seed_region & mask])
    keep = keep[keep > 0]
    return np.isin(comp, keep) if keep.size else np.zeros_like(mask)


def _grabcut(image_rgb: np.ndarray, init: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """GrabCut from an initial GC_* label map; ``fallback`` when the cut is empty."""
    if not np.any((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)):
        return fallback
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    gc = init.copy()
    try:
        cv2.grabCut(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, GRABCUT_ROUNDS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate models (e.g. a uniform image): keep the prompt region
        return fallback
    mask = _component_at((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), fallback)
    return mask if mask.any() else fallback


def _check_image(image_rgb: np.ndarray) -> tuple[int, int]:
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image_rgb.shape} {image_rgb.dtype}")
    return image_rgb.shape[:2]


def mask_from_box(image_rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(H, W) bool mask of the object in box (x1, y1, x2, y2) pixels, corners in any order."""
    h, w = _check_image(image_rgb)
    xa, xb = sorted((box[0], box[2]))
    ya, yb = sorted((box[1], box[3]))
    x1, y1 = int(np.clip(np.floor(xa), 0, w - 1)), int(np.clip(np.floor(ya), 0, h - 1))
    x2, y2 = int(np.clip(np.ceil(xb), x1 + 1, w)), int(np.clip(np.ceil(yb), y1 + 1, h))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise ValueError(f"box {box} is smaller than 2x2 pixels inside the {w}x{h} image")
    init = np.full((h, w), cv2.GC_BGD, np.uint8)
    init[y1:y2, x1:x2] = cv2.GC_PR_FGD
    return _grabcut(image_rgb, init, init == cv2.GC_PR_FGD)


def mask_from_polygon(image_rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Mask of the object outlined by a polygon of >= 3 (x, y) points; 2 points are a box."""
    h, w = _check_image(image_rgb)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 2:
        return mask_from_box(image_rgb, (*pts[0], *pts[1]))
    if len(pts) < 3:
        raise ValueError(f"a polygon needs at least 3 points (2 for a box), got {len(pts)}")
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [np.round(pts).astype(np.int32)], 1)
    if inside.sum() < 4:
        raise ValueError("the polygon covers fewer than 4 pixels of the image")
    init = np.where(inside > 0, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    return _grabcut(image_rgb, init, inside > 0)


def mask_from_point(image_rgb: np.ndarray, x: float, y: float, point_box_fraction: float = 0.3) -> np.ndarray:
    """Mask of the object under pixel (x, y)."""
    h, w = _check_image(image_rgb)
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"point ({x:.1f}, {y:.1f}) is outside the {w}x{h} image")
    half = max(4, int(point_box_fraction * min(h, w) / 2))
    cx, cy = int(x), int(y)
    init = np.full((h, w), cv2.GC_BGD, np.uint8)
    init[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = cv2.GC_PR_FGD
    disk = np.zeros((h, w), np.uint8)
    cv2.circle(disk, (cx, cy), max(2, half // 8), 1, -1)
    init[disk > 0] = cv2.GC_FGD
    return _grabcut(image_rgb, init, disk > 0)


class Clicks:
    """Pixel clicks to prompts: in `point` mode each click is a point prompt; in `box` mode two
    clicks are the opposite corners of a box prompt."""

    def __init__(self):
        self.corner: tuple[float, float] | None = None

    def click(self, x: float, y: float, mode: str) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
        """(mask from the frame's RGB image, description), or (None, what to do next)."""
        if mode == "point":
            self.corner = None
            return (lambda rgb: mask_from_point(rgb, x, y)), f"point ({x:.0f}, {y:.0f})"
        if self.corner is None:
            self.corner = (x, y)
            return None, f"box corner 1 at ({x:.0f}, {y:.0f}); click the opposite corner"
        (x0, y0), self.corner = self.corner, None
        return (lambda rgb: mask_from_box(rgb, (x0, y0, x, y))), f"box ({x0:.0f}, {y0:.0f})-({x:.0f}, {y:.0f})"
