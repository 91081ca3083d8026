"""Training OVSNet's own heads (model/ovsnet.py) on the train video and still images; the
detector (LIP's shipped network) stays frozen, as the paper keeps MGA's gradients out of it.

Each batch item is a clip's reference frame and two later frames (frames skipped at random;
a still image's clip moves along an affine path), at the working resolution, through the
frozen backbone and the memory from a zero state (the detector's static mode).
- Re-ID (OVSNet §3.1.2, Eq. 1): boxes jittered around each frame's object (its identity:
  the train sequence, or the still image's clip) and background boxes (each its own
  identity: never a positive, often the hardest negative); the batch-hard triplet loss.
  Half the clips add their last frame once more with the object's colours changed, as
  another identity (`recoloured`): without it the embedding took a colour-swapped
  look-alike of the same shape for the object (docs/experiments.md).
- MGA (§3.1.1), weight 1.3 (its Tab. 4): the object's mask perturbed as a tracker's warped
  mask is (data/examples.py perturb_mask), half of them blurred as a detection's soft mask
  is, is the attention; BCE against the ground truth on
  the enlarged box. A share of the attention masks is moved off the object
  (`off_object`): the flow carries an occluded object's mask onto what hides it, and MGA
  must then answer "nothing here" for the engine to call the target lost.
Resumable; every checkpoint leaves usable weights (`ovsnet_ITERATION.safetensors`) and, with
held-out sequences, their J&F, the best kept as `ovsnet.safetensors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..config import EngineConfig
from ..data.crops import VIDEO_HEIGHT, make_sample, scaled
from ..data.examples import jitter_box, perturb_mask
from ..data.pairs import VideoPairs, transformed_clip
from ..data.stills import StillImages
from ..inference.methods.lip_fit import GT_MARGIN
from ..inference.methods.ovsnet import OVSNetMethod
from ..model.geometry import box_iou, enlarge_box, mask_box
from ..model.lip import pool_boxes
from ..model.ovsnet import OVSNetHeads, mga_inputs, mga_target, triplet_loss
from .common import train_loop
from .detector_heads import heads_trainee, holdout_scores

MGA_WEIGHT = 1.3  # OVSNet Tab. 4's lambda
STILL_IDENTITY = 1_000_000  # still clips' identities start here (video: the sequence index)
RECOLOURED_IDENTITY = 2_000_000  # recoloured objects: each its own identity


@dataclass
class OVSNetTrainSettings:
    video: str  # DAVIS-layout train split (never a dev split)
    out: str
    stills: str = ""
    still_share: float = 0.3
    iterations: int = 1500
    batch_size: int = 6  # clips; three frames each
    lr: float = 1e-3  # cosine decay
    max_gap: int = 5
    crop: tuple[int, int] = (224, 384)  # (h, w) at the working resolution
    boxes: int = 2  # jittered object boxes per frame (Re-ID)
    background: int = 2  # background boxes per frame (Re-ID)
    off_object: float = 0.15  # share of MGA attention masks moved off the object
    soft_attention: float = 0.5  # share of MGA attention masks blurred (as a detection's probability is)
    recoloured: float = 0.5  # share of clips that add their last frame with the object recoloured (Re-ID)
    seed: int = 0
    checkpoint_every: int = 250
    holdout: str = ""  # comma-separated train sequences scored at every checkpoint

    @property
    def holdouts(self) -> tuple[str, ...]:
        return tuple(s for s in self.holdout.split(",") if s)


def identity_clip(rng: np.random.Generator, video: VideoPairs, stills: StillImages | None, still_share: float,
                  steps: int, index: int, reference_last: bool = False):
    """A clip of `steps` frames (and its reference) and its identity: the video's sequence, or
    (`still_share` of them) transformed copies of one still image, whose extra copy is the
    reference: the first (OVSNet) or, with `reference_last`, the last (DyeNet)."""
    if stills is not None and rng.random() < still_share:
        image, mask, _ = stills.random_object(rng)
        if mask.any():
            image, mask = scaled(image, mask, VIDEO_HEIGHT / min(mask.shape))
            clip = transformed_clip(rng, image, mask, steps + 1)
            ref, rest = (-1, slice(None, -1)) if reference_last else (0, slice(1, None))
            clip.ref_image, clip.ref_mask = clip.frames[ref], clip.masks[ref]
            clip.frames, clip.masks = clip.frames[rest], clip.masks[rest]
            return clip, STILL_IDENTITY + index
    clip = video.sample_clip(rng, steps)
    return clip, clip.sequence


def off_object_mask(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """The mask moved 1-2 of its sizes away (the warped mask of an object that went behind
    something), or the mask itself where the move leaves the frame or it is empty."""
    box = mask_box(mask)
    if box is None:
        return mask
    h, w = mask.shape
    size = np.array([box[2] - box[0], box[3] - box[1]])
    shift = rng.choice([-1, 1], 2) * rng.uniform(1.0, 2.0, 2) * size
    ys, xs = np.nonzero(mask)
    xs, ys = (xs + shift[0]).astype(int), (ys + shift[1]).astype(int)
    keep = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    if keep.sum() < 0.5 * len(xs):
        return mask
    out = np.zeros_like(mask)
    out[ys[keep], xs[keep]] = True
    return out


def recoloured(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the object's colours changed (a channel permutation, or inverted): a
    look-alike of the same shape and pose that is another object."""
    out = image.copy()
    pick = int(rng.integers(6))
    changed = 255 - image if pick == 5 else image[..., [(1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)][pick]]
    out[mask] = changed[mask]
    return out


