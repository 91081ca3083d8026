"""Training crops: frames scaled to a working resolution and cut to a fixed window around the
object (RGMP's and LIP's trainers)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..model.geometry import box_center, mask_box
from .examples import perturb_mask
from .pairs import Pair

VIDEO_HEIGHT = 480  # DAVIS 480p: the train frames' height; still images are scaled to it first


@dataclass
class Sample:
    """One clip at the working resolution: frames[0]'s mask guides frames[1], and so on."""

    ref_image: np.ndarray
    ref_mask: np.ndarray
    frames: list[np.ndarray]
    masks: list[np.ndarray]  # masks[0]: the first guidance; the others: targets
    sequence: int = -1  # the clip's sequence index (pairs: -1)


def scaled(image: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0)


def _window(rng: np.random.Generator, mask: np.ndarray, crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a crop window around the object (anywhere when there is none)."""
    height, width = mask.shape
    ch, cw = crop
    box = mask_box(mask)
    cx, cy = box_center(box) if box is not None else (rng.uniform(0, width), rng.uniform(0, height))
    cx += rng.uniform(-0.25, 0.25) * cw
    cy += rng.uniform(-0.25, 0.25) * ch
    return int(np.clip(cx - cw / 2, 0, max(width - cw, 0))), int(np.clip(cy - ch / 2, 0, max(height - ch, 0)))


def _cut(array: np.ndarray, corner: tuple[int, int], crop: tuple[int, int]) -> np.ndarray:
    """The window, padded (images: mirrored; masks: empty) where the frame is smaller."""
    (x0, y0), (ch, cw) = corner, crop
    window = array[y0:y0 + ch, x0:x0 + cw]
    pad_y, pad_x = ch - window.shape[0], cw - window.shape[1]
    if pad_y or pad_x:
        if window.dtype == bool:
            window = np.pad(window, ((0, pad_y), (0, pad_x)))
        else:
            window = cv2.copyMakeBorder(window, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT)
    return window


def make_sample(pairs_or_clip, rng: np.random.Generator, scale: float, crop: tuple[int, int]) -> Sample:
    """A pair (stage 1: its previous pose, perturbed, guides the current frame) or a clip, scaled
    and cut to the crop."""
    if isinstance(pairs_or_clip, Pair):
        p = pairs_or_clip
        frames, masks = [p.prev_image, p.image], [perturb_mask(rng, p.prev_mask), p.mask]
        ref_image, ref_mask, sequence = p.ref_image, p.ref_mask, -1
    else:
        frames, masks = list(pairs_or_clip.frames), list(pairs_or_clip.masks)
        ref_image, ref_mask, sequence = pairs_or_clip.ref_image, pairs_or_clip.ref_mask, pairs_or_clip.sequence
    frames, masks = zip(*(scaled(f, m, scale) for f, m in zip(frames, masks)))
    ref_image, ref_mask = scaled(ref_image, ref_mask, scale)
    corner = _window(rng, masks[0], crop)
    ref_corner = _window(rng, ref_mask, crop)
    return Sample(_cut(ref_image, ref_corner, crop), _cut(ref_mask, ref_corner, crop),
                  [_cut(f, corner, crop) for f in frames], [_cut(m, corner, crop) for m in masks], sequence)
