"""Frame pairs and clips for training and first-frame adaptation: where the images come from.

- Stage 1 (`SyntheticPairs`, RGMP §3.2 / DTN §3.4 pre-training on instance
  masks): an object cut from a training frame or a still image is pasted onto
  another training frame's background with three random affine poses
  (reference, previous, current), colour change in the current frame, an
  occluder crossing it, and sometimes moved out of the frame (absent: every
  anchor is negative, the mask target is empty).
- Stage 2 (`VideoPairs`): consecutive or skipped (fast motion) frames of the
  DAVIS train split; the reference is any frame of the same sequence (at run
  time it is the first frame, 1 to a few hundred frames away).
- Clips (`VideoPairs.sample_clip`) for recurrent training: a few frames with a
  fixed gap, where the previous mask of every pair after the first is the
  model's own prediction (training/trainer.py recurrent_losses), not a perturbed
  ground truth; optionally with an alike instance moving with the target
  (`add_alike_instance`).
- First-frame adaptation (`FirstFramePairs`): pairs dreamt from the one annotated
  frame of the video being tracked (inference/adaptation.py).

data/examples.py turns any of these pairs into the networks' inputs and labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..model.geometry import Box, box_center, box_size, mask_box
from . import davis
from .stills import StillImages

@dataclass
class Pair:
    prev_image: np.ndarray
    prev_mask: np.ndarray  # bool
    image: np.ndarray
    mask: np.ndarray  # bool, may be empty (object absent)
    ref_image: np.ndarray  # the object seen elsewhere in the video (the first frame's role)
    ref_mask: np.ndarray  # bool


def _affine(rng: np.random.Generator, cx: float, cy: float, width: int, height: int, strength: float) -> np.ndarray:
    angle = rng.uniform(-25, 25) * strength
    zoom = float(np.exp(rng.uniform(-0.35, 0.35) * strength))
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
    matrix[:, 2] += rng.uniform(-0.25, 0.25, 2) * np.array([width, height]) * strength
    return matrix


def colour_jitter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    gain = rng.uniform(0.75, 1.25, 3)
    bias = rng.uniform(-20, 20, 3)
    return np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def _then(matrix: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """The 2x3 affine that applies `matrix`, then `motion`."""
    return (np.vstack([motion, [0, 0, 1]]) @ np.vstack([matrix, [0, 0, 1]]))[:2]


def _placed(source_box: Box, centre: tuple[float, float], scale: float, offset: np.ndarray) -> np.ndarray:
    """The 2x3 affine that scales an object about its box centre and moves that centre to
    `centre` + `offset`: where an occluder or an alike instance is pasted."""
    scx, scy = box_center(source_box)
    matrix = cv2.getRotationMatrix2D((scx, scy), 0, scale)
    matrix[:, 2] += np.array([centre[0] - scx, centre[1] - scy]) + offset
    return matrix


def _feathered_paste(background: np.ndarray, obj: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`obj` over `background` inside `mask`, with feathered edges: a hard paste leaves a seam the
    networks learn to find (a cue real video does not have)."""
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (7, 7), 0)[..., None]
    return (background * (1 - alpha) + obj * alpha).astype(np.uint8)


@dataclass
class Clip:
    frames: list[np.ndarray]
    masks: list[np.ndarray]  # bool
    ref_image: np.ndarray
    ref_mask: np.ndarray
    sequence: int = -1  # its sequence's index in the source (an object's identity: LIP's id classes)


