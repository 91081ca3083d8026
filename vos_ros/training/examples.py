"""Training examples: a (previous, current) frame pair turned into every network's inputs and labels.

Each example replays one engine step with ground truth: the previous mask is
perturbed (imitating the tracker's own errors, optionally with a stray piece:
`add_stray`), warped with DIS flow into the
current frame, the decision module's features and Eq. 1 label (IoU of the BP
box with the ground-truth box) are computed, the target region is cropped as
the engine's `target_region` mode does, conditional anchors are labelled
against the ground-truth box, and the MRN gets a RoI (the BP box, or a jittered
ground-truth box as BR would propose) with its prior and target mask, plus a
reference view of the object (its RoI crop and mask) standing in for the first
frame that the appearance match (model/match.py) compares against.

Sources of pairs:
- Stage 1 (`SyntheticPairs`, RGMP §3.2 / DTN §3.4 pre-training on instance
  masks): an object cut from a training frame is pasted onto another training
  frame's background with three random affine poses (reference, previous,
  current), colour change in the current frame, an occluder crossing it, and
  sometimes moved out of the frame (absent: every anchor is negative, the mask
  target is empty).
- Stage 2 (`VideoPairs`): consecutive or skipped (fast motion) frames of the
  DAVIS train split; the reference is any frame of the same sequence (at run
  time it is the first frame, 1 to a few hundred frames away).
- Clips (`VideoPairs.sample_clip`) for recurrent training: a few frames with a
  fixed gap, where the previous mask of every pair after the first is the
  model's own prediction (trainer.recurrent_losses), not a perturbed ground truth;
  optionally with an alike instance moving with the target (`add_alike_instance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou as torchvision_box_iou

from ..config import EngineConfig, MRNConfig
from ..data import davis
from ..data.stills import StillImages
from ..model.crpn import conditional_anchors, encode_boxes
from ..model.decision import flow_features
from ..model.flow import DISFlow, flow_shape, warp_backward
from ..model.geometry import (Box, Region, box_center, box_iou, box_prior, box_size, clip_box, crop_roi, enlarge_box,
                              mask_box)
from ..model.match import appearance_match, match_features
from ..model.memory import memory_readout
from ..model.mrn import roi_levels

POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.3
STRIDE4 = 16  # Res4 stride


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


def _colour_jitter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
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
        clip = Clip([flip(f) for f in frames], [flip(m) for m in masks], *(flip(a) for a in self._frame(sequence, r)))
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
        objects = self.stills if self.still_share > 0 and rng.random() < self.still_share else None
        if objects is not None:
            image, mask, sequence = objects.random_object(rng)
        else:
            image, mask, sequence = self.source.random_frame(rng)
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
                obj = _colour_jitter(rng, obj)
            frames.append(_feathered_paste(bg, obj, m))
            masks.append(m)
        if rng.random() < 0.4:  # an occluder crosses in front in the current frame
            # No draw when off: runs without alike occluders reproduce those made before the option.
            alike = self.alike_occluders > 0 and rng.random() < self.alike_occluders
            if objects is not None:
                occ_img, occ_mask, _ = objects.random_object(rng, sequence if alike else None)
            else:
                occ_img, occ_mask, _ = self.source.random_frame(rng, sequence if alike else None)
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
    """Pairs made from one annotated frame, for first-frame adaptation (training/online.py).

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
                obj = _colour_jitter(rng, obj)
            views.append((_feathered_paste(background, obj, m), m))
        (prev_image, prev_mask), (image, current) = views
        return Pair(prev_image, prev_mask, image, current, self.image, mask)


