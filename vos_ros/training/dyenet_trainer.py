"""Training DyeNet's own networks (model/dyenet.py) jointly on the train video and still
images; the detector (LIP's shipped network) stays frozen (the paper trains its RPN apart).

Each batch item is a clip of `steps` frames (frames skipped at random; a still image's clip
moves along an affine path) and a reference frame of the same video, at the working
resolution, through the frozen backbone and the detector's memory from a zero state.
- Re-ID (L_reid): boxes jittered around each frame's object (its identity: the train
  sequence, or the still image's clip) and background boxes (each seen once); half the
  clips add their last frame with the object recoloured, another identity (the look-alike
  OVSNet's training taught us to show); the batch OIM loss.
- Re-MP (L_remp, the paper's lambda 1; it is silent): started from the first frame's true
  mask, then run on the clip with its own binarised predictions warped by DIS flow, as at
  run time, the gradient through the hidden state over the whole clip (BPTT); BCE on each
  frame's box against the ground truth. A clip whose warped mask vanishes stops there.
  Half the steps perturb the previous mask first (eroded or dilated, shifted, a quarter
  with a stray piece: data/examples.py), the errors a long run accumulates and a
  five-frame clip does not show. A tenth of the steps move it off the object instead (as
  OVSNet's MGA training does): where the object has gone, Re-MP must answer "nothing here"
  for its propagation to abort; without it, it kept a mask where a hidden object vanished.
Resumable; every checkpoint leaves usable weights (`dyenet_ITERATION.safetensors`) and, with
held-out sequences, their J&F, the best kept as `dyenet.safetensors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..config import EngineConfig
from ..data.crops import VIDEO_HEIGHT, make_sample
from ..data.examples import jitter_box, perturb_mask
from ..data.pairs import VideoPairs
from ..data.stills import StillImages
from ..inference.methods.dyenet import DyeNetMethod, box_rows, map_tensor
from ..inference.methods.lip_fit import GT_MARGIN
from ..model.dyenet import REID_POOL, REMP_MARGIN, REMP_SIZE, DyeNetHeads, oim_loss, remp_begin, remp_step
from ..model.flow import DISFlow, warp_backward
from ..model.geometry import enlarge_box, mask_box, paste_roi
from ..model.lip import pool_region
from .common import train_loop
from .detector_heads import heads_trainee, holdout_scores
from .ovsnet_trainer import (RECOLOURED_IDENTITY, background_boxes, identity_clip, off_object_mask,
                             recoloured)

REMP_WEIGHT = 1.0  # lambda


@dataclass
class DyeNetTrainSettings:
    video: str  # DAVIS-layout train split (never a dev split)
    out: str
    stills: str = ""
    still_share: float = 0.3
    iterations: int = 800
    batch_size: int = 4  # clips
    steps: int = 5  # frames per clip: the first's mask starts Re-MP, which runs on the others
    lr: float = 1e-3  # cosine decay
    max_gap: int = 2
    crop: tuple[int, int] = (224, 384)  # (h, w) at the working resolution
    boxes: int = 2  # jittered object boxes per frame (Re-ID)
    background: int = 2  # background boxes per frame (Re-ID)
    recoloured: float = 0.5  # share of clips that add their last frame with the object recoloured (Re-ID)
    perturb: float = 0.5  # share of Re-MP steps whose previous mask is perturbed first (data/examples.py)
    off_object: float = 0.1  # share of Re-MP steps whose previous mask is moved off the object first
    strays: float = 0.25  # of those, the share that also get a stray piece
    seed: int = 0
    checkpoint_every: int = 200
    holdout: str = ""  # comma-separated train sequences scored at every checkpoint

    @property
    def holdouts(self) -> tuple[str, ...]:
        return tuple(s for s in self.holdout.split(",") if s)


def reid_loss(heads: DyeNetHeads, propagated, stride4, views, rng, settings: DyeNetTrainSettings) -> torch.Tensor:
    rows, labels, negative = [], [], -1
    height, width = stride4.shape[-2] * 4, stride4.shape[-1] * 4
    for i, (_, mask, identity) in enumerate(views):
        truth = mask_box(mask)
        if truth is None:
            continue
        gt = enlarge_box(truth, GT_MARGIN)
        for _ in range(settings.boxes):
            rows.append((i, *jitter_box(rng, gt, 0.08)))
            labels.append(identity)
        for box in background_boxes(rng, gt, settings.background, width, height):
            rows.append((i, *box))
            labels.append(negative)
            negative -= 1
    if not rows:
        return stride4.new_zeros(())
    pooled = pool_region(propagated, stride4, torch.tensor(rows, dtype=torch.float32), REID_POOL)
    return oim_loss(heads.reid(pooled), torch.tensor(labels))


def remp_loss(heads: DyeNetHeads, propagated, stride4, clips: list[tuple[int, list, list]], flow: DISFlow,
              rng: np.random.Generator, settings: DyeNetTrainSettings) -> torch.Tensor:
    """clips: (batch index of its first frame, frames, masks); its frames follow that index."""
    losses = []
    for first, frames, masks in clips:
        box = mask_box(masks[0])
        if box is None:
            continue
        box = enlarge_box(box, REMP_MARGIN)
        hidden = remp_begin(heads.remp, propagated, stride4, box_rows(box, first), map_tensor(masks[0], "cpu"))
        previous = masks[0].astype(np.float32)
        grey = [flow.prepare(f) for f in frames]
        for t in range(1, len(frames)):
            pick = rng.random()
            if pick < settings.off_object:
                previous = off_object_mask(rng, previous > 0.5).astype(np.float32)
            elif pick < settings.off_object + settings.perturb:
                previous = perturb_mask(rng, previous > 0.5, settings.strays).astype(np.float32)
            backward = flow.backward(grey[t - 1], grey[t])
            warped = warp_backward(previous, backward)
            new_box = mask_box(warped)
            if new_box is None:
                break
            new_box = enlarge_box(new_box, REMP_MARGIN)
            hidden, logits = remp_step(heads.remp, propagated, stride4, box_rows(new_box, first + t),
                                       torch.tensor([box], dtype=torch.float32), hidden, map_tensor(warped, "cpu"),
                                       map_tensor(backward, "cpu"))
            truth = roi_align(map_tensor(masks[t], "cpu"), box_rows(new_box, 0), REMP_SIZE, 1.0, 2, True)
            losses.append(F.binary_cross_entropy_with_logits(logits, truth))
            h, w = previous.shape
            window, (x, y) = paste_roi(torch.sigmoid(logits)[0, 0].detach().numpy(), new_box, h, w)
            previous = np.zeros((h, w), np.float32)
            previous[y:y + window.shape[0], x:x + window.shape[1]] = window > 0.5
            box = new_box
    return torch.stack(losses).mean() if losses else stride4.new_zeros(())


def train_dyenet(config: EngineConfig, settings: DyeNetTrainSettings, resume: bool = True,
                 detector_untrained: bool = False) -> Path:
    """`detector_untrained`: an ImageNet backbone with random detector heads (tests only)."""
    lip, heads, trainee = heads_trainee(config, settings, DyeNetMethod, detector_untrained)
    video = VideoPairs(settings.video, max_gap=settings.max_gap, exclude=settings.holdouts)
    stills = StillImages(settings.stills) if settings.stills else None
    flow = DISFlow(config.flow.preset, 1.0)
    scale = config.dyenet.height / VIDEO_HEIGHT

    def loss(rng: np.random.Generator, iteration: int):
        views, clips = [], []
        for k in range(settings.batch_size):
            clip, identity = identity_clip(rng, video, stills, settings.still_share, settings.steps, k,
                                           reference_last=True)
            sample = make_sample(clip, rng, scale, settings.crop)
            clips.append((len(views), sample.frames, sample.masks))
            views += [(f, m, identity) for f, m in zip(sample.frames, sample.masks)]
            views.append((sample.ref_image, sample.ref_mask, identity))
            if rng.random() < settings.recoloured:
                views.append((recoloured(rng, sample.frames[-1], sample.masks[-1]), sample.masks[-1],
                              RECOLOURED_IDENTITY + iteration * settings.batch_size + k))
        images = torch.from_numpy(np.stack([v[0] for v in views])).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.no_grad():
            levels = lip.backbone(images)
            _, propagated, _, _ = lip.memory(levels[1:], lip.zero_hidden(levels))
        reid = reid_loss(heads, propagated, levels[0], views, rng, settings)
        remp = remp_loss(heads, propagated, levels[0], clips, flow, rng, settings)
        return reid + REMP_WEIGHT * remp, {"reid": reid.item(), "remp": remp.item()}

    def score():
        return holdout_scores(DyeNetMethod, lip, heads, config, settings.video, settings.holdouts)

    return train_loop(trainee, settings, config.to_dict(), 37, loss, score if settings.holdouts else None, resume)
