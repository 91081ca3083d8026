"""DAVIS semi-supervised metrics: J (IoU), F (boundary F-measure), J&F.

Follows the davis2017-evaluation reference code: boundaries are 1-pixel maps
(`_seg2bmap`), matched within a disk of radius ceil(0.008 * image diagonal);
per object, frames except the first and last are averaged; J&F = (J + F) / 2
with J and F averaged over all objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BOUND_TH = 0.008


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def _seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map: pixels whose right, bottom or bottom-right neighbour differs (as the reference)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """x^2 + y^2 <= r^2, as skimage.morphology.disk used by the reference."""
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (xx**2 + yy**2 <= radius**2).astype(np.uint8)


def f_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    h, w = gt.shape
    radius = int(math.ceil(BOUND_TH * np.linalg.norm([h, w])))
    pb, gb = _seg2bmap(pred), _seg2bmap(gt)
    kernel = _disk(radius)
    gt_dil = cv2.dilate(gb.astype(np.uint8), kernel) > 0
    pred_dil = cv2.dilate(pb.astype(np.uint8), kernel) > 0
    n_pred, n_gt = pb.sum(), gb.sum()
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = (pb & gt_dil).sum() / n_pred
    recall = (gb & pred_dil).sum() / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


@dataclass
class SequenceScore:
    J: float
    F: float
    per_object: dict[int, tuple[float, float]]

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2


def evaluate_sequence(pred_labels: list[np.ndarray], gt_labels: list[np.ndarray]) -> SequenceScore:
    """Score a sequence's predicted label maps against ground truth (first and last frame excluded)."""
    if len(pred_labels) != len(gt_labels):
        raise ValueError(f"{len(pred_labels)} predicted frames for {len(gt_labels)} ground-truth frames")
    ids = sorted(int(i) for i in np.unique(gt_labels[0]) if i not in (0, 255))
    frames = range(1, len(gt_labels) - 1) if len(gt_labels) > 2 else range(len(gt_labels))
    per_object = {}
    for i in ids:
        js = [jaccard(pred_labels[t] == i, gt_labels[t] == i) for t in frames]
        fs = [f_measure(pred_labels[t] == i, gt_labels[t] == i) for t in frames]
        per_object[i] = (float(np.mean(js)), float(np.mean(fs)))
    j = float(np.mean([v[0] for v in per_object.values()]))
    f = float(np.mean([v[1] for v in per_object.values()]))
    return SequenceScore(j, f, per_object)


def overall(scores: dict[str, SequenceScore]) -> tuple[float, float, float]:
    """(J, F, J&F) averaged over all objects of all sequences (the DAVIS 2017 convention)."""
    objs = [v for s in scores.values() for v in s.per_object.values()]
    j = float(np.mean([o[0] for o in objs]))
    f = float(np.mean([o[1] for o in objs]))
    return j, f, (j + f) / 2
