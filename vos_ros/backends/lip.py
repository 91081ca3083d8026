"""Backends for LIP's four graphs (model/lip.py): the backbone, the memory step, and the box
and mask trunks. The heads' last layers, fitted per video, and RoIAlign run in the method
(inference/methods/lip.py) on every backend alike; the hidden state enters and leaves each
memory step as tensors."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BackendUnavailable
from .onnx_export import LIP_GRAPHS, LIP_SET, ensure_onnx, read_manifest
from .onnxruntime import run_session, session_factory


class TorchLIP:
    name = "torch"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module, device: str | torch.device):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()  # its class-agnostic last layers seed the fits

    @property
    def label(self) -> str:
        return f"torch fp32 ({self.device})"

    def backbone(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(1, 3, H, W) RGB in [0, 1], sides multiples of 32 -> four levels (strides 4 ... 32)."""
        return self.model.backbone(images)

    def memory(self, levels: list[torch.Tensor], hidden: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        """Levels 8, 16, 32 and hidden states -> (new hidden, propagated levels, [heatmap, size])."""
        new_hidden, propagated, heatmap, size = self.model.memory(levels, hidden)
        return new_hidden, propagated, [heatmap, size]

    def box_trunk(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.box_trunk(pooled)

    def mask_trunk(self, pooled: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return self.model.mask_trunk(pooled, shortcut)


class OnnxRuntimeLIP(TorchLIP):
    """The four graphs as ONNX Runtime sessions (onnx_export.LIP_GRAPHS)."""

    name = "onnxruntime"

    def __init__(self, folder: Path, model: torch.nn.Module, device: str | torch.device = "cpu", threads: int = 0):
        manifest = read_manifest(folder, LIP_SET)
        if manifest is None:
            raise BackendUnavailable(f"no complete LIP ONNX export in {folder}")
        make_session, self.provider = session_factory(device, threads)
        self._sessions = {name: make_session(str(Path(folder) / entry["file"]))
                          for name, entry in manifest["graphs"].items()}
        self.device = torch.device("cpu")  # inputs and outputs are host arrays
        self.model = model.eval()
        self.folder = Path(folder)

    @property
    def label(self) -> str:
        return f"onnxruntime fp32 ({self.provider})"

    def _run(self, graph: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        return run_session(self._sessions[graph], LIP_GRAPHS[graph], inputs)

    def backbone(self, images):
        return self._run("lip_backbone", images)

    def memory(self, levels, hidden):
        out = self._run("lip_memory", *levels, *hidden)
        return out[0:3], out[3:6], out[6:8]

    def box_trunk(self, pooled):
        return self._run("lip_box_trunk", pooled)[0]

    def mask_trunk(self, pooled, shortcut):
        return self._run("lip_mask_trunk", pooled, shortcut)[0]


def create_lip_backend(name: str, model: torch.nn.Module, config, device: str, precision: str | None,
                       cache_dir: Path | None) -> TorchLIP:
    """torch (fp32) or onnxruntime (fp32, graphs exported into the cache on first use)."""
    if precision not in (None, "fp32"):
        raise BackendUnavailable(f"method lip runs fp32 only so far, not {precision}")
    if name == "torch":
        return TorchLIP(model, device)
    if name == "onnxruntime":
        return OnnxRuntimeLIP(ensure_onnx(model, config, cache_dir, LIP_SET), model, device, config.threads)
    raise BackendUnavailable(f"method lip runs on torch or onnxruntime, not {name} (no TensorRT build for it yet)")
