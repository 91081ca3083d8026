"""OVSNet (shared/seeds/004; digest seeds-spec §2.4): a detector's class-agnostic boxes and
masks on every frame, an online re-identification embedding, and the mask-guided attention
(MGA) module that refines a flow-warped mask.

- Detector: LIP's trained network (model/lip.py) run with a zero memory every frame (its
  static-memory mode: one pass, nothing carried): the centre-heatmap proposals, the
  class-agnostic box deltas and 28x28 masks. The paper's is a Mask R-CNN trained on COCO and
  DAVIS; ours is the project's own detector on the same frozen ImageNet MobileNetV2, trained
  on the train video and still images, and stays frozen here (the paper also keeps MGA's
  gradients out of its detector).
- Re-ID head (its §3.1.2): two FC layers to a 128-d embedding, dropout 0.2 after the last,
  trained with the batch-hard triplet loss (margin 1.0). Its input is the box trunk's 256-d
  FC feature of the RoI (LIP's training taught that trunk the train sequences' identities)
  rather than the raw 7x7x3C RoIAlign features: 0.1 M parameters instead of 2.5 M.
- MGA (its §3.1.1): the box of the mask to refine (a warped mask, or a detection's) enlarged
  20%; the stride-8 propagated level and the stride-4 backbone level RoIAligned on it at
  28x28 are multiplied pixel-wise by the attention map (the mask on its own box, 0.5 in the
  enlarged ring), then two 3x3 convolutions (for the paper's last ResNet block) and an ASPP
  (dilations 1, 2, 4 and a global-pool branch, for its "advanced ASPP"), upsampled 2x to
  56x56 fg/bg logits. The paper resizes to 100x100 for its ResNet-101 block; 28 -> 56 is the
  size our stride-8 features support at the 240-row working resolution.
- Not in the paper, as in our MRN (model/mrn.py): the attention map also enters as a channel,
  and the logits are a learnt correction added to the attention's logit, the last layer
  starting near zero, so an untrained MGA returns the mask it was given. With the paper's
  plain output, trained here for 600 iterations, MGA alone propagated the warped mask at
  0.476 J&F on the held-out train sequences (docs/experiments.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from .lip import FC_WIDTH, pool_region
from .mrn import PRIOR_CLAMP

EMBEDDING = 128
REID_DROPOUT = 0.2
TRIPLET_MARGIN = 1.0
MGA_POOL = 28  # the attention map's and the pooled features' side
MGA_SIZE = 2 * MGA_POOL  # the output logits' side
MGA_MARGIN = 0.2  # the warped mask's box enlarged by this share of its size, the ring filled 0.5
MGA_RING = 0.5


class ReIDHead(nn.Module):
    """(R, 256) box-trunk features -> (R, 128) embeddings."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(FC_WIDTH, FC_WIDTH), nn.ReLU(), nn.Linear(FC_WIDTH, EMBEDDING),
                                nn.Dropout(REID_DROPOUT))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


