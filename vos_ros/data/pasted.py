"""A many-object clip from real video: objects cut from DAVIS sequences pasted over another.

What the bench times trackers on with several objects and a real share of frames through
re-identification (the synthetic sprites' clips send every frame through BR). The
background is a real sequence, played forth and back to the clip's length (its camera
motion and its own, unlabelled object stay); each pasted object is the annotated object of
frame 0 of another sequence, scaled to 12-25% of the frame height, drifting with a slow
wobble and bouncing off the borders. Later objects are painted over earlier ones, so they
occlude each other. A seed fully defines the clip.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import davis
from .demo_scene import paste_cutout
from .synthetic import SyntheticClip


def cutout(root: Path, sequence: str, height: int, frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The annotated object of `sequence`'s `frame`, cropped to its box and scaled to `height`:
    its texture and its coverage (0..1)."""
    image = davis.read_frame(davis.frame_paths(root, sequence)[frame])
    mask = davis.read_labels(davis.annotation_path(root, sequence, frame)) > 0
    ys, xs = np.nonzero(mask)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    scale = height / (ys.max() + 1 - ys.min())
    size = (max(1, round((xs.max() + 1 - xs.min()) * scale)), height)
    texture = cv2.resize(image[crop].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    coverage = cv2.resize(mask[crop].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return texture, coverage


def pasted_clip(root: str | Path, num_objects: int = 7, num_frames: int = 100, seed: int = 0) -> SyntheticClip:
    """`num_objects` objects of `root`'s sequences over another of its sequences, at that sequence's size."""
    root = Path(root)
    sequences = davis.list_sequences(root)
    if len(sequences) < num_objects + 1:
        raise ValueError(f"{root} has {len(sequences)} sequences; a {num_objects}-object clip needs "
                         f"{num_objects + 1}")
    rng = np.random.default_rng(seed)
    chosen = [sequences[i] for i in rng.permutation(len(sequences))[:num_objects + 1]]
    paths = davis.frame_paths(root, chosen[0])
    order = list(range(len(paths))) + list(range(len(paths) - 2, 0, -1))  # forth and back
    background = [davis.read_frame(paths[order[i % len(order)]]) for i in range(num_frames)]
    height, width = background[0].shape[:2]
    cutouts = [cutout(root, s, round(rng.uniform(0.12, 0.25) * height)) for s in chosen[1:]]
    start = rng.uniform([0.1 * width, 0.15 * height], [0.9 * width, 0.85 * height], (num_objects, 2))
    velocity = rng.uniform(-0.006, 0.006, (num_objects, 2)) * width
    wobble = rng.uniform(0, 2 * np.pi, (num_objects, 2))
    frames, labels = [], []
    for t in range(num_frames):
        canvas = background[t].astype(np.float32)
        label = np.zeros((height, width), np.uint16)
        for k, (texture, coverage) in enumerate(cutouts):
            centre = start[k] + velocity[k] * t + 0.02 * width * np.sin(0.15 * t + wobble[k])
            centre = np.mod(centre, 2 * np.array([width, height]))  # bounce off the borders
            centre = np.where(centre > [width, height], 2 * np.array([width, height]) - centre, centre)
            paste_cutout(canvas, label, texture, coverage, (float(centre[0]), float(centre[1])),
                         10.0 * np.sin(0.05 * t + wobble[k, 0]), k + 1)
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
        labels.append(label)
    return SyntheticClip(frames, labels)
