"""Mask refinement network (MRN) [DTN §3.3, Eqs. 3-4].

Four mask refinement modules (MRMs), deep to shallow (Res5 -> Res2). Level j's
RoI features are RoIAligned to M / 2^(j-2) and projected to `channels` with a
1x1 conv (the paper does not say how backbone widths meet the 256-channel MRMs).

  Eq. 3: U_j = Conv2(proj(f_j) + Up(M_{j+1}))   (first MRM, j=5: no Up term)
  Eq. 4: M_j = Conv2'(U_j) * prior_j + U_j

Conv2 is conv3x3-ReLU-conv3x3-ReLU; Conv2' (the attention branch) ends without
ReLU so the prior can also suppress. Up is bilinear x2. The prior is the warped
previous mask RoIAligned with the same box and resized per level.

Output (not in the paper): a 3x3 conv to one channel *added to the prior's
logit* (prior clamped to [PRIOR_CLAMP, 1 - PRIOR_CLAMP]), the conv starting near
zero. An untrained MRN therefore reproduces the warped mask (the DIS
propagation floor) and training learns the correction; with the paper's plain
output a short CPU schedule under-segmented and scored below that floor. The
sigmoid is applied by the caller (logits train with a numerically stable BCE).

Second prior (not in the paper; see `match.py`): the first-frame appearance
match. It joins each level's features as one more input channel of the 1x1
projection (RGMP concatenates reference information with the current frame's
features), and its logit is added to the output with a learnt weight that
starts at 1 -- so an untrained MRN is already "warped mask + appearance".

Correction scale (not in the paper): at inference the learnt correction is
multiplied by `correction_scale` (config `mrn.correction_scale`; training uses
1). Trained on six sequences, the correction is confident on the objects it
has seen and confidently wrong on others: given the ground-truth previous mask
every frame, the warped mask plus matching alone scores 0.90 J&F on the dev
split and the full MRN 0.76. Halving the correction is what the held-out train
sequence preferred (breakdance J&F 0.45 / 0.49 / 0.52 / 0.48 at scales
1 / 0.75 / 0.5 / 0.25 with the pair-trained weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from .backbone import STRIDES

PRIOR_CLAMP = 0.05  # prior logit within +-2.94: strong enough to start from, easy to overrule
PRIORS = 2  # channels of the MRN's prior input: warped previous mask, first-frame appearance match


def roi_levels(features: list[torch.Tensor], rows: torch.Tensor, roi_sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """The MRN's input: levels 2..5 RoIAligned (rows: batch index + box in input pixels) to m_j x m_j."""
    return [roi_align(f, rows, (s, s), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
            for f, stride, s in zip(features, STRIDES, roi_sizes)]


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.clamp(PRIOR_CLAMP, 1 - PRIOR_CLAMP))


def _conv2(channels: int, final_relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1)]
    if final_relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MaskRefinementModule(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.project = nn.Conv2d(in_channels + 1, channels, 1)  # + the appearance match
        self.update = _conv2(channels, final_relu=True)
        self.attend = _conv2(channels, final_relu=False)

    def forward(self, feature: torch.Tensor, deeper: torch.Tensor | None, prior: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
        x = self.project(torch.cat([feature, match], 1))
        if deeper is not None:
            x = x + F.interpolate(deeper, size=x.shape[-2:], mode="bilinear", align_corners=False)
        u = self.update(x)
        return self.attend(u) * prior + u


class MaskRefinementNetwork(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int, int], channels: int, roi_size: int,
                 correction_scale: float = 1.0):
        super().__init__()
        self.roi_size = roi_size
        self.correction_scale = correction_scale  # a setting, not a weight: 1 while training
        self.roi_sizes = tuple(roi_size // 2**j for j in range(4))  # levels 2..5
        self.modules_deep_to_shallow = nn.ModuleList(
            MaskRefinementModule(c, channels) for c in reversed(in_channels)
        )
        self.predict = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.normal_(self.predict.weight, std=1e-3)
        nn.init.zeros_(self.predict.bias)
        self.match_weight = nn.Parameter(torch.ones(1))

    def forward(self, roi_features: list[torch.Tensor], priors: torch.Tensor) -> torch.Tensor:
        """roi_features: levels 2..5, (K, C_j, m_j, m_j); priors: (K, 2, M, M) in [0, 1], the warped
        previous mask and the appearance match -> logits (K, 1, M, M)."""
        x = None
        for module, feature in zip(self.modules_deep_to_shallow, reversed(roi_features)):
            level = F.interpolate(priors, size=feature.shape[-2:], mode="area") if feature.shape[-1] != self.roi_size else priors
            x = module(feature, x, level[:, :1], level[:, 1:])
        return self.correction_scale * self.predict(x) + _logit(priors[:, :1]) + self.match_weight * _logit(priors[:, 1:])