def mrn_inputs(features: list[torch.Tensor], batch: dict[str, torch.Tensor], reference_index: torch.Tensor,
               memory_index: torch.Tensor | None, roi_sizes: tuple[int, ...], mrn: MRNConfig
               ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The MRN's inputs for collated examples whose current views are images 0..B-1 of the
    backbone `features`, whose reference views are images `reference_index` (B,) and, with
    `mrn.prior_match` memory, whose previous-frame views are images `memory_index` (B,): the
    RoI levels and the priors (warped previous mask; the second prior as the engine computes
    it: the appearance match against the reference, or the memory readout from the reference
    and the previous frame's RoI with its prior mask, the engine's first and latest memories)."""
    device = features[0].device

    def levels_at(index: torch.Tensor, boxes: torch.Tensor) -> list[torch.Tensor]:
        return roi_levels(features, torch.cat([index.float()[:, None], boxes], 1).to(device), roi_sizes)

    levels = levels_at(torch.arange(len(reference_index)), batch["roi"])
    query, reference = match_features(levels), match_features(levels_at(reference_index, batch["ref_roi"]))
    ref_mask = batch["ref_mask"].to(device)
    if mrn.prior_match == "memory":
        previous = match_features(levels_at(memory_index, batch["mem_roi"]))
        keys = torch.cat([reference.flatten(2), previous.flatten(2)], 2)
        labels = torch.cat([ref_mask.flatten(1), batch["mem_mask"].to(device).flatten(1)], 1)
        second = memory_readout(query, keys, labels, torch.ones_like(labels, dtype=torch.bool), mrn.memory_top_k,
                                mrn.memory_temperature, roi_sizes[0])
    else:
        second = appearance_match(query, reference, ref_mask, mrn.match_top_k, mrn.match_temperature, roi_sizes[0])
    return levels, torch.cat([batch["prior"].to(device), second], 1)


def perturb_mask(rng: np.random.Generator, mask: np.ndarray, strays: float = 0.0) -> np.ndarray:
    """Imitate a tracker's own previous-frame errors: erode/dilate and shift a little; with
    probability `strays`, also a stray piece (`add_stray`)."""
    box = mask_box(mask)
    if box is None:
        return mask
    size = max(box[2] - box[0], box[3] - box[1])
    k = int(rng.integers(0, max(2, int(0.06 * size))))
    out = mask.astype(np.uint8)
    if k > 0:
        kernel = np.ones((k, k), np.uint8)
        out = cv2.dilate(out, kernel) if rng.random() < 0.5 else cv2.erode(out, kernel)
    shift = rng.normal(0, 0.03 * size, 2)
    out = cv2.warpAffine(out, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), out.shape[::-1], flags=cv2.INTER_NEAREST)
    # No draw when off: runs without strays reproduce those made before the option.
    if strays > 0 and rng.random() < strays:
        add_stray(rng, out, box)
    return out > 0 if out.any() else mask


def add_stray(rng: np.random.Generator, mask: np.ndarray, box: Box) -> None:
    """Draw into `mask` (uint8, in place) a piece of background that a tracker's mask keeps by
    mistake, out from the object's edge in a random direction: a thin trail 0.5-1.5x the
    object's size long (left on static background when the object moved on: flow carries it
    nowhere, so it stays and stretches the box), or a blob 0.25-1x its size beyond the edge
    (a piece stuck on a neighbour). Trained against, the MRN learns to drop prior pixels the
    image does not support."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return
    size = max(box[2] - box[0], box[3] - box[1])
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    edge = int(np.argmax(xs * direction[0] + ys * direction[1]))  # the mask's farthest pixel that way
    start = np.array([xs[edge], ys[edge]])
    if rng.random() < 0.5:
        end = start + direction * rng.uniform(0.5, 1.5) * size
        thickness = max(1, int(rng.uniform(0.02, 0.06) * size))
        cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, thickness)
    else:
        at = start + direction * rng.uniform(0.25, 1.0) * size
        axes = tuple(max(1, int(rng.uniform(0.05, 0.2) * size)) for _ in range(2))
        cv2.ellipse(mask, tuple(int(v) for v in at), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)


def jitter_box(rng: np.random.Generator, box: Box, amount: float) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    d = rng.normal(0, amount, 4) * np.array([w, h, w, h])
    return (box[0] + d[0], box[1] + d[1], box[2] + d[2], box[3] + d[3])


