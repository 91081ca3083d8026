"""Prompt masks by OpenCV GrabCut: colour Gaussian mixture models for object and background
refined with a graph cut, 5 rounds. Nothing learnt.

- box: GrabCut initialised with the rectangle (outside = background).
- polygon: inside the polygon = probably object, outside = background.
- clicks: without a box, a square of side ``point_box_fraction * min(H, W)`` around the first
  positive click is the box; a disk around each positive click is certainly object, around
  each negative click certainly background.
Only the connected components touching the prompt are kept. If GrabCut finds nothing, the
prompt's own region (box, polygon or disks) is the mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from .prompt import Prompt, check_image

GRABCUT_ROUNDS = 5


def component_at(mask: np.ndarray, seed_region: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` that overlap ``seed_region``."""
    count, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(comp[seed_region & mask])
    keep = keep[keep > 0]
    return np.isin(comp, keep) if keep.size else np.zeros_like(mask)


def grabcut_mask(image_rgb: np.ndarray, init: np.ndarray, fallback: np.ndarray) -> np.ndarray:
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
    mask = component_at((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), fallback)
    return mask if mask.any() else fallback


def refine_probability(image_rgb: np.ndarray, probability: np.ndarray, region: tuple[int, int, int, int],
                       fallback: np.ndarray, sure_object: float, sure_background: float) -> np.ndarray:
    """GrabCut seeded by an object probability map: inside `region` (x1, y1, x2, y2) object
    where it exceeds `sure_object`, background below `sure_background`, probably one or the
    other around 0.5 between; background outside `region`."""
    x1, y1, x2, y2 = region
    init = np.full(probability.shape, cv2.GC_BGD, np.uint8)
    window = probability[y1:y2, x1:x2]
    seeded = np.where(window > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    seeded[window > sure_object] = cv2.GC_FGD
    seeded[window < sure_background] = cv2.GC_BGD
    init[y1:y2, x1:x2] = seeded
    return grabcut_mask(image_rgb, init, fallback)


def _disks(shape: tuple[int, int], points, radius: int) -> np.ndarray:
    disk = np.zeros(shape, np.uint8)
    for x, y in points:
        cv2.circle(disk, (int(x), int(y)), radius, 1, -1)
    return disk > 0


class GrabCutSegmenter:
    name = "grabcut"

    def __init__(self, point_box_fraction: float = 0.3):
        self.point_box_fraction = point_box_fraction

    def segment(self, image_rgb: np.ndarray, prompt: Prompt) -> np.ndarray:
        h, w = check_image(image_rgb)
        prompt.check(w, h)
        init = np.full((h, w), cv2.GC_BGD, np.uint8)
        box = prompt.checked_box(w, h)
        half = max(4, int(self.point_box_fraction * min(h, w) / 2))
        if prompt.polygon:
            inside = np.zeros((h, w), np.uint8)
            cv2.fillPoly(inside, [np.round(np.asarray(prompt.polygon)).astype(np.int32)], 1)
            if inside.sum() < 4:
                raise ValueError("the polygon covers fewer than 4 pixels of the image")
            init[inside > 0] = cv2.GC_PR_FGD
            seed = inside > 0
        elif box is not None:
            x1, y1, x2, y2 = box
            init[y1:y2, x1:x2] = cv2.GC_PR_FGD
            seed = init == cv2.GC_PR_FGD
        else:
            cx, cy = (int(v) for v in prompt.positives[0])
            init[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = cv2.GC_PR_FGD
            seed = None
        radius = max(2, half // 8)
        positive = _disks((h, w), prompt.positives, radius)
        init[positive] = cv2.GC_FGD
        init[_disks((h, w), prompt.negatives, radius)] = cv2.GC_BGD
        return grabcut_mask(image_rgb, init, positive if seed is None else seed)
