"""The overlay image for rviz: the label map tinted (data/visualize.py, as the CLI's videos), each
target's box drawn and its id, status and score written."""

from __future__ import annotations

import cv2
import numpy as np

from vos_ros.data.visualize import id_colour, overlay as tint_labels
from vos_ros.inference.types import FrameResult


def overlay(image_rgb: np.ndarray, result: FrameResult, alpha: float = 0.5) -> np.ndarray:
    out = tint_labels(image_rgb, result.labels, alpha)
    for t in result.targets:
        if t.box is None:
            continue
        colour = id_colour(t.id)
        x1, y1, x2, y2 = (int(round(v)) for v in t.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, f"{t.id} {t.status.name.lower()} {t.score:.2f}", (x1, max(12, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out