def background_boxes(rng: np.random.Generator, truth: tuple, count: int, width: int, height: int) -> list:
    boxes = []
    for _ in range(20 * count):
        if len(boxes) >= count:
            break
        bw, bh = rng.uniform(0.1, 0.6) * width, rng.uniform(0.1, 0.6) * height
        x, y = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        box = (x, y, x + bw, y + bh)
        if box_iou(box, truth) < 0.3:
            boxes.append(box)
    return boxes


def batch_loss(lip, heads: OVSNetHeads, views: list[tuple[np.ndarray, np.ndarray, int]], rng: np.random.Generator,
               settings: OVSNetTrainSettings) -> tuple[torch.Tensor, dict[str, float]]:
    """Re-ID triplet loss + MGA_WEIGHT x MGA BCE over the views (image, mask, identity)."""
    images = torch.from_numpy(np.stack([v[0] for v in views])).permute(0, 3, 1, 2).float().div_(255.0)
    with torch.no_grad():
        levels = lip.backbone(images)
        _, propagated, _, _ = lip.memory(levels[1:], lip.zero_hidden(levels))
    height, width = images.shape[-2:]
    reid_rows, labels, mga_rows, masks_used = [], [], [], []
    negative = -1
    for i, (_, mask, identity) in enumerate(views):
        truth = mask_box(mask)
        if truth is None:
            continue
        gt = enlarge_box(truth, GT_MARGIN)
        for _ in range(settings.boxes):
            reid_rows.append((i, *jitter_box(rng, gt, 0.08)))
            labels.append(identity)
        for box in background_boxes(rng, gt, settings.background, width, height):
            reid_rows.append((i, *box))
            labels.append(negative)
            negative -= 1
        attention = off_object_mask(rng, mask) if rng.random() < settings.off_object else perturb_mask(rng, mask)
        mga_rows.append((i, *mask_box(attention)))
        attention = attention.astype(np.float32)
        if rng.random() < settings.soft_attention:  # a detection's soft 28x28 mask, pasted
            attention = cv2.GaussianBlur(attention, (0, 0), float(rng.uniform(0.5, 3.0)))
        masks_used.append(attention)
    if not reid_rows:
        zero = images.new_zeros(())
        return zero, {"reid": 0.0, "mga": 0.0}
    rows = torch.tensor(reid_rows, dtype=torch.float32)
    with torch.no_grad():
        features = lip.box_trunk(pool_boxes(propagated, rows))
    reid = triplet_loss(heads.reid(features), torch.tensor(labels))
    boxes = torch.tensor([r[1:] for r in mga_rows], dtype=torch.float32)
    index = torch.tensor([r[0] for r in mga_rows])
    attended, attention, _ = mga_inputs(propagated, levels[0], torch.from_numpy(np.stack(masks_used))[:, None],
                                        boxes, index)
    truth_masks = torch.from_numpy(np.stack([views[int(r[0])][1] for r in mga_rows])).float()[:, None]
    mga = F.binary_cross_entropy_with_logits(heads.mga(attended, attention), mga_target(truth_masks, boxes))
    return reid + MGA_WEIGHT * mga, {"reid": reid.item(), "mga": mga.item()}


def train_ovsnet(config: EngineConfig, settings: OVSNetTrainSettings, resume: bool = True,
                 detector_untrained: bool = False) -> Path:
    """`detector_untrained`: an ImageNet backbone with random detector heads (tests only)."""
    lip, heads, trainee = heads_trainee(config, settings, OVSNetMethod, detector_untrained)
    video = VideoPairs(settings.video, max_gap=settings.max_gap, exclude=settings.holdouts)
    stills = StillImages(settings.stills) if settings.stills else None
    scale = config.ovsnet.height / VIDEO_HEIGHT

    def loss(rng: np.random.Generator, iteration: int):
        views = []
        for k in range(settings.batch_size):
            clip, identity = identity_clip(rng, video, stills, settings.still_share, 2, k)
            sample = make_sample(clip, rng, scale, settings.crop)
            views += [(sample.ref_image, sample.ref_mask, identity)]
            views += [(f, m, identity) for f, m in zip(sample.frames, sample.masks)]
            if rng.random() < settings.recoloured:
                views.append((recoloured(rng, sample.frames[-1], sample.masks[-1]), sample.masks[-1],
                              RECOLOURED_IDENTITY + iteration * settings.batch_size + k))
        return batch_loss(lip, heads, views, rng, settings)

    def score():
        return holdout_scores(OVSNetMethod, lip, heads, config, settings.video, settings.holdouts)

    return train_loop(trainee, settings, config.to_dict(), 23, loss, score if settings.holdouts else None, resume)

