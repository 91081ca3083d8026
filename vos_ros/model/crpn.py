"""Conditional RPN (CRPN) and Eq. 2 matching for box re-identification (BR) [DTN §3.2].

Anchors: the feature cells of a grid x grid neighbourhood around the previous
target centre on the Res4 map, each with 3 scales x 3 ratios relative to the
previous box (scale = sqrt(w*h), ratio = w/h; the paper defines neither): 81
anchors per target for grid=3. The head is a small RoI head on 7x7 RoIAligned
Res4 features of each anchor (objectness + box deltas as in Faster R-CNN): the
anchor sizes depend on the previous box, so a fixed-anchor convolutional RPN
head could not know them. Candidates are ranked by Eq. 2 with the *smallest*
summed L2 distance winning (the paper's "largest score" contradicts its L2
distance), on L2-normalised average-pooled RoIAlign features (normalisation
unstated; it makes the distance scale-free, range 0..2 per term).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms, roi_align

from .backbone import STRIDES
from .geometry import Box

MATCH_LEVEL = 2  # index of Res4 in the backbone levels: the CRPN's and Eq. 2's features
MATCH_STRIDE = STRIDES[MATCH_LEVEL]
BOX_DELTA_CLAMP = math.log(1000.0 / 16)


def conditional_anchors(
    prev_box: Box, stride: float, grid: int, multipliers: tuple[float, ...], map_size: tuple[int, int] | None = None,
    cell_step: int = 1,
) -> torch.Tensor:
    """(cells * len(m)^2, 4) anchors in the feature input's pixel coordinates.

    Centres are the centres of the grid x grid feature cells around the cell
    containing the previous centre (only cells inside `map_size` = (w, h) when
    given: a wide lost-target search stops at the map; `cell_step` > 1 takes
    every n-th cell so a wide search keeps a bounded cost); sizes use scale
    m_s * s_prev and ratio m_r * r_prev for every pair of multipliers.
    """
    x1, y1, x2, y2 = prev_box
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    scale, ratio = math.sqrt(w * h), w / h
    cell_x, cell_y = math.floor((x1 + x2) / 2 / stride), math.floor((y1 + y2) / 2 / stride)
    half = grid // 2
    offsets = torch.arange(-half, half + 1, cell_step, dtype=torch.float32)
    cols, rows = cell_x + offsets, cell_y + offsets
    if map_size is not None:
        cols = cols[(cols >= 0) & (cols < map_size[0])]
        rows = rows[(rows >= 0) & (rows < map_size[1])]
        if cols.numel() == 0 or rows.numel() == 0:  # centre left the map: search its nearest edge cells
            cols = cols if cols.numel() else torch.tensor([float(min(max(cell_x, 0), map_size[0] - 1))])
            rows = rows if rows.numel() else torch.tensor([float(min(max(cell_y, 0), map_size[1] - 1))])
    cy, cx = torch.meshgrid((rows + 0.5) * stride, (cols + 0.5) * stride, indexing="ij")
    m = torch.tensor(multipliers, dtype=torch.float32)
    s, r = torch.meshgrid(m * scale, m * ratio, indexing="ij")
    aw, ah = (s * r.sqrt()).reshape(-1), (s / r.sqrt()).reshape(-1)
    cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)
    return torch.stack([cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2], dim=-1).reshape(-1, 4)


def encode_boxes(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    bx, by = boxes[:, 0] + bw / 2, boxes[:, 1] + bh / 2
    return torch.stack([(bx - ax) / aw, (by - ay) / ah, torch.log(bw / aw), torch.log(bh / ah)], dim=1)


def decode_boxes(anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    dw, dh = deltas[:, 2].clamp(max=BOX_DELTA_CLAMP), deltas[:, 3].clamp(max=BOX_DELTA_CLAMP)
    cx, cy = ax + deltas[:, 0] * aw, ay + deltas[:, 1] * ah
    w, h = aw * dw.exp(), ah * dh.exp()
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def rois(batch_index: int | torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N, 5) RoIAlign rows [batch, x1, y1, x2, y2]."""
    idx = torch.as_tensor(batch_index, dtype=boxes.dtype).expand(boxes.shape[0]).reshape(-1, 1)
    return torch.cat([idx, boxes], dim=1)


def embed(feat4: torch.Tensor, roi_rows: torch.Tensor, stride: float, size: int) -> torch.Tensor:
    """Eq. 2's f(.): average-pooled RoIAlign features, L2-normalised. (N, C)."""
    pooled = roi_align(feat4, roi_rows, (size, size), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
    return F.normalize(pooled.mean(dim=(2, 3)), dim=1)


def match_distance(candidates: torch.Tensor, first: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Eq. 2: L2 to the first-frame target plus L2 to the previous-frame target. Smaller is better."""
    return (candidates - first).norm(dim=1) + (candidates - previous).norm(dim=1)


class CRPNHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, roi_size: int):
        super().__init__()
        self.roi_size = roi_size
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.objectness = nn.Linear(channels * 4, 1)
        self.deltas = nn.Linear(channels * 4, 4)

    def forward(self, anchor_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, r, r) RoIAligned anchors -> objectness logits (N,), deltas (N, 4)."""
        x = self.body(anchor_features)
        return self.objectness(x).squeeze(-1), self.deltas(x)


def propose(
    head: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], feat4: torch.Tensor, batch_index: int,
    anchors: torch.Tensor, stride: float, bounds: tuple[float, float], roi_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded candidate boxes (clipped to `bounds` = input w, h) and objectness probabilities.

    `head` maps RoIAligned anchor features to (objectness logits, deltas): a CRPNHead or a
    deployment backend's `crpn_head`, so that RoIAlign and box decoding stay in one place.
    """
    anchor_feats = roi_align(
        feat4, rois(batch_index, anchors), (roi_size, roi_size), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True,
    )
    logits, deltas = head(anchor_feats)
    boxes = decode_boxes(anchors, deltas)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, bounds[0])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, bounds[1])
    return boxes, torch.sigmoid(logits)


def select_candidates(boxes: torch.Tensor, objectness: torch.Tensor, top_n: int, nms_iou: float, min_objectness: float):
    """Indices of at most `top_n` NMS survivors above `min_objectness`, best objectness first."""
    valid = ((boxes[:, 2] - boxes[:, 0]) > 1) & ((boxes[:, 3] - boxes[:, 1]) > 1) & (objectness >= min_objectness)
    idx = torch.nonzero(valid).squeeze(1)
    if idx.numel() == 0:
        return idx
    keep = nms(boxes[idx], objectness[idx], nms_iou)
    return idx[keep[:top_n]]
