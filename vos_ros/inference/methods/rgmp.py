"""RGMP (shared/seeds/001) behind the method seam: reference-guided mask propagation.

Per frame, each target's network pass sees the frame with that target's guidance mask
(the target stream) and the target's first-frame encoding (the reference stream, made
once in `start`); the per-target probabilities are aggregated over the targets by the
paper's softmax aggregation (Eq. 1), and the aggregated, not binarised, probability is
each target's next guidance (RGMP §3.3). No optical flow, no boxes.

Choices where the paper is silent:
- The engine's status policy applies as for every method. A target it finds keeps its
  aggregated probability as guidance; one it does not (lost: an empty guidance, RGMP's
  "-Prev" input, so the reference stream alone finds it again; or held behind another
  target) takes the mask the engine keeps for it.
- Frames are resized to `rgmp.height` rows (the training resolution: DAVIS 480p at half
  size; a 240p camera stays as it is) and padded (edge pixels repeated) to multiples of 32; the probabilities come back to the frame bilinearly.
- The reported stream is BP: the mask is propagated, nothing is re-identified.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...backends.rgmp import TorchRGMP, create_rgmp_backend
from ...config import EngineConfig
from ...model.backbone import STRIDES
from ...model.flow import flow_shape
from ...model.rgmp import RGMP, soft_aggregate
from ...model.weights import load_weights, weights_path
from ..targets import FrameSegmentation, Segment, Target
from ..types import Stream
from .base import Method

STRIDE = STRIDES[-1]  # the encoder's total stride: input sizes are padded to its multiples


@dataclass
class RGMPState:
    references: list[torch.Tensor]  # the reference stream's deepest level, one per inference scale
    guidance: torch.Tensor  # (1, 1, h, w) at the working resolution: the last aggregated probability


@dataclass
class WorkingFrame:
    image: torch.Tensor  # (1, 3, h, w) RGB in [0, 1] at the working resolution, unpadded


def load_rgmp(config: EngineConfig, weights: str | None = None, untrained: bool = False) -> RGMP:
    """The network with weights loaded (the config's `rgmp.weights` unless given), on the CPU."""
    torch.manual_seed(0)
    model = RGMP(config.rgmp.channels, imagenet_init=untrained, ablation=config.rgmp.ablation)
    if not untrained:
        load_weights(model, weights_path(weights or config.rgmp.weights), "RGMP", "vos-ros train-rgmp")
    return model.eval()


def padded(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`x` (N, C, h, w) resized by `scale` and padded (edges repeated) to multiples of STRIDE."""
    if scale != 1.0:
        h, w = x.shape[-2:]
        x = F.interpolate(x, size=(max(STRIDE, round(h * scale)), max(STRIDE, round(w * scale))), mode="bilinear",
                          align_corners=False)
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")


class RGMPMethod(Method):
    name = "rgmp"

    def __init__(self, config: EngineConfig, backend: TorchRGMP):
        self.config, self.backend = config, backend
        self.device = backend.device

    @classmethod
    def from_config(cls, config, weights=None, device="cpu", untrained=False, backend="torch", precision=None,
                    cache_dir=None) -> "RGMPMethod":
        model = load_rgmp(config, weights, untrained)
        return cls(config, create_rgmp_backend(backend, model, config, device, precision, cache_dir))

    def mask_shape(self, width: int, height: int) -> tuple[int, int]:
        return flow_shape(width, height, self.config.rgmp.height / height)

    def prepare(self, image: np.ndarray) -> WorkingFrame:
        h, w = self.mask_shape(image.shape[1], image.shape[0])
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return WorkingFrame(torch.from_numpy(small).to(self.device).permute(2, 0, 1)[None].float().div_(255.0))

    def start(self, image: np.ndarray, targets: list[Target], masks: list[np.ndarray]) -> None:
        frame = self.prepare(image)
        guidance = torch.stack([torch.from_numpy(t.prev_mask) for t in targets])[:, None].to(self.device)
        references = [self.backend.reference(padded(frame.image, s).expand(len(targets), -1, -1, -1),
                                             padded(guidance, s))
                      for s in self.config.rgmp.scales]
        for k, target in enumerate(targets):
            target.state = RGMPState([r[k:k + 1] for r in references], guidance[k:k + 1])

    def segment(self, targets: list[Target], image: np.ndarray, previous, current: WorkingFrame
                ) -> FrameSegmentation:
        t0 = time.perf_counter()
        h, w = current.image.shape[-2:]
        guidance = torch.cat([t.state.guidance for t in targets])
        foreground = torch.zeros((len(targets), h, w), device=self.device)
        for index, scale in enumerate(self.config.rgmp.scales):
            references = torch.cat([t.state.references[index] for t in targets])
            logits = self.backend.propagate(references, padded(current.image, scale).expand(len(targets), -1, -1, -1),
                                            padded(guidance, scale))
            size = (logits.shape[-2] * 4, logits.shape[-1] * 4)
            probs = F.interpolate(torch.softmax(logits.float(), 1)[:, 1:], size=size, mode="bilinear",
                                  align_corners=False)
            crop = (round(h * scale), round(w * scale))
            probs = probs[..., :crop[0], :crop[1]]
            if scale != 1.0:
                probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
            foreground += probs[:, 0] / len(self.config.rgmp.scales)
        timings = {"rgmp": time.perf_counter() - t0}
        t0 = time.perf_counter()
        aggregated = soft_aggregate(foreground)[1:]
        height, width = image.shape[:2]
        frame_probs = F.interpolate(aggregated[:, None], size=(height, width), mode="bilinear",
                                    align_corners=False)[:, 0].cpu().numpy()
        segments = [Segment(target=t, stream=Stream.BP, window=(frame_probs[k], (0, 0))) for k, t in enumerate(targets)]
        timings["aggregate"] = time.perf_counter() - t0
        return FrameSegmentation(segments, float("nan"), Stream.BP, timings, context=aggregated)

    def commit(self, frame: FrameSegmentation, found: list[Segment]) -> None:
        found_ids = {s.target.id for s in found}
        for k, segment in enumerate(frame.segments):
            target = segment.target
            if target.id in found_ids:
                target.state.guidance = frame.context[k][None, None]
            else:
                target.state.guidance = torch.from_numpy(target.prev_mask)[None, None].to(self.device)
