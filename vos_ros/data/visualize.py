"""Overlay of label maps on images (CLI videos, the ROS overlay topic)."""

from __future__ import annotations

import cv2
import numpy as np

from .davis import palette

_COLOURS = np.array(palette(), np.uint8).reshape(256, 3)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB image with each id's pixels tinted by its palette colour and outlined."""
    ids = (labels % 255 + (labels > 0)).astype(np.uint8) if labels.max(initial=0) > 255 else labels.astype(np.uint8)
    tint = _COLOURS[ids]
    out = image.copy()
    fg = labels > 0
    out[fg] = (image[fg] * (1 - alpha) + tint[fg] * alpha).astype(np.uint8)
    edges = cv2.morphologyEx(ids, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges & fg] = tint[edges & fg]
    return out
