"""The network inputs of one tracking step, built the same way at inference and in training.

The engine's DTN method (inference/methods/dtn.py) calls these on the live target
state; the training examples (data/examples.py) call them on ground truth replayed as
a step. Keeping them in one place is what keeps the networks trained on the inputs
they will see.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import FeatureConfig, MRNConfig
from .geometry import Box, Region, box_prior, clip_box, crop_roi, mask_box
from .match import appearance_match
from .memory import memory_readout, stack_memories


def target_region(box: Box, features: FeatureConfig, width: int, height: int, growth: float = 1.0) -> Region:
    """The square crop around a target box that the backbone sees (target_region mode);
    `growth` widens it (a lost target's search)."""
    return Region.around(box, features.region_scale * growth, features.region_min_side, float(max(width, height)),
                         features.region_size)


def crop_regions(image: np.ndarray, regions: list[Region]) -> np.ndarray:
    """(N, S, S, 3) crops; outside the frame filled with the frame's mean colour."""
    fill = image.reshape(-1, 3).mean(axis=0)
    return np.stack([region.crop(image, fill) for region in regions])


def propagated_box(warped: np.ndarray, scale: float, width: int, height: int) -> Box | None:
    """BP: the box of the flow-warped previous mask (at `scale` x frame resolution), in frame pixels."""
    box = mask_box(warped, 0.5, scale)
    return clip_box(box, width, height) if box is not None else None


def mask_prior(warped: np.ndarray | None, roi_box: Box, mrn: MRNConfig, scale: float) -> np.ndarray:
    """The MRN's first prior on an (enlarged) RoI, (M, M): the warped previous mask, or a box
    prior (ones inside the candidate box) where there is none (BR after a lost frame)."""
    if warped is None:
        return box_prior(mrn.roi_size, mrn.box_margin)
    return crop_roi(warped, roi_box, mrn.roi_size, scale)


def appearance_prior(query: torch.Tensor, references: torch.Tensor, reference_masks: torch.Tensor, mrn: MRNConfig,
                     out_size: int | None) -> torch.Tensor:
    """The first-frame appearance match (model/match.py) of each query RoI, (K, 1, out, out)."""
    return appearance_match(query, references, reference_masks, mrn.match_top_k, mrn.match_temperature, out_size)


def memory_prior(query: torch.Tensor, memories: list[list[tuple[torch.Tensor, torch.Tensor]]], mrn: MRNConfig,
                 out_size: int | None) -> torch.Tensor:
    """The memory readout (model/memory.py) of each query RoI from its target's memories
    (first frame first, then its latest frames), (K, 1, out, out)."""
    return memory_readout(query, *stack_memories(memories), mrn.memory_top_k, mrn.memory_temperature, out_size)