class VideoPairs:
    """Frame pairs from DAVIS-layout training sequences (never a dev split)."""

    def __init__(self, root: str | Path, max_gap: int = 3, exclude: tuple[str, ...] = ()):
        self.root = Path(root)
        self.sequences = []
        for seq in davis.list_sequences(self.root):
            if seq in exclude:
                continue
            paths = davis.frame_paths(self.root, seq)
            gt = [davis.annotation_path(self.root, seq, i) for i in range(len(paths))]
            if all(p.exists() for p in gt):
                self.sequences.append((paths, gt))
        if not self.sequences:
            raise FileNotFoundError(f"no fully annotated sequences under {root}")
        self.max_gap = max_gap
        self._cache: dict[Path, np.ndarray] = {}

    def _read(self, path: Path, mask: bool) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = davis.read_labels(path) > 0 if mask else davis.read_frame(path)
        return self._cache[path]

    def random_frame(self, rng: np.random.Generator, sequence: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """A frame, its mask and its sequence's index (`sequence`: from that one)."""
        if sequence is None:
            sequence = int(rng.integers(len(self.sequences)))
        paths, _ = self.sequences[sequence]
        return *self._frame(sequence, int(rng.integers(len(paths)))), sequence

    def _frames(self, rng: np.random.Generator, length: int) -> tuple[int, list[int], int]:
        """A sequence's index, `length` frame indices `gap` apart (skipped frames: fast motion),
        forwards or backwards, and the index of a reference frame."""
        sequence = int(rng.integers(len(self.sequences)))
        paths, _ = self.sequences[sequence]
        gap = int(rng.integers(1, self.max_gap + 1))
        first = int(rng.integers(0, len(paths) - gap * (length - 1)))
        indices = [first + gap * k for k in range(length)]
        if rng.random() < 0.5:  # play backwards too: twice the motions
            indices.reverse()
        return sequence, indices, int(rng.integers(len(paths)))

    def _frame(self, sequence: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        paths, gt = self.sequences[sequence]
        return self._read(paths[index], False), self._read(gt[index], True)

    def sample(self, rng: np.random.Generator) -> Pair:
        sequence, (a, b), r = self._frames(rng, 2)
        return Pair(*self._frame(sequence, a), *self._frame(sequence, b), *self._frame(sequence, r))

    def sample_clip(self, rng: np.random.Generator, length: int, alike: float = 0.0) -> Clip:
        """`length` frames as `sample` picks two, mirrored half the time (the same for every
        frame: six sequences move mostly one way). `alike`: the share of clips through which
        an alike instance moves with the target (`add_alike_instance`)."""
        sequence, indices, r = self._frames(rng, length)
        flip = (lambda a: np.ascontiguousarray(a[:, ::-1])) if rng.random() < 0.5 else (lambda a: a)
        frames, masks = zip(*(self._frame(sequence, i) for i in indices))
        clip = Clip([flip(f) for f in frames], [flip(m) for m in masks], *(flip(a) for a in self._frame(sequence, r)),
                    sequence=sequence)
        # No draw when off: runs without alike clips reproduce those made before the option.
        if alike > 0 and rng.random() < alike:
            image, mask, _ = self.random_frame(rng, sequence)
            add_alike_instance(rng, clip, flip(image), flip(mask))
        return clip


def add_alike_instance(rng: np.random.Generator, clip: Clip, image: np.ndarray, mask: np.ndarray) -> None:
    """Paste the object of (`image`, `mask`), another frame of the clip's own video, into every
    frame of `clip`: scaled 0.7-1.3x, it keeps pace with the target at an offset (up to 1x the
    target's box size) that drifts across the clip, so it passes beside the target or over
    it, in front (the target loses those pixels) or behind. Unlike a synthetic pair's
    occluder it is there in the previous frames too, as the other dog in dogs-jump is: over
    the clip's steps the model's own prior must keep to the target and not spread onto it."""
    source_box, first_box = mask_box(mask), mask_box(clip.masks[0])
    if source_box is None or first_box is None:
        return
    scale = rng.uniform(0.7, 1.3)
    size = np.array(box_size(first_box))
    start, end = rng.uniform(-1, 1, 2) * size, rng.uniform(-1, 1, 2) * size
    in_front = rng.random() < 0.5
    height, width = mask.shape
    for k, target in enumerate(clip.masks):
        t = k / max(len(clip.masks) - 1, 1)
        matrix = _placed(source_box, box_center(mask_box(target) or first_box), scale, (1 - t) * start + t * end)
        pasted = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
        if not in_front:
            pasted &= ~target
        clip.frames[k] = _feathered_paste(clip.frames[k], cv2.warpAffine(image, matrix, (width, height)), pasted)
        if in_front:
            clip.masks[k] = target & ~pasted


def transformed_pair(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> Pair:
    """RGMP's first stage-1 strategy: one image and its mask under three random transforms
    (rotation, scale, shift; colour change in the current one), object and background moving
    together: the previous, current and reference frames. A pose that loses the object falls
    back to the image as it is."""
    height, width = mask.shape
    cx, cy = box_center(mask_box(mask))
    previous = _affine(rng, cx, cy, width, height, 0.5)
    poses = (previous, _then(previous, _affine(rng, width / 2, height / 2, width, height, 0.2)),
             _affine(rng, cx, cy, width, height, 0.5))
    views = []
    for k, matrix in enumerate(poses):
        m = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
        view = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT) if m.any() else image
        views += [colour_jitter(rng, view) if k == 1 else view, m if m.any() else mask]
    return Pair(*views)


def transformed_clip(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, length: int) -> Clip:
    """A still image as video: object and background moving together along a path of affine
    poses (interpolated between two of `transformed_pair`'s), one colour change for the
    clip. Poses that lose the object keep an empty mask (it left the view)."""
    height, width = mask.shape
    cx, cy = box_center(mask_box(mask))
    start, end = _affine(rng, cx, cy, width, height, 0.5), _affine(rng, cx, cy, width, height, 0.5)
    image = colour_jitter(rng, image)
    frames, masks = [], []
    for k in range(length):
        t = k / max(length - 1, 1)
        matrix = (1 - t) * start + t * end
        frames.append(cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT))
        masks.append(cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0)
    return Clip(frames, masks, image, mask)


class SyntheticPairs:
    """Cut-and-paste pairs built from static frames of the training videos, and of still images.

    `alike_occluders`: the share of occluders that are the same object, cut from another
    frame of its video (or another instance of its still image: Penn-Fudan's people): an
    alike instance (two dogs) that the appearance cannot tell apart, only the previous mask
    (the MRN's prior) can. `stills`, `still_share`: that share of the objects (and their
    occluders) come from still images (RGMP's and DTN's stage 1 on salient-object and
    instance masks), pasted on a training video's frame as every object is.
    """

    def __init__(self, source: VideoPairs, alike_occluders: float = 0.0, stills: StillImages | None = None,
                 still_share: float = 0.0):
        self.source, self.alike_occluders = source, alike_occluders
        self.stills, self.still_share = stills, still_share if stills is not None else 0.0

    def sample(self, rng: np.random.Generator) -> Pair:
        # No draw when off: runs without stills reproduce those made before the option.
        # Both draw (image, mask, index), the index naming where an alike instance comes from.
        still = self.still_share > 0 and rng.random() < self.still_share
        draw = self.stills.random_object if still else self.source.random_frame
        image, mask, sequence = draw(rng)
        background, _, _ = self.source.random_frame(rng)
        height, width = background.shape[:2]
        image = cv2.resize(image, (width, height))
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        box = mask_box(mask)
        if box is None:
            return self.source.sample(rng)
        cx, cy = box_center(box)
        first = _affine(rng, cx, cy, width, height, 0.6)

        def moved(matrix: np.ndarray, strength: float) -> np.ndarray:
            return _then(matrix, _affine(rng, width / 2, height / 2, width, height, strength))

        second = moved(first, 0.25)
        if rng.random() < 0.15:  # leaves the frame
            second[:, 2] += np.array([width, 0]) * rng.choice([-1, 1]) * 1.2
        reference = moved(first, 0.4)
        cam = _affine(rng, width / 2, height / 2, width, height, 0.08)
        frames, masks = [], []
        for k, matrix in enumerate((first, second, reference)):
            bg = cv2.warpAffine(background, cam, (width, height), borderMode=cv2.BORDER_REFLECT) if k == 1 else background
            obj = cv2.warpAffine(image, matrix, (width, height))
            m = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
            if k == 1:
                obj = colour_jitter(rng, obj)
            frames.append(_feathered_paste(bg, obj, m))
            masks.append(m)
        if rng.random() < 0.4:  # an occluder crosses in front in the current frame
            # No draw when off: runs without alike occluders reproduce those made before the option.
            alike = self.alike_occluders > 0 and rng.random() < self.alike_occluders
            occ_img, occ_mask, _ = draw(rng, sequence if alike else None)
            occ_img = cv2.resize(occ_img, (width, height))
            occ_mask = cv2.resize(occ_mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
            obox = mask_box(occ_mask)
            if obox is not None:
                scale = rng.uniform(0.7, 1.3) if alike else rng.uniform(0.4, 0.8)
                target_box = mask_box(masks[1]) or box
                # An alike instance also passes beside the target, not only over it.
                offset = rng.uniform(-1, 1, 2) * np.array(box_size(target_box)) * (1 if alike else 0.5)
                m2 = _placed(obox, box_center(target_box), scale, offset)
                occ = cv2.warpAffine(occ_img, m2, (width, height))
                om = cv2.warpAffine(occ_mask, m2, (width, height), flags=cv2.INTER_NEAREST) > 0
                frames[1][om] = occ[om]
                masks[1] = masks[1] & ~om
        if not masks[2].any():  # the reference pose left the frame: use the previous one
            frames[2], masks[2] = frames[0], masks[0]
        return Pair(frames[0], masks[0], frames[1], masks[1], frames[2], masks[2])


class FirstFramePairs:
    """Pairs made from one annotated frame, for first-frame adaptation (inference/adaptation.py).

    Lucid Data Dreaming (OVSNet's augmentation of the test videos' first frames): the
    target is cut out, its hole inpainted (OpenCV Telea, at half resolution: the fill
    only needs the background's colours), and it is pasted back twice with a small
    random affine motion, the current frame with a colour change and a slight camera
    motion. The other targets stay in the background: they are the distractors the
    adapted MRN must learn to leave out. The reference is the annotated frame itself,
    as the engine's first-frame match uses it.
    """

    HOLE_MARGIN = 15  # pixels around the object that the inpainting replaces (its blurred edge)

    def __init__(self, image: np.ndarray, labels: np.ndarray, ids: list[int]):
        self.image, self.labels, self.ids = image, labels, ids
        height, width = labels.shape
        half = (width // 2, height // 2)
        small = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
        kernel = np.ones((self.HOLE_MARGIN, self.HOLE_MARGIN), np.uint8)
        self.backgrounds = {}
        for i in ids:
            hole = cv2.dilate((labels == i).astype(np.uint8), kernel)
            filled = cv2.inpaint(small, cv2.resize(hole, half, interpolation=cv2.INTER_NEAREST), 5, cv2.INPAINT_TELEA)
            background = image.copy()
            background[hole > 0] = cv2.resize(filled, (width, height))[hole > 0]
            self.backgrounds[i] = background

    def sample(self, rng: np.random.Generator, target: int) -> Pair:
        mask = self.labels == target
        height, width = mask.shape
        cx, cy = box_center(mask_box(mask))
        first = _affine(rng, cx, cy, width, height, 0.3)
        second = _then(first, _affine(rng, width / 2, height / 2, width, height, 0.15))
        camera = _affine(rng, width / 2, height / 2, width, height, 0.05)
        views = []
        for k, matrix in enumerate((first, second)):
            background = self.backgrounds[target]
            if k == 1:
                background = cv2.warpAffine(background, camera, (width, height), borderMode=cv2.BORDER_REFLECT)
            obj = cv2.warpAffine(self.image, matrix, (width, height))
            m = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
            if k == 1:
                obj = colour_jitter(rng, obj)
            views.append((_feathered_paste(background, obj, m), m))
        (prev_image, prev_mask), (image, current) = views
        return Pair(prev_image, prev_mask, image, current, self.image, mask)
