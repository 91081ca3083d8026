"""RGMP (shared/seeds/001; digest seeds-spec §2.2): reference-guided mask propagation.

A Siamese encoder (shared weights) takes RGB + a mask channel: the reference stream the
first frame and its mask (encoded once per target), the target stream the current frame
and the previous output probability (not binarised). The two streams' deepest levels are
concatenated, go through a global convolution block (k = 7: 1xk + kx1 and kx1 + 1xk
summed, then a residual block, no BatchNorm), and a decoder of three refinement modules
(SharpMask's, with residual blocks) with skips from the target stream gives a 2-channel
mask (background, object) at 1/4 of the input size. No optical flow.

Departures from the paper, for a 2-core CPU (training and inference):
- MobileNetV2 from the shipped ImageNet weights instead of ResNet-50 (no other ImageNet
  weights are reachable here, and it is ~10x cheaper): levels of 24 / 32 / 96 / 320 channels
  at strides 4 / 8 / 16 / 32.
- Widths `channels` at 1/32 and 1/16, half that at 1/8, a quarter at 1/4, instead of 256
  everywhere (the decoder at 1/4 would otherwise cost more than the encoder).
- The mask channel's new first-layer filters start at zero (the paper: random), so the
  encoder starts as the ImageNet network, and learn at the decoder's rate (the ImageNet
  layers at a tenth of it); the mask enters centred (mask - 0.5).
- The encoder's BatchNorm statistics stay ImageNet's (batches of a few clips here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RGMP_ABLATIONS
from .backbone import IMAGENET_MEAN, IMAGENET_STD, mobilenet_v2

GC_KERNEL = 7


class MaskEncoder(nn.Module):
    """MobileNetV2 on RGB + mask: four levels (strides 4, 8, 16, 32). The mask channel's
    first-layer filters are a convolution of their own, summed with the ImageNet RGB one before
    its BatchNorm: the same as one 4-channel convolution (it is linear in its input channels),
    but a new layer that learns at the decoder's rate."""

    def __init__(self, imagenet: bool):
        super().__init__()
        backbone = mobilenet_v2(imagenet)
        self.stages = backbone.stem_and_stages
        self.channels = backbone.channels
        rgb = self.stages[0][0][0]  # the stem's 3-channel convolution
        self.mask_conv = nn.Conv2d(1, rgb.out_channels, rgb.kernel_size, rgb.stride, rgb.padding, bias=False)
        nn.init.zeros_(self.mask_conv.weight)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 3, H, W) RGB in [0, 1], masks (B, 1, H, W) in [0, 1]; H, W multiples of 32."""
        stem = self.stages[0]
        conv, norm, activation = stem[0]
        x = activation(norm(conv((images - self.mean) / self.std) + self.mask_conv(masks - 0.5)))
        for layer in stem[1:]:
            x = layer(x)
        levels = [x]
        for stage in self.stages[1:]:
            x = stage(x)
            levels.append(x)
        return levels


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class GlobalConvolution(nn.Module):
    """1xk then kx1, plus kx1 then 1xk, summed; then a residual block."""

    def __init__(self, in_channels: int, channels: int, k: int = GC_KERNEL):
        super().__init__()
        pad = k // 2
        self.left = nn.Sequential(nn.Conv2d(in_channels, channels, (k, 1), padding=(pad, 0)),
                                  nn.Conv2d(channels, channels, (1, k), padding=(0, pad)))
        self.right = nn.Sequential(nn.Conv2d(in_channels, channels, (1, k), padding=(0, pad)),
                                   nn.Conv2d(channels, channels, (k, 1), padding=(pad, 0)))
        self.residual = ResidualBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(self.left(x) + self.right(x))


class RefinementModule(nn.Module):
    """The skip through a conv and a residual block, plus the upsampled deeper mask features
    (projected when the width changes), then a residual block."""

    def __init__(self, skip_channels: int, deeper_channels: int, channels: int):
        super().__init__()
        self.skip = nn.Sequential(nn.Conv2d(skip_channels, channels, 3, padding=1), ResidualBlock(channels))
        self.deeper = nn.Identity() if deeper_channels == channels else nn.Conv2d(deeper_channels, channels, 1)
        self.merge = ResidualBlock(channels)

    def forward(self, skip: torch.Tensor, deeper: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.deeper(deeper), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.merge(self.skip(skip) + up)


class RGMPDecoder(nn.Module):
    """Reference and target levels -> 2-channel logits at 1/4 of the input."""

    def __init__(self, encoder_channels: tuple[int, int, int, int], channels: int):
        super().__init__()
        c4, c8, c16, c32 = encoder_channels
        widths = (channels, channels, channels // 2, channels // 4)  # 1/32, 1/16, 1/8, 1/4
        self.global_conv = GlobalConvolution(2 * c32, widths[0])
        self.refine16 = RefinementModule(c16, widths[0], widths[1])
        self.refine8 = RefinementModule(c8, widths[1], widths[2])
        self.refine4 = RefinementModule(c4, widths[2], widths[3])
        self.predict = nn.Conv2d(widths[3], 2, 3, padding=1)

    def forward(self, reference_top: torch.Tensor, levels: list[torch.Tensor]) -> torch.Tensor:
        """reference_top (B, C32, h, w): the reference stream's deepest level; levels: the target
        stream's four -> logits (B, 2, H/4, W/4)."""
        f4, f8, f16, f32 = levels
        x = self.global_conv(torch.cat([f32, reference_top], 1))
        x = self.refine16(f16, x)
        x = self.refine8(f8, x)
        x = self.refine4(f4, x)
        return self.predict(F.relu(x))


class RGMP(nn.Module):
    def __init__(self, channels: int = 128, imagenet_init: bool = False, ablation: str = "none"):
        """`ablation`: the paper's Tab. 5 variants, applied in training and inference alike:
        no_reference zeroes the reference stream's features, no_previous the guidance mask."""
        super().__init__()
        if ablation not in RGMP_ABLATIONS:
            raise ValueError(f"ablation must be one of {RGMP_ABLATIONS}, not '{ablation}'")
        self.ablation = ablation
        self.encoder = MaskEncoder(imagenet_init)
        self.decoder = RGMPDecoder(self.encoder.channels, channels)

    def reference(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The reference stream's deepest level (kept per target)."""
        return self.encoder(images, masks)[-1]

    def forward(self, reference_top: torch.Tensor, images: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """One target-stream pass: logits (B, 2, H/4, W/4); `previous` (B, 1, H, W) the guidance."""
        if self.ablation == "no_reference":
            reference_top = torch.zeros_like(reference_top)
        elif self.ablation == "no_previous":
            previous = torch.zeros_like(previous)
        return self.decoder(reference_top, self.encoder(images, previous))


def soft_aggregate(foreground: torch.Tensor) -> torch.Tensor:
    """RGMP's Eq. 1: per-object foreground probabilities (M, ...) -> (M + 1, ...) summing to one
    (index 0 the background, whose own probability is that no object is there: prod(1 - p)).
    Each output is its input's odds over the sum of all odds."""
    background = torch.prod(1 - foreground, dim=0, keepdim=True)
    p = torch.cat([background, foreground]).clamp(1e-7, 1 - 1e-7)
    odds = p / (1 - p)
    return odds / odds.sum(0, keepdim=True)
