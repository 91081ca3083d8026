"""DyeNet (shared/seeds/000; digest seeds-spec §2.1): a re-identification network that finds
an object's starting points among proposals, and Re-MP, a recurrent mask propagation
whose hidden state is carried by the optical flow.

- Proposals and their masks: LIP's trained detector (model/lip.py) run with a zero memory,
  as OVSNet uses it; the paper's RPN is "trained separately, its backbone shareable", and
  its mask network is a sub-network of the same kind (here LIP's mask head).
- Re-ID network (its Fig. 3a): the proposal's stride-8 detector level and stride-4
  backbone level RoIAligned at 14x14, two 3x3 convolutions (the second stride 2, for the
  paper's conv5_x with its original strides), global average pooling and an FC layer, an
  L2-normalised 256-d embedding. Loss: OIM (the paper's L_reid) whose lookup table is the
  batch's identity means: most identities here (a still image's clip, a recoloured
  look-alike, a background box) live for one batch, where OIM keeps a table of thousands.
- Re-MP (its Eqs. 1-2, Fig. 3c): on the box of the flow-warped previous mask, enlarged by
  REMP_MARGIN (the paper is silent; OVSNet's 20%), x_j is the same two levels RoIAligned
  at m x m (m = 28, the paper's example); the hidden state h_{j-1} (d = 32 channels; the
  paper is silent), on the previous box's grid, is moved into this box's grid by the flow
  (`warp_hidden`). N_R is a Conv-GRU (LIP's), N_O three convolutions (the third a 2x
  up-convolution) and a prediction that also reads the stride-4 level at 2m: a mask of
  28 x 28 cells lost 13% J on its own round trip on a large train object (hockey), 56 x 56
  5%. Region attention is one convolution on the warped hidden state and a softmax over
  the m x m cells, scaled by m^2 so that a uniform attention leaves h_j as it is.
- Not in the paper, as in our MRN and MGA: the warped mask on the grid also enters N_R's
  input, and N_O's logits are a correction added to its logit (the last layer starting
  near zero), so an untrained Re-MP returns the warped mask it was given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from .backbone import STRIDES
from .lip import ConvGRU, pool_region
from .mrn import PRIOR_CLAMP

EMBEDDING = 256
REID_POOL = 14
OIM_TEMPERATURE = 0.1  # OIM's 1/tau (its paper's 0.1)
REMP_POOL = 28  # m
REMP_SIZE = 2 * REMP_POOL  # the output mask's side
REMP_HIDDEN = 32  # d
REMP_MARGIN = 0.2  # the warped mask's box enlarged by this share of its size


class ReIDNet(nn.Module):
    """(R, C, 14, 14) pooled proposal features -> (R, 256) L2-normalised embeddings."""

    def __init__(self, in_channels: int, channels: int = 128):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(channels, EMBEDDING)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.convs(pooled).mean((2, 3))), dim=1)


class ReMP(nn.Module):
    """One step of the recurrent mask propagation on m x m grids: the pooled features x_j
    (R, C, m, m), the warped mask (R, 1, m, m) and the warped hidden state (R, d, m, m) ->
    h_j; N_O reads the attended h_j, upsampled 2x with the stride-4 detail (R, C4, 2m, 2m),
    and adds the warped mask at 2m (R, 1, 2m, 2m): the mask logits (R, 1, 2m, 2m)."""

    def __init__(self, in_channels: int, detail_channels: int, hidden: int = REMP_HIDDEN):
        super().__init__()
        self.begin = nn.Sequential(nn.Conv2d(in_channels + 1, hidden, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(hidden, hidden, 3, padding=1))
        self.input = nn.Sequential(nn.Conv2d(in_channels + 1, hidden, 3, padding=1), nn.ReLU())
        self.recurrent = ConvGRU(hidden, hidden)  # N_R
        self.attention = nn.Conv2d(hidden, 1, 3, padding=1)
        self.output = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),  # N_O
                                    nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                                    nn.ConvTranspose2d(hidden, hidden, 2, stride=2), nn.ReLU())
        self.predict = nn.Conv2d(hidden + detail_channels, 1, 3, padding=1)
        for layer in (self.attention, self.predict):
            nn.init.normal_(layer.weight, std=1e-3)
            nn.init.zeros_(layer.bias)

    def start(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A starting point's hidden state from its features and mask on its box's grid."""
        return torch.tanh(self.begin(torch.cat([features, mask], 1)))

    def region_attention(self, hidden: torch.Tensor) -> torch.Tensor:
        """a_j (R, 1, m, m): a softmax over the cells of one convolution of the warped hidden state, times m^2."""
        logits = self.attention(hidden)
        cells = logits.shape[-2] * logits.shape[-1]
        return (torch.softmax(logits.flatten(1), 1) * cells).view_as(logits)

    def forward(self, features: torch.Tensor, prior: torch.Tensor, hidden: torch.Tensor, detail: torch.Tensor,
                fine_prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attention = self.region_attention(hidden)
        hidden = self.recurrent(self.input(torch.cat([features, prior], 1)), hidden)
        logits = self.predict(torch.cat([self.output(hidden * attention), detail], 1))
        return hidden, logits + torch.logit(fine_prior.clamp(PRIOR_CLAMP, 1 - PRIOR_CLAMP))


class DyeNetHeads(nn.Module):
    """What DyeNet adds to the detector, and what its weights file holds."""

    def __init__(self, memory_channels: int, stride4_channels: int):
        super().__init__()
        self.reid = ReIDNet(memory_channels + stride4_channels)
        self.remp = ReMP(memory_channels + stride4_channels, stride4_channels)


def cell_centres(boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, size) x and y pixel coordinates of the grid cells' centres on each box (R, 4)."""
    grid = (torch.arange(size, dtype=boxes.dtype, device=boxes.device) + 0.5) / size
    return (boxes[:, 0:1] + grid[None] * (boxes[:, 2:3] - boxes[:, 0:1]),
            boxes[:, 1:2] + grid[None] * (boxes[:, 3:4] - boxes[:, 1:2]))


def warp_hidden(hidden: torch.Tensor, previous_boxes: torch.Tensor, boxes: torch.Tensor, flow: torch.Tensor
                ) -> torch.Tensor:
    """h_{(j-1)->j}: hidden states (R, d, m, m) on the previous boxes' grids, sampled where the
    backward flow `flow` (R, 2, m, m: per cell of this frame's boxes, the displacement to its
    source in the previous frame) says each cell came from; zeros where that is off the grid."""
    size = hidden.shape[-1]
    xs, ys = cell_centres(boxes, size)
    source_x = xs[:, None, :] + flow[:, 0]
    source_y = ys[:, :, None] + flow[:, 1]
    x1, y1, x2, y2 = (previous_boxes[:, k, None, None] for k in range(4))
    grid = torch.stack([(source_x - x1) / (x2 - x1).clamp(min=1e-3) * 2 - 1,
                        (source_y - y1) / (y2 - y1).clamp(min=1e-3) * 2 - 1], -1)
    return F.grid_sample(hidden, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _own_rows(rows: torch.Tensor) -> torch.Tensor:
    """RoIAlign rows on per-RoI maps: box k on batch item k."""
    return torch.cat([torch.arange(len(rows), dtype=rows.dtype, device=rows.device)[:, None], rows[:, 1:]], 1)


def remp_begin(remp: ReMP, propagated: list[torch.Tensor], stride4: torch.Tensor, rows: torch.Tensor,
               masks: torch.Tensor) -> torch.Tensor:
    """Starting points' hidden states: masks (R, 1, H, W) at the input's resolution on RoIAlign rows (R, 5)."""
    grid = roi_align(masks, _own_rows(rows), REMP_POOL, 1.0, 2, True)
    return remp.start(pool_region(propagated, stride4, rows, REMP_POOL), grid)


def remp_step(remp: ReMP, propagated: list[torch.Tensor], stride4: torch.Tensor, rows: torch.Tensor,
              previous_boxes: torch.Tensor, hidden: torch.Tensor, warped: torch.Tensor, flow: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Re-MP step on RoIAlign rows (R, 5) of the levels: each run's hidden state (R, d, m, m)
    on its previous box (R, 4), its warped previous mask (R, 1, H, W) and each run's backward
    flow (R, 2, H, W), at the input's resolution -> h_j and the (R, 1, 2m, 2m) logits."""
    own = _own_rows(rows)
    hidden = warp_hidden(hidden, previous_boxes, rows[:, 1:], roi_align(flow, own, REMP_POOL, 1.0, 2, True))
    return remp(pool_region(propagated, stride4, rows, REMP_POOL), roi_align(warped, own, REMP_POOL, 1.0, 2, True),
                hidden, roi_align(stride4, rows, REMP_SIZE, 1.0 / STRIDES[0], 2, True),
                roi_align(warped, own, REMP_SIZE, 1.0, 2, True))


def oim_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """OIM over the batch: each embedding of an identity seen at least twice against every
    such identity's mean (the lookup table) and the once-seen embeddings (OIM's queue of
    unlabelled ones), cosine / OIM_TEMPERATURE, cross-entropy to its own identity; the table
    and the queue carry no gradient, as OIM's."""
    ids, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    labelled = counts >= 2
    anchors = labelled[inverse]
    if not anchors.any():
        return embeddings.new_zeros(())
    table = torch.zeros(len(ids), embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    table = F.normalize(table.index_add(0, inverse, embeddings.detach())[labelled], dim=1)
    queue = embeddings.detach()[~anchors]
    logits = embeddings[anchors] @ torch.cat([table, queue]).T / OIM_TEMPERATURE
    target = (torch.cumsum(labelled.long(), 0) - 1)[inverse[anchors]]
    return F.cross_entropy(logits, target)
