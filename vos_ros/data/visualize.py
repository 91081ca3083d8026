"""Overlay of label maps on images (CLI videos, the ROS overlay topic)."""

from __future__ import annotations

import cv2
import numpy as np

from .davis import palette

_COLOURS = np.array(palette(), np.uint8).reshape(256, 3)


def _palette_index(labels: np.ndarray) -> np.ndarray:
    """Ids above 255 cycle through the palette's colours 1..255."""
    return (labels % 255 + (labels > 0)).astype(np.uint8) if labels.max(initial=0) > 255 else labels.astype(np.uint8)


def id_colour(target_id: int) -> tuple[int, int, int]:
    """The RGB colour that `overlay` tints id `target_id` with."""
    return tuple(int(c) for c in _COLOURS[_palette_index(np.array([target_id]))[0]])


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB image with each id's pixels tinted by its palette colour and outlined."""
    ids = _palette_index(labels)
    tint = _COLOURS[ids]
    out = image.copy()
    fg = labels > 0
    out[fg] = (image[fg] * (1 - alpha) + tint[fg] * alpha).astype(np.uint8)
    edges = cv2.morphologyEx(ids, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges & fg] = tint[edges & fg]
    return out
