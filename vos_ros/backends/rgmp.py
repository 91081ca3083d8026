"""Backends for RGMP's two passes (model/rgmp.py): the reference stream, and a target-stream
pass with the decoder. Tensors in, tensors out, as the DTN backends (base.py); the method
(inference/methods/rgmp.py) keeps the state and the aggregation."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BackendUnavailable
from .onnx_export import RGMP_GRAPHS, RGMP_SET, ensure_onnx, read_manifest
from .onnxruntime import run_session, session_factory


class TorchRGMP:
    name = "torch"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module, device: str | torch.device):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @property
    def label(self) -> str:
        return f"torch fp32 ({self.device})"

    def reference(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] and (B, 1, H, W) masks, H and W multiples of 32 -> (B, 320, H/32, W/32)."""
        return self.model.reference(images, masks)

    def propagate(self, references: torch.Tensor, images: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """References, frames and guidance masks -> 2-channel logits (B, 2, H/4, W/4)."""
        return self.model(references, images, guidance)


class OnnxRuntimeRGMP(TorchRGMP):
    """The two passes as ONNX Runtime sessions of the exported graphs (onnx_export.RGMP_GRAPHS)."""

    name = "onnxruntime"

    def __init__(self, folder: Path, device: str | torch.device = "cpu", threads: int = 0):
        manifest = read_manifest(folder, RGMP_SET)
        if manifest is None:
            raise BackendUnavailable(f"no complete RGMP ONNX export in {folder}")
        make_session, self.provider = session_factory(device, threads)
        self._sessions = {name: make_session(str(Path(folder) / entry["file"]))
                          for name, entry in manifest["graphs"].items()}
        self.device = torch.device("cpu")  # inputs and outputs are host arrays
        self.folder = Path(folder)

    @property
    def label(self) -> str:
        return f"onnxruntime fp32 ({self.provider})"

    def _run(self, graph: str, *inputs: torch.Tensor) -> torch.Tensor:
        return run_session(self._sessions[graph], RGMP_GRAPHS[graph], inputs)[0]

    def reference(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self._run("rgmp_reference", images, masks)

    def propagate(self, references: torch.Tensor, images: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        return self._run("rgmp_propagate", references, images, guidance)


def create_rgmp_backend(name: str, model: torch.nn.Module, config, device: str, precision: str | None,
                        cache_dir: Path | None) -> TorchRGMP:
    """torch (fp32) or onnxruntime (fp32, graphs exported into the cache on first use)."""
    if precision not in (None, "fp32"):
        raise BackendUnavailable(f"method rgmp runs fp32 only so far, not {precision}")
    if name == "torch":
        return TorchRGMP(model, device)
    if name == "onnxruntime":
        return OnnxRuntimeRGMP(ensure_onnx(model, config, cache_dir, RGMP_SET), device, config.threads)
    raise BackendUnavailable(f"method rgmp runs on torch or onnxruntime, not {name} (no TensorRT build for it yet)")