class MaskGuidedAttention(nn.Module):
    """Attended RoI features (R, C8 + C4, 28, 28) and the attention -> (R, 1, 56, 56) logits."""

    def __init__(self, in_channels: int, channels: int = 64):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(in_channels + 1, channels, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.aspp = nn.ModuleList([nn.Conv2d(channels, channels, 1)] + [
            nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in (2, 4)])
        self.pooled = nn.Conv2d(channels, channels, 1)
        self.fuse = nn.Sequential(nn.Conv2d(4 * channels, channels, 1), nn.ReLU())
        self.up = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.predict = nn.Conv2d(channels, 1, 1)
        nn.init.normal_(self.predict.weight, std=1e-3)
        nn.init.zeros_(self.predict.bias)

    def forward(self, attended: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """attended (R, C, 28, 28): features x attention; attention (R, 1, 28, 28) -> (R, 1, 56, 56)."""
        x = self.block(torch.cat([attended, attention], 1))
        glob = self.pooled(F.adaptive_avg_pool2d(x, 1)).expand(-1, -1, *x.shape[-2:])
        x = self.fuse(torch.cat([F.relu(branch(x)) for branch in self.aspp] + [F.relu(glob)], 1))
        prior = F.interpolate(attention, scale_factor=2, mode="bilinear", align_corners=False)
        return self.predict(F.relu(self.up(x))) + torch.logit(prior.clamp(PRIOR_CLAMP, 1 - PRIOR_CLAMP))


class OVSNetHeads(nn.Module):
    """What OVSNet adds to the detector, and what its weights file holds."""

    def __init__(self, memory_channels: int, stride4_channels: int):
        super().__init__()
        self.reid = ReIDHead()
        self.mga = MaskGuidedAttention(memory_channels + stride4_channels)


def _enlarged_rows(boxes: torch.Tensor) -> torch.Tensor:
    """RoIAlign rows (R, 5) of each box enlarged by MGA_MARGIN, box k on batch item k."""
    index = torch.arange(len(boxes), dtype=boxes.dtype, device=boxes.device)[:, None]
    return torch.cat([index, enlarge(boxes, MGA_MARGIN)], 1)


def attention_map(mask: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The MGA attention (R, 1, 28, 28): each mask (R, 1, H, W) RoIAligned on its box enlarged
    by MGA_MARGIN (`boxes` (R, 4): the masks' own boxes), MGA_RING outside its own box."""
    rows = _enlarged_rows(boxes)
    wide = rows[:, 1:]
    att = roi_align(mask, rows, (MGA_POOL, MGA_POOL), 1.0, 2, True)
    grid = (torch.arange(MGA_POOL, dtype=boxes.dtype, device=boxes.device) + 0.5) / MGA_POOL
    xs = wide[:, 0:1] + grid[None] * (wide[:, 2:3] - wide[:, 0:1])  # (R, 28) cell centres, pixels
    ys = wide[:, 1:2] + grid[None] * (wide[:, 3:4] - wide[:, 1:2])
    inside_x = (xs >= boxes[:, 0:1]) & (xs <= boxes[:, 2:3])
    inside_y = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])
    inside = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
    return torch.where(inside, att, torch.full_like(att, MGA_RING))


def mga_target(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """What MGA is trained to output: each mask (R, 1, H, W) on its box enlarged, (R, 1, 56, 56)."""
    return roi_align(masks, _enlarged_rows(boxes), (MGA_SIZE, MGA_SIZE), 1.0, 2, True)


def enlarge(boxes: torch.Tensor, margin: float) -> torch.Tensor:
    """(R, 4) boxes grown by `margin` of their size, centred."""
    half = (boxes[:, 2:] - boxes[:, :2]) * (1 + margin) / 2
    centre = (boxes[:, 2:] + boxes[:, :2]) / 2
    return torch.cat([centre - half, centre + half], 1)


def mga_inputs(propagated: list[torch.Tensor], stride4: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor,
               index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MGA's two inputs for masks (R, 1, H, W) on their boxes (R, 4) in batch items `index`
    (R,) of the levels: the attended features, the stride-8 propagated level and the stride-4
    backbone level RoIAligned at 28x28 on the enlarged box and multiplied by the attention,
    and the attention; and the enlarged boxes (R, 4) the output covers."""
    attention = attention_map(masks, boxes)
    wide = enlarge(boxes, MGA_MARGIN)
    rows = torch.cat([index.to(boxes.dtype)[:, None], wide], 1)
    return pool_region(propagated, stride4, rows, MGA_POOL) * attention, attention, wide


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """OVSNet Eq. 1, batch-hard: per anchor with a positive, the farthest positive against the
    nearest negative, margin TRIPLET_MARGIN (Euclidean)."""
    distance = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    anchors = positive.any(1)
    if not anchors.any():
        return embeddings.new_zeros(())
    hardest_positive = (distance * positive).max(1).values
    hardest_negative = distance.masked_fill(same, float("inf")).min(1).values
    return F.relu(hardest_positive - hardest_negative + TRIPLET_MARGIN)[anchors].mean()
