"""Box and RoI geometry shared by the networks, the engine and training.

Boxes are float (x1, y1, x2, y2) in continuous pixel coordinates: pixel (i, j)
covers [j, j+1) x [i, i+1), so a mask's tight box is (xmin, ymin, xmax+1, ymax+1).
RoIAlign is always used with aligned=True, which samples pixel p at coordinate
p + 0.5; `paste_roi` applies the exact inverse of that mapping.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[float, float, float, float]


def mask_box(mask: np.ndarray, threshold: float = 0.5, scale: float = 1.0) -> Box | None:
    """Tight box of `mask > threshold`, divided by `scale` (mask resolution / frame resolution)."""
    binary = mask > threshold
    rows = np.flatnonzero(binary.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(binary.any(axis=0))
    return (cols[0] / scale, rows[0] / scale, (cols[-1] + 1) / scale, (rows[-1] + 1) / scale)


def box_size(box: Box) -> tuple[float, float]:
    return box[2] - box[0], box[3] - box[1]


def box_center(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def enlarge_box(box: Box, margin: float) -> Box:
    """Grow a box about its centre: margin 0.2 makes it 20% wider and 20% taller."""
    w, h = box_size(box)
    dx, dy = w * margin / 2, h * margin / 2
    return (box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy)


def box_iou(a: Box | None, b: Box | None) -> float:
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def clip_box(box: Box, width: int, height: int, min_size: float = 2.0) -> Box:
    """Clip to the frame, keeping at least `min_size` pixels per side."""
    x1 = min(max(box[0], 0.0), width - min_size)
    y1 = min(max(box[1], 0.0), height - min_size)
    x2 = max(min(box[2], float(width)), x1 + min_size)
    y2 = max(min(box[3], float(height)), y1 + min_size)
    return (x1, y1, x2, y2)


class Region:
    """A square window of the frame that is resized to `size` x `size` for the backbone.

    Maps frame coordinates to the window's input coordinates: u = (x - x0) * k.
    The window may extend past the frame; the outside is filled with the frame's
    mean colour (the backbone's normalisation then sees ~zero input there).
    """

    def __init__(self, x0: float, y0: float, side: float, size: int):
        self.x0, self.y0, self.side, self.size = float(x0), float(y0), float(side), int(size)
        self.k = size / side

    @classmethod
    def full_frame(cls, width: int, height: int) -> "Region":
        """Identity mapping; `size` is unused for the full frame."""
        region = cls(0.0, 0.0, 1.0, 1)
        region.k = 1.0
        return region

    @classmethod
    def around(cls, box: Box, scale: float, min_side: float, max_side: float, size: int) -> "Region":
        cx, cy = box_center(box)
        w, h = box_size(box)
        side = float(np.clip(max(w, h) * scale, min_side, max_side))
        return cls(cx - side / 2, cy - side / 2, side, size)

    def to_input(self, box: Box) -> Box:
        k = self.k
        return ((box[0] - self.x0) * k, (box[1] - self.y0) * k, (box[2] - self.x0) * k, (box[3] - self.y0) * k)

    def to_frame(self, box: Box) -> Box:
        k = self.k
        return (box[0] / k + self.x0, box[1] / k + self.y0, box[2] / k + self.x0, box[3] / k + self.y0)

    def crop(self, image: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """The window of `image` resized to size x size (one warpAffine)."""
        k = self.k
        matrix = np.array([[k, 0.0, -self.x0 * k], [0.0, k, -self.y0 * k]], dtype=np.float64)
        return cv2.warpAffine(
            image, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in fill),
        )


def crop_roi(image: np.ndarray, box: Box, size: int, scale: float = 1.0) -> np.ndarray:
    """size x size bilinear samples of `image` (at `scale` x frame resolution) over frame box `box`.

    The same sampling as RoIAlign(aligned=True) with one sample per bin, so it is
    exactly what `paste_roi` inverts.
    """
    x1, y1, x2, y2 = (v * scale for v in box)
    ax, ay = (x2 - x1) / size, (y2 - y1) / size
    # output cell u centre (u + 0.5) maps to image coordinate x1 + (u + 0.5) * ax, i.e. index - 0.5
    matrix = np.array([[ax, 0.0, x1 + 0.5 * ax - 0.5], [0.0, ay, y1 + 0.5 * ay - 0.5]], dtype=np.float64)
    return cv2.warpAffine(
        image.astype(np.float32, copy=False), matrix, (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )


def box_prior(size: int, margin: float) -> np.ndarray:
    """size x size prior that is 1 on the box inside a RoI enlarged by `margin` (see `enlarge_box`).

    Used where no warped previous mask exists (a re-acquired target): the MRN is
    told only where the object is, not its shape.
    """
    prior = np.zeros((size, size), np.float32)
    inner = 1.0 / (1.0 + margin)
    lo, hi = int(round(size * (1 - inner) / 2)), int(round(size * (1 + inner) / 2))
    prior[lo:hi, lo:hi] = 1.0
    return prior


def paste_roi(prob: np.ndarray, box: Box, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Paste an M x M RoI map back into a frame of size (height, width).

    Returns the pasted values on the clipped integer window covering `box` and
    that window's (x, y) offset, so callers never allocate a full frame per object.
    Inverse of RoIAlign(aligned=True): frame pixel p (centre p+0.5) reads RoI
    coordinate u = (p + 0.5 - x1) * M / w - 0.5.
    """
    m_h, m_w = prob.shape
    x0 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y0 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x1 = int(np.clip(np.ceil(box[2]), x0 + 1, width))
    y1 = int(np.clip(np.ceil(box[3]), y0 + 1, height))
    ax = m_w / max(box[2] - box[0], 1e-6)
    ay = m_h / max(box[3] - box[1], 1e-6)
    matrix = np.array(
        [[ax, 0.0, (x0 + 0.5 - box[0]) * ax - 0.5], [0.0, ay, (y0 + 0.5 - box[1]) * ay - 0.5]], dtype=np.float64
    )
    window = cv2.warpAffine(
        prob.astype(np.float32), matrix, (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )
    return window, (x0, y0)
