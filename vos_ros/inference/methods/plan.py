"""What the DTN method keeps per target, and what one frame does for one target."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from ...model.geometry import Box, Region
from ..targets import Segment


@dataclass
class DTNState:
    first_embedding: torch.Tensor  # f(T_1): Eq. 2's first-frame term
    prev_embedding: torch.Tensor  # f(T_{i-1})
    reference: torch.Tensor  # first-frame RoI matching features (C, S, S)
    reference_mask: torch.Tensor  # first-frame mask on the same grid (S, S)
    # mrn.prior_match memory: (RoI matching features, published mask on that grid) of its last frames
    recent: deque


@dataclass
class Plan(Segment):
    """What one frame does for one target (filled stage by stage); `propagated` is its warped mask."""

    bp_box: Box | None = None
    region: Region | None = None
    view: int = 0  # its backbone batch index
    roi_box: Box | None = None  # target RoI chosen by BP or BR (frame pixels)
    box_prior: bool = False  # use a box prior instead of the warped mask
    match_features: torch.Tensor | None = None  # of its MRN RoI (C, S, S): its memory entry when found