class ExampleBuilder:
    """Turns pairs into tensors for one configuration (target_region geometry)."""

    def __init__(self, config: EngineConfig, prior_strays: float = 0.0):
        """`prior_strays`: the share of perturbed previous masks given a stray piece (`add_stray`)."""
        self.config, self.prior_strays = config, prior_strays
        self.flow = DISFlow(config.flow.preset, config.flow.scale)

    def build(self, pair: Pair, rng: np.random.Generator, perturb: bool = True) -> dict[str, torch.Tensor] | None:
        """None when the previous mask is empty. `perturb=False` when the previous mask is
        already a tracker's output (recurrent training)."""
        cfg = self.config
        height, width = pair.image.shape[:2]
        scale = self.flow.scale
        prev_box_true = mask_box(pair.prev_mask)
        if prev_box_true is None:
            return None
        prev_mask = perturb_mask(rng, pair.prev_mask, self.prior_strays) if perturb else pair.prev_mask
        prev_box = mask_box(prev_mask)
        fh, fw = flow_shape(width, height, scale)
        prev_small = cv2.resize(prev_mask.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA)
        prev_gray, gray = self.flow.prepare(pair.prev_image), self.flow.prepare(pair.image)
        flow = self.flow.backward(prev_gray, gray)
        warped = warp_backward(prev_small, flow)
        bp = mask_box(warped, 0.5, scale)
        bp_box = clip_box(bp, width, height) if bp is not None else None
        gt_box = mask_box(pair.mask)
        warp_error = np.abs(gray.astype(np.float32) - warp_backward(prev_gray, flow).astype(np.float32)) / 255.0
        dm_feats = flow_features(flow, warp_error, prev_small, warped, prev_box, bp_box,
                                 float(rng.uniform(0.6, 1.0)), (width, height), scale)
        dm_label = box_iou(bp_box, gt_box)

        # Region as the engine builds it; lost-search growth imitated by a random scale.
        use_bp = bp_box is not None and rng.random() < 0.5
        anchor_box = bp_box if use_bp else prev_box
        growth = 1.0 if rng.random() < 0.7 else float(rng.uniform(1.0, 3.0))
        region = Region.around(anchor_box, cfg.features.region_scale * growth, cfg.features.region_min_side,
                               float(max(width, height)), cfg.features.region_size)
        crop = region.crop(pair.image, pair.image.reshape(-1, 3).mean(axis=0))

        # CRPN anchors around the previous box, labelled against the current ground truth.
        size = cfg.features.region_size
        map_size = (size // STRIDE4, size // STRIDE4)
        anchors = conditional_anchors(region.to_input(prev_box), STRIDE4, cfg.crpn.grid, cfg.crpn.multipliers, map_size)
        n_anchors = cfg.crpn.grid**2 * len(cfg.crpn.multipliers) ** 2
        anchor_rows = torch.zeros(n_anchors, 4)
        anchor_rows[: anchors.shape[0]] = anchors[:n_anchors]
        valid = torch.zeros(n_anchors, dtype=torch.bool)
        valid[: anchors.shape[0]] = True
        labels = torch.zeros(n_anchors)
        reg_targets = torch.zeros(n_anchors, 4)
        weights = valid.float()
        if gt_box is not None:
            gt_in = torch.tensor(region.to_input(gt_box), dtype=torch.float32)[None]
            ious = torchvision_box_iou(anchor_rows, gt_in)[:, 0]
            labels = (ious >= POSITIVE_IOU).float()
            weights = weights * ((ious >= POSITIVE_IOU) | (ious < NEGATIVE_IOU)).float()
            reg_targets = encode_boxes(anchor_rows.clamp(min=0) + torch.tensor([0, 0, 1e-3, 1e-3]), gt_in.expand(n_anchors, 4))

        # MRN RoI: the BP box, or a ground-truth box jittered as a BR candidate would be.
        use_box_prior = False
        if use_bp:
            roi = bp_box
        elif gt_box is not None:
            roi = clip_box(jitter_box(rng, gt_box, 0.08), width, height)
            use_box_prior = rng.random() < 0.2
        else:
            roi = clip_box(jitter_box(rng, prev_box, 0.1), width, height)
        roi = enlarge_box(roi, cfg.mrn.box_margin)
        m = cfg.mrn.roi_size
        if use_box_prior or bp_box is None:
            prior = box_prior(m, cfg.mrn.box_margin)
        else:
            prior = crop_roi(warped, roi, m, scale)
        target = crop_roi(pair.mask.astype(np.float32), roi, m)

        # Reference view: cropped and RoI'd as the engine does for a target's first frame.
        ref_box = mask_box(pair.ref_mask)
        if ref_box is None:
            return None
        ref_region = Region.around(ref_box, cfg.features.region_scale, cfg.features.region_min_side,
                                   float(max(width, height)), cfg.features.region_size)
        ref_roi = enlarge_box(ref_box, cfg.mrn.box_margin)
        memory = {}
        if cfg.mrn.prior_match == "memory":  # the previous frame as the engine's latest memory entry
            mem_region = Region.around(prev_box, cfg.features.region_scale, cfg.features.region_min_side,
                                       float(max(width, height)), cfg.features.region_size)
            mem_roi = enlarge_box(prev_box, cfg.mrn.box_margin)
            memory = {
                "mem_image": torch.from_numpy(mem_region.crop(pair.prev_image, pair.prev_image.reshape(-1, 3).mean(axis=0)))
                .permute(2, 0, 1).contiguous(),
                "mem_roi": torch.tensor(mem_region.to_input(mem_roi), dtype=torch.float32),
                "mem_mask": torch.from_numpy(crop_roi(prev_small, mem_roi, m // 2, scale)),
            }
        return {
            **memory,
            "ref_image": torch.from_numpy(ref_region.crop(pair.ref_image, pair.ref_image.reshape(-1, 3).mean(axis=0)))
            .permute(2, 0, 1).contiguous(),
            "ref_roi": torch.tensor(ref_region.to_input(ref_roi), dtype=torch.float32),
            "ref_mask": torch.from_numpy(crop_roi(pair.ref_mask.astype(np.float32), ref_roi, m // 2)),
            "image": torch.from_numpy(crop).permute(2, 0, 1).contiguous(),
            "roi": torch.tensor(region.to_input(roi), dtype=torch.float32),
            "roi_frame": torch.tensor(roi, dtype=torch.float32),  # the same box in frame pixels
            "prior": torch.from_numpy(prior)[None],
            "mask": torch.from_numpy(target)[None],
            "anchors": anchor_rows,
            "anchor_labels": labels,
            "anchor_weights": weights,
            "anchor_targets": reg_targets,
            "dm_features": torch.from_numpy(dm_feats),
            "dm_label": torch.tensor(dm_label, dtype=torch.float32),
        }
