"""Backends for RGMP's two passes (model/rgmp.py): the reference stream, and a target-stream
pass with the decoder. Tensors in, tensors out, as the DTN backends (base.py); the method
(inference/methods/rgmp.py) keeps the state and the aggregation."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BackendUnavailable
from .onnx_export import RGMP_GRAPHS, RGMP_SET, RGMP_STRIDE, ensure_onnx, read_manifest
from .onnxruntime import run_session, session_factory
from .tensorrt import EngineSet, ShapeRange, frame_ranges, object_range, seed_method_precision, shape_profiles


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


class _ExportedRGMP(TorchRGMP):
    """The two passes run as exported graphs (onnx_export.RGMP_GRAPHS) by `_run`."""

    def _run(self, graph: str, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self._run("rgmp_reference", images, masks)

    def propagate(self, references: torch.Tensor, images: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        return self._run("rgmp_propagate", references, images, guidance)


class OnnxRuntimeRGMP(_ExportedRGMP):
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


def rgmp_profiles(config, manifest: dict) -> dict[str, dict[str, ShapeRange]]:
    """TensorRT optimisation profiles: one pass per object, frames up to 1080p, opt at the
    working height (its largest scale) of a 16:9 frame."""
    rows = round(config.rgmp.height * max(config.rgmp.scales))
    return shape_profiles(manifest, {"batch": object_range(config), **frame_ranges(rows, RGMP_STRIDE)})


class TensorRTRGMP(_ExportedRGMP):
    name = "tensorrt"

    def __init__(self, folder: Path, config, device: str | torch.device = "cuda", precision: str = "fp16",
                 cache_dir: Path | None = None):
        manifest = read_manifest(folder, RGMP_SET)
        if manifest is None:
            raise BackendUnavailable(f"no complete RGMP ONNX export in {folder}")
        self._engines = EngineSet(folder, manifest, RGMP_GRAPHS, rgmp_profiles(config, manifest), device, precision,
                                  cache_dir)
        self.device, self.precision, self.built = self._engines.device, precision, self._engines.built

    @property
    def label(self) -> str:
        return f"tensorrt {self.precision} ({self._engines.gpu_name})"

    def _run(self, graph: str, *inputs: torch.Tensor) -> torch.Tensor:
        return self._engines.runners[graph](*inputs)[0]


def create_rgmp_backend(name: str, model: torch.nn.Module, config, device: str, precision: str | None,
                        cache_dir: Path | None) -> TorchRGMP:
    """torch or onnxruntime (fp32), tensorrt (fp16, the default there, or fp32); the graphs are
    exported into the cache on first use, TensorRT engines built from them cached beside them."""
    precision = seed_method_precision("rgmp", name, precision, device)
    if name == "torch":
        return TorchRGMP(model, device)
    if name == "onnxruntime":
        return OnnxRuntimeRGMP(ensure_onnx(model, config, cache_dir, RGMP_SET), device, config.threads)
    return TensorRTRGMP(ensure_onnx(model, config, cache_dir, RGMP_SET), config, device, precision, cache_dir)
