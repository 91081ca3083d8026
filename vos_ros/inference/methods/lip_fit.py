"""LIP's first-frame fine-tuning (LIP §4.2): the heads' last layers fitted to one video's targets.

As the paper: the id classifier's last layer is re-initialised with one class per target
(plus background) and trained with focal loss; the box and mask heads become
class-specific by copying their foreground weights per instance; the backbone and the
memory stay frozen, and back-propagation stops at the last layers (for the id head the
paper stops there too; for the box and mask heads it is our choice: their trunks' features
are then computed once, so a fit of hundreds of iterations takes about a second on a CPU,
and the trunks stay exported graphs that every backend runs alike). Each head's loss is
ignored once it is below its bar (`lip.fit_*_loss`; the paper's bars are in its
supplementary, which we do not have).

Examples per target (`sample_rois`, shared with training): boxes around its mask's box
(enlarged 10%, as the paper's ground truth) jittered to IoU >= 0.5 as positives; near
misses and random boxes (IoU < 0.3 with every target) and the proposal head's other
maxima (hard negatives: look-alikes elsewhere) as background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...config import LIPConfig
from ...data.examples import jitter_box
from ...model.geometry import Box, box_iou, enlarge_box
from ...model.lip import LIP, InstanceHeads

GT_MARGIN = 0.1  # LIP: ground-truth boxes are the masks' boxes, 10% wider and taller
POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.3
FIT_LR = 5e-3
FOCAL_GAMMA = 2.0


def sample_rois(rng: np.random.Generator, boxes: list[Box], index: int, width: int, height: int,
                positives: int, negatives: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) around `boxes[index]` (label 1) and background boxes (label 0) for a frame
    of (width, height) holding `boxes`."""
    gt = enlarge_box(boxes[index], GT_MARGIN)
    rois, labels = [gt], [1]
    for _ in range(20 * positives):
        if len(rois) >= positives:
            break
        box = jitter_box(rng, gt, 0.12)
        if box[2] - box[0] > 2 and box[3] - box[1] > 2 and box_iou(box, gt) >= POSITIVE_IOU:
            rois.append(box)
            labels.append(1)
    wanted = len(rois) + negatives
    for attempt in range(20 * negatives):
        if len(rois) >= wanted:
            break
        if attempt % 2:  # a near miss: the target's box moved and rescaled
            w, h = gt[2] - gt[0], gt[3] - gt[1]
            cx = (gt[0] + gt[2]) / 2 + rng.uniform(-1.5, 1.5) * w
            cy = (gt[1] + gt[3]) / 2 + rng.uniform(-1.5, 1.5) * h
            s = rng.uniform(0.5, 1.5)
            box = (cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2)
        else:
            w, h = rng.uniform(0.05, 0.6) * width, rng.uniform(0.05, 0.6) * height
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            box = (x, y, x + w, y + h)
        if all(box_iou(box, enlarge_box(b, GT_MARGIN)) < NEGATIVE_IOU for b in boxes):
            rois.append(box)
            labels.append(0)
    return np.asarray(rois, np.float32), np.asarray(labels, np.int64)


@dataclass
class TargetExamples:
    """One target's cached first-frame examples: trunk features, never images."""

    box_features: torch.Tensor  # (N, 256): positives first
    positive: torch.Tensor  # (N,) bool
    box_targets: torch.Tensor  # (P, 4) deltas of the positives to the ground-truth box
    mask_features: torch.Tensor  # (Q, C, 28, 28) of the first Q positives
    mask_targets: torch.Tensor  # (Q, 28, 28) in [0, 1]


def focal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax focal loss (gamma 2), mean over the rows."""
    log_p = F.log_softmax(logits, 1).gather(1, labels[:, None])[:, 0]
    return -((1 - log_p.exp()) ** FOCAL_GAMMA * log_p).mean()


def fit_instance_heads(model: LIP, examples: list[TargetExamples], config: LIPConfig
                       ) -> tuple[InstanceHeads, dict[str, float]]:
    """The last layers fitted for these targets (in this order); a report of the fit."""
    # The engine steps in inference mode: the fit leaves it, on copies of the cached features.
    with torch.inference_mode(False), torch.enable_grad():
        return _fit(model, [TargetExamples(*(t.clone() for t in vars(e).values())) for e in examples], config)


def _fit(model: LIP, examples: list[TargetExamples], config: LIPConfig) -> tuple[InstanceHeads, dict[str, float]]:
    heads = InstanceHeads(model, len(examples))
    features = torch.cat([e.box_features for e in examples])
    labels = torch.cat([torch.where(e.positive, k + 1, 0) for k, e in enumerate(examples)])
    positive_features = torch.cat([e.box_features[e.positive] for e in examples])
    positive_instance = torch.cat([torch.full((int(e.positive.sum()),), k) for k, e in enumerate(examples)])
    box_targets = torch.cat([e.box_targets for e in examples])
    mask_features = torch.cat([e.mask_features for e in examples])
    mask_instance = torch.cat([torch.full((len(e.mask_targets),), k) for k, e in enumerate(examples)])
    mask_targets = torch.cat([e.mask_targets for e in examples])
    bars = {"id": config.fit_id_loss, "box": config.fit_box_loss, "mask": config.fit_mask_loss}
    losses = {
        "id": lambda: focal_loss(heads.id(features), labels),
        "box": lambda: F.smooth_l1_loss(heads.boxes(positive_features)[torch.arange(len(positive_instance)),
                                                                       positive_instance], box_targets, beta=0.1),
        "mask": lambda: F.binary_cross_entropy_with_logits(heads.masks(mask_features, mask_instance), mask_targets),
    }
    optimizer = torch.optim.Adam(heads.parameters(), lr=FIT_LR)
    active, first, last, iterations = set(losses), {}, {}, 0
    while active and iterations < config.fit_iterations:
        values = {name: losses[name]() for name in active}
        for name, value in values.items():
            first.setdefault(name, value.item())
            last[name] = value.item()
        optimizer.zero_grad(set_to_none=True)
        sum(values.values()).backward()
        optimizer.step()
        iterations += 1
        active = {name for name in active if last[name] >= bars[name]}
    heads.requires_grad_(False)
    report = {"iterations": iterations, **{f"{n}_before": round(v, 4) for n, v in first.items()},
              **{f"{n}_after": round(v, 4) for n, v in last.items()}}
    return heads.eval(), report


def refit_id(heads: InstanceHeads, examples: list[list[tuple[torch.Tensor, torch.Tensor]]], config: LIPConfig
             ) -> dict[str, float]:
    """The id layer refitted in place, from where it is, on each target's (box features,
    positive) example sets (in the heads' target order): the paper's id-head fine-tuning
    during inference. A report of the refit."""
    with torch.inference_mode(False), torch.enable_grad():
        features = torch.cat([f.clone() for sets in examples for f, _ in sets])
        labels = torch.cat([torch.where(p, k + 1, 0) for k, sets in enumerate(examples) for _, p in sets])
        heads.id.requires_grad_(True)
        optimizer = torch.optim.Adam(heads.id.parameters(), lr=FIT_LR)
        first, iterations, value = None, 0, 0.0
        while iterations < config.update_iterations:
            loss = focal_loss(heads.id(features), labels)
            value = loss.item()
            first = value if first is None else first
            if value < config.fit_id_loss:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iterations += 1
        heads.id.requires_grad_(False)
    return {"iterations": iterations, "id_before": round(first or 0.0, 4), "id_after": round(value, 4)}
