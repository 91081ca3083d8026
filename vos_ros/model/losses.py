"""The MRN loss, shared by offline training (trainer.py) and first-frame adaptation (inference/adaptation.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Jaccard per RoI. Pixel BCE alone let the masks shrink (objects are a
    minority of each RoI's pixels); this term weighs every object equally, whatever its area."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    intersection = (p * t).sum(1)
    union = (p + t - p * t).sum(1)
    return (1 - (intersection + 1) / (union + 1)).mean()


def mrn_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_MRN: per-pixel BCE plus the soft-IoU term."""
    return F.binary_cross_entropy_with_logits(logits, target) + soft_iou_loss(logits, target)
