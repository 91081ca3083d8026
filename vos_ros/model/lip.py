"""LIP (shared/seeds/002; digest seeds-spec §2.3): a Mask R-CNN whose features pass through a
convolutional GRU visual memory before its heads.

- Backbone: the frozen ImageNet MobileNetV2 (levels at strides 4, 8, 16, 32), with a
  top-down pathway (FPN laterals) at strides 8, 16, 32.
- Memory: one Conv-GRU per level (Eq. 1a-d, GroupNorm in place of the gate biases), its
  hidden state carried from frame to frame; then the bottom-up path augmentation
  (stride-2 convolutions added level to level) on the GRU outputs.
- Heads on the propagated levels: a class-agnostic proposal head, the RoI box head
  (RoIAlign 7x7 on the three levels, two FCs) whose last layers give id scores and box
  deltas, and the mask head (RoIAlign 14x14 on stride 8, four convolutions, a 2x
  deconvolution to 28x28) with the paper's shortcut: the RoI-aligned stride-4 backbone
  feature added before the mask logits.
- The id classifier and the per-instance box and mask layers are the heads' *last*
  layers, applied outside the exported graphs (`InstanceHeads`): they are what the
  first-frame fine-tuning fits per video (inference/methods/lip_fit.py).

Departures from the paper, for a 2-core CPU:
- MobileNetV2 instead of ResNet101-FPN; 64 channels instead of 256; three memory levels
  (strides 8, 16, 32) instead of five.
- The region proposal network is a one-level, anchor-free centre heatmap with box sizes
  (CenterNet's) at stride 8, instead of a multi-level anchor RPN: the same class-agnostic
  role at a fraction of the cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from .backbone import STRIDES, mobilenet_v2

GN_GROUPS = 8
BOX_POOL = 7  # RoIAlign of the box and id heads
MASK_POOL = 14  # RoIAlign of the mask head (28 x 28 after its deconvolution)
MASK_SIZE = 2 * MASK_POOL
FC_WIDTH = 256
MEMORY_STRIDES = STRIDES[1:]  # 8, 16, 32
PROPOSAL_STRIDE = MEMORY_STRIDES[0]
HEATMAP_PRIOR = 0.1  # the centre heatmap's initial probability (the focal-loss prior)


class ConvGRU(nn.Module):
    """LIP Eq. 1a-d: z = s(GN(W_hz h + W_xz x)), r = s(GN(W_hr h + W_xr x)),
    h~ = tanh(GN(W_h (r*h) + W_x x)), h' = (1 - z) h + z h~; 3x3 kernels, no biases."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.x_gates = nn.Conv2d(in_channels, 3 * hidden, 3, padding=1, bias=False)  # W_xz, W_xr, W_x
        self.h_gates = nn.Conv2d(hidden, 2 * hidden, 3, padding=1, bias=False)  # W_hz, W_hr
        self.h_candidate = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)  # W_h
        self.norm_z, self.norm_r, self.norm_h = (nn.GroupNorm(GN_GROUPS, hidden) for _ in range(3))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        c = h.shape[1]  # slices, not chunk: chunk exports as opset 18's Split
        gx, gh = self.x_gates(x), self.h_gates(h)
        xz, xr, xh, hz, hr = gx[:, :c], gx[:, c:2 * c], gx[:, 2 * c:], gh[:, :c], gh[:, c:]
        z = torch.sigmoid(self.norm_z(hz + xz))
        r = torch.sigmoid(self.norm_r(hr + xr))
        candidate = torch.tanh(self.norm_h(self.h_candidate(r * h) + xh))
        return (1 - z) * h + z * candidate


