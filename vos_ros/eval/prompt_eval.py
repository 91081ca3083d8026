"""Prompt segmentation measured on DAVIS: every `every`-th frame of each sequence, the prompt
derived from the ground truth (a box: the tight box of each object; a click: the object pixel
farthest from its boundary), the mask IoU per sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..data import davis
from ..model.geometry import mask_box
from ..prompts import Prompt, Segmenter
from .metrics import jaccard

PROMPT_KINDS = ("box", "click")


def boundary_distance(mask: np.ndarray) -> np.ndarray:
    """Each object pixel's distance to the nearest background pixel (the image border counts as background)."""
    return cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]


def prompt_for(mask: np.ndarray, kind: str) -> Prompt:
    if kind == "box":
        return Prompt(box=mask_box(mask))
    if kind == "click":
        distance = boundary_distance(mask)
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        return Prompt(positives=((x + 0.5, y + 0.5),))
    raise ValueError(f"unknown prompt kind '{kind}': use one of {', '.join(PROMPT_KINDS)}")


def prompted_objects(root: str | Path, sequence: str, every: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, object mask) for each object of every `every`-th annotated frame."""
    frames = davis.frame_paths(root, sequence)
    ground_truth = davis.read_ground_truth(root, sequence)
    if ground_truth is None:
        raise FileNotFoundError(f"no annotations for {sequence} under {root}")
    for index in range(0, len(ground_truth), every):
        labels = ground_truth[index]
        ids = [i for i in np.unique(labels) if i != 0]
        if ids:
            image = davis.read_frame(frames[index])
            for i in ids:
                yield image, labels == i


def _segment_or_empty(segmenter: Segmenter, image: np.ndarray, prompt: Prompt) -> np.ndarray:
    try:
        return segmenter.segment(image, prompt)
    except ValueError:  # the segmenter found nothing: scored as an empty mask
        return np.zeros(image.shape[:2], bool)


def sequence_iou(segmenter: Segmenter, root: str | Path, sequence: str, kind: str, every: int = 10) -> float:
    scores = [jaccard(_segment_or_empty(segmenter, image, prompt_for(mask, kind)), mask)
              for image, mask in prompted_objects(root, sequence, every)]
    return float(np.mean(scores)) if scores else float("nan")


def prompt_eval(segmenter: Segmenter, root: str | Path, kind: str, sequences: list[str] | None = None,
                every: int = 10, report: Callable[[str, float], None] | None = None) -> dict[str, float]:
    """Mean IoU per sequence (all of `root`'s sequences unless given)."""
    scores = {}
    for sequence in sequences or davis.list_sequences(root):
        scores[sequence] = sequence_iou(segmenter, root, sequence, kind, every)
        if report:
            report(sequence, scores[sequence])
    return scores
