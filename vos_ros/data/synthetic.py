"""A deterministic synthetic clip with ground truth: the embedded default input.

Textured sprites move over a panning textured background along smooth paths,
with rotation and scale change; one of them can vanish for a stretch of frames
and come back somewhere else (to exercise the lost / re-identified states).
Nothing here is stored on disk: a seed fully defines the clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class SyntheticClip:
    frames: list[np.ndarray]  # RGB uint8
    labels: list[np.ndarray]  # uint16 ids, 0 = background


def _smooth_texture(rng: np.random.Generator, h: int, w: int, cells: int, contrast: float) -> np.ndarray:
    coarse = rng.uniform(0, 255, (max(2, h // cells), max(2, w // cells), 3)).astype(np.float32)
    texture = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    texture += rng.normal(0, 12 * contrast, (h, w, 3)).astype(np.float32)
    return np.clip(texture, 0, 255)


def _sprite(rng: np.random.Generator, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """A random star-ish blob shape with a striped, coloured texture."""
    size = 2 * radius + 1
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = np.ones_like(angles)
    for harmonic in range(2, 5):
        r += rng.uniform(0, 0.18) * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
    r = radius * r / r.max()
    pts = np.stack([radius + r * np.cos(angles), radius + r * np.sin(angles)], axis=1).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts], 1)
    base = rng.uniform(40, 215, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    period = rng.uniform(6, 14)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(rng.uniform(0, np.pi)) + yy * np.sin(rng.uniform(0, np.pi))) / period * 2 * np.pi)
    second = rng.uniform(0, 255, 3)
    texture = base[None, None] * stripes[..., None] + second[None, None] * (1 - stripes[..., None]) * 0.6
    return np.clip(texture, 0, 255).astype(np.float32), mask


CROSS_SPEED = 0.03  # frame heights per frame for make_clip's crossing object


def make_clip(
    num_frames: int = 60,
    size: tuple[int, int] = (854, 480),
    num_objects: int = 2,
    seed: int = 0,
    hide: tuple[int, int] | None = None,
    cross_at: int | None = None,
    lookalike: bool = False,
) -> SyntheticClip:
    """`hide=(start, end)`: object 1 is absent in frames [start, end) and returns elsewhere.
    `cross_at=t`: object 1 stands still and object 2, twice its size, passes in front of it
    from left to right, centred on it at frame t. `lookalike`: an unlabelled distractor of
    object 1's shape, its texture's colours reversed, moves about the frame all along (behind
    the objects): what a re-identification must not take for object 1."""
    rng = np.random.default_rng(seed)
    width, height = size
    pan = 40
    background = _smooth_texture(rng, height + 2 * pan, width + 2 * pan, 24, 1.0)
    sprites = []
    for k in range(num_objects):
        radius = rng.uniform(0.09, 0.16)
        if cross_at is not None and k < 2:
            radius = (0.08, 0.16)[k]
        sprites.append(_sprite(rng, int(radius * min(width, height))))
    paths = []
    for _ in range(num_objects):
        paths.append({
            "c": rng.uniform([0.25 * width, 0.3 * height], [0.75 * width, 0.7 * height]),
            "amp": rng.uniform([0.1 * width, 0.08 * height], [0.22 * width, 0.18 * height]),
            "freq": rng.uniform(0.5, 1.2, 2) * 2 * np.pi / max(num_frames, 1),
            "phase": rng.uniform(0, 2 * np.pi, 2),
            "spin": rng.uniform(-1.5, 1.5),
        })
    distractor = None
    if lookalike:  # its own generator: the clip is otherwise the one the seed gives without it
        extra = np.random.default_rng([seed, 99])
        texture, mask = sprites[0]
        distractor = (texture[..., ::-1].copy(), mask, {
            "c": extra.uniform([0.25 * width, 0.3 * height], [0.75 * width, 0.7 * height]),
            "amp": extra.uniform([0.1 * width, 0.08 * height], [0.22 * width, 0.18 * height]),
            "freq": extra.uniform(0.5, 1.2, 2) * 2 * np.pi / max(num_frames, 1),
            "phase": extra.uniform(0, 2 * np.pi, 2), "spin": extra.uniform(-1.5, 1.5)})
    if cross_at is not None:
        for path in paths[:2]:  # both centred and still; object 2 then slides across (below)
            path.update(c=np.array([width / 2, height / 2]), amp=np.zeros(2), spin=0.0)
    frames, labels = [], []
    for t in range(num_frames):
        ox = int(round(pan + pan * np.sin(2 * np.pi * t / max(num_frames, 1))))  # camera pan, 0..2*pan
        canvas = background[pan:pan + height, ox:ox + width].copy()
        label = np.zeros((height, width), np.uint16)
        placed = [(k + 1, texture, mask, path) for k, ((texture, mask), path) in enumerate(zip(sprites, paths))]
        if distractor is not None:
            placed.insert(0, (0, *distractor))
        for object_id, texture, mask, path in placed:
            k = max(object_id - 1, 0)
            centre = path["c"] + path["amp"] * np.sin(path["freq"] * t + path["phase"])
            if cross_at is not None and object_id == 2:
                centre = centre + np.array([CROSS_SPEED * min(width, height) * (t - cross_at), 0.0])
            if hide is not None and object_id == 1:
                if hide[0] <= t < hide[1]:
                    continue
                if t >= hide[1]:  # comes back on the other side of the frame
                    centre = np.array([width, height]) - centre
            angle = path["spin"] * t
            zoom = 1.0 + 0.15 * np.sin(2 * np.pi * t / max(num_frames, 1) + k)
            r = mask.shape[0] // 2
            matrix = cv2.getRotationMatrix2D((r, r), angle, zoom)
            matrix[:, 2] += centre - r
            warped_mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
            warped_tex = cv2.warpAffine(texture, matrix, (width, height), flags=cv2.INTER_LINEAR)
            canvas[warped_mask] = warped_tex[warped_mask]
            if object_id:
                label[warped_mask] = object_id
        noise = rng.normal(0, 3, canvas.shape).astype(np.float32)
        frames.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
        labels.append(label)
    return SyntheticClip(frames, labels)


def demo_clip(num_frames: int = 60, num_objects: int = 2) -> SyntheticClip:
    """The embedded default input of `vos-ros demo` and the player: 854x480, object 1
    hidden for 15 frames from a third of the way in, returning elsewhere."""
    hide = (num_frames // 3, num_frames // 3 + 15)
    return make_clip(num_frames, (854, 480), num_objects=num_objects, seed=7, hide=hide)