class LIPMemory(nn.Module):
    """Backbone levels 8, 16, 32 and the hidden states -> new hidden states, the propagated
    levels (after the bottom-up path), and the proposal head's heatmap logit and log box size."""

    def __init__(self, backbone_channels: tuple[int, int, int, int], channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in backbone_channels[1:])
        self.memory = nn.ModuleList(ConvGRU(channels, channels) for _ in MEMORY_STRIDES)
        self.down = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in MEMORY_STRIDES[1:])
        self.proposal = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.heatmap = nn.Conv2d(channels, 1, 1)
        self.size = nn.Conv2d(channels, 2, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def forward(self, levels: list[torch.Tensor], hidden: list[torch.Tensor]
                ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """levels: the backbone's strides 8, 16, 32; hidden: one state per level (zeros to start)."""
        lateral = [conv(x) for conv, x in zip(self.lateral, levels)]
        top_down = [lateral[-1]]
        for x in reversed(lateral[:-1]):
            top_down.insert(0, x + F.interpolate(top_down[0], size=x.shape[-2:], mode="nearest"))
        new_hidden = [gru(x, h) for gru, x, h in zip(self.memory, top_down, hidden)]
        propagated = [new_hidden[0]]
        for down, h in zip(self.down, new_hidden[1:]):
            propagated.append(h + F.relu(down(propagated[-1])))  # sides are multiples of 32: halving is exact
        proposal = self.proposal(propagated[0])
        return new_hidden, propagated, self.heatmap(proposal), self.size(proposal)


class BoxTrunk(nn.Module):
    """RoIAlign 7x7 features of the three propagated levels, concatenated -> the FC feature."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(len(MEMORY_STRIDES) * channels * BOX_POOL ** 2, FC_WIDTH),
                                nn.ReLU(), nn.Linear(FC_WIDTH, FC_WIDTH), nn.ReLU())

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)


class MaskTrunk(nn.Module):
    """RoIAlign 14x14 of the stride-8 level -> four convolutions -> 2x deconvolution, plus the
    shortcut of the RoI-aligned stride-4 backbone feature: (R, C, 28, 28) mask features."""

    def __init__(self, channels: int, shortcut_channels: int):
        super().__init__()
        layers = []
        for _ in range(4):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.up = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.shortcut = nn.Conv2d(shortcut_channels, channels, 1)

    def forward(self, pooled: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return F.relu(self.up(self.convs(pooled)) + self.shortcut(shortcut))


class LIP(nn.Module):
    """The networks; `box_predictor` and `mask_predictor` are the class-agnostic last layers
    trained offline, which the first-frame fine-tuning copies per instance."""

    def __init__(self, channels: int = 64, imagenet_init: bool = False):
        super().__init__()
        self.backbone = mobilenet_v2(imagenet_init)
        for p in self.backbone.parameters():
            p.requires_grad_(False)  # the paper freezes the backbone on video
        self.channels = channels
        self.memory = LIPMemory(self.backbone.channels, channels)
        self.box_trunk = BoxTrunk(channels)
        self.mask_trunk = MaskTrunk(channels, self.backbone.channels[0])
        self.box_predictor = nn.Linear(FC_WIDTH, 4)
        self.mask_predictor = nn.Conv2d(channels, 1, 1)

    def zero_hidden(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """The memory's start (and the static-memory ablation's every frame): zeros per level."""
        return [x.new_zeros((x.shape[0], self.channels, *x.shape[-2:])) for x in levels[1:]]


def pool_boxes(propagated: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
    """rois (R, 5): batch index, x1, y1, x2, y2 at the input's resolution -> (R, 3C, 7, 7)."""
    return torch.cat([roi_align(x, rois, (BOX_POOL, BOX_POOL), 1.0 / s, sampling_ratio=2, aligned=True)
                      for x, s in zip(propagated, MEMORY_STRIDES)], 1)


def pool_masks(propagated: list[torch.Tensor], stride4: torch.Tensor, rois: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask trunk's two inputs: (R, C, 14, 14) of stride 8 and (R, C4, 28, 28) of stride 4."""
    return (roi_align(propagated[0], rois, (MASK_POOL, MASK_POOL), 1.0 / MEMORY_STRIDES[0], 2, True),
            roi_align(stride4, rois, (MASK_SIZE, MASK_SIZE), 1.0 / STRIDES[0], 2, True))


def pool_region(propagated: list[torch.Tensor], stride4: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """The stride-8 propagated level and the stride-4 backbone level RoIAligned at size x size,
    concatenated: (R, C + C4, size, size), what OVSNet's MGA and DyeNet's Re-MP read."""
    return torch.cat([roi_align(propagated[0], rois, (size, size), 1.0 / MEMORY_STRIDES[0], 2, True),
                      roi_align(stride4, rois, (size, size), 1.0 / STRIDES[0], 2, True)], 1)


def encode_boxes(proposals: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Box deltas (dx, dy, dw, dh) of `boxes` against `proposals`, both (R, 4) x1 y1 x2 y2."""
    pw, ph = (proposals[:, 2] - proposals[:, 0]).clamp(min=1), (proposals[:, 3] - proposals[:, 1]).clamp(min=1)
    gw, gh = (boxes[:, 2] - boxes[:, 0]).clamp(min=1), (boxes[:, 3] - boxes[:, 1]).clamp(min=1)
    return torch.stack([((boxes[:, 0] + boxes[:, 2]) - (proposals[:, 0] + proposals[:, 2])) / (2 * pw),
                        ((boxes[:, 1] + boxes[:, 3]) - (proposals[:, 1] + proposals[:, 3])) / (2 * ph),
                        torch.log(gw / pw), torch.log(gh / ph)], 1)


def decode_boxes(proposals: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """The inverse of encode_boxes; deltas (R, 4) or (R, K, 4) -> boxes of the same shape."""
    if deltas.dim() == 3:
        proposals = proposals[:, None].expand(-1, deltas.shape[1], -1)
    pw, ph = proposals[..., 2] - proposals[..., 0], proposals[..., 3] - proposals[..., 1]
    cx = (proposals[..., 0] + proposals[..., 2]) / 2 + deltas[..., 0] * pw
    cy = (proposals[..., 1] + proposals[..., 3]) / 2 + deltas[..., 1] * ph
    w, h = pw * deltas[..., 2].clamp(max=4).exp(), ph * deltas[..., 3].clamp(max=4).exp()
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def clamp_boxes(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(R, 4) boxes kept inside a (width, height) image, each at least 2 pixels from its far side."""
    return torch.stack([boxes[:, 0].clamp(0, width - 2), boxes[:, 1].clamp(0, height - 2),
                        boxes[:, 2].clamp(2, width), boxes[:, 3].clamp(2, height)], 1)


def heatmap_boxes(heatmap: torch.Tensor, size: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `count` strongest local maxima of one frame's centre heatmap (1, 1, h, w) as boxes at
    the input's resolution (their log sizes in stride-8 cells) and their probabilities."""
    probs = torch.sigmoid(heatmap[0, 0])
    peaks = probs * (F.max_pool2d(probs[None, None], 3, 1, 1)[0, 0] == probs)
    scores, index = peaks.flatten().topk(min(count, peaks.numel()))
    rows, cols = index // probs.shape[1], index % probs.shape[1]
    log_w, log_h = size[0, 0].flatten()[index], size[0, 1].flatten()[index]
    cx, cy = (cols.float() + 0.5) * PROPOSAL_STRIDE, (rows.float() + 0.5) * PROPOSAL_STRIDE
    w, h = log_w.clamp(max=6).exp() * PROPOSAL_STRIDE, log_h.clamp(max=6).exp() * PROPOSAL_STRIDE
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), scores


class InstanceHeads(nn.Module):
    """The heads' last layers for one video's K targets: id scores over background + K, and
    each target's own box deltas and mask logits (the paper's class-specific heads, the
    foreground weights copied per instance)."""

    def __init__(self, model: LIP, count: int):
        super().__init__()
        with torch.random.fork_rng():  # re-initialised, as the paper's online step; the same start every fit
            torch.manual_seed(0)
            self.id = nn.Linear(FC_WIDTH, count + 1)
        self.box_weight = nn.Parameter(model.box_predictor.weight.detach().repeat(count, 1, 1).clone())
        self.box_bias = nn.Parameter(model.box_predictor.bias.detach().repeat(count, 1).clone())
        self.mask_weight = nn.Parameter(model.mask_predictor.weight.detach().flatten().repeat(count, 1).clone())
        self.mask_bias = nn.Parameter(model.mask_predictor.bias.detach().repeat(count).clone())

    def boxes(self, features: torch.Tensor) -> torch.Tensor:
        """(R, 256) -> (R, K, 4) deltas."""
        return torch.einsum("rf,kdf->rkd", features, self.box_weight) + self.box_bias

    def masks(self, features: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
        """(R, C, 28, 28) mask features, each RoI's instance index (R,) -> (R, 28, 28) logits."""
        return torch.einsum("rchw,rc->rhw", features, self.mask_weight[instance]) + self.mask_bias[instance, None, None]
