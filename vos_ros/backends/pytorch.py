"""The torch backend: the DTN modules themselves, on the CPU (fp32) or a CUDA GPU (fp16 by default)."""

from __future__ import annotations

import torch

from ..model.dtn import DTN
from .base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: DTN, device: str | torch.device = "cpu", precision: str | None = None):
        self.device = torch.device(device)
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"backend torch runs fp32 or fp16, not {self.precision} (int8 needs --backend tensorrt)")
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("backend torch runs fp16 only on a CUDA device (CPU half-precision convolutions are slow)")
        # Half weights once (autocast would re-cast the weights on every call); the engine's
        # geometry stays fp32: inputs are cast down here and outputs back up.
        self._dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.model = model.to(self.device, self._dtype).eval()
        self.mrn_roi_sizes = self.model.mrn.roi_sizes
        self._offline_mrn = self.compile_mrn(self.model.mrn)

    def _in(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, self._dtype)

    def backbone(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [level.float() for level in self.model.backbone(self._in(images))]

    def decision(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.decision(self._in(features)).float()

    def crpn_head(self, anchor_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, deltas = self.model.crpn(self._in(anchor_features))
        return logits.float(), deltas.float()

    def mrn(self, roi_features: list[torch.Tensor], priors: torch.Tensor) -> torch.Tensor:
        return self.model.mrn([self._in(f) for f in roi_features], self._in(priors)).float()

    def compile_mrn(self, mrn: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().to(self.device, self._dtype, copy=True) for k, v in mrn.state_dict().items()}

    def use_mrn(self, compiled: dict[str, torch.Tensor] | None) -> None:
        self.model.mrn.load_state_dict(self._offline_mrn if compiled is None else compiled)
