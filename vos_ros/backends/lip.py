"""Backends for LIP's four graphs (model/lip.py): the backbone, the memory step, and the box
and mask trunks. The heads' last layers, fitted per video, and RoIAlign run in the method
(inference/methods/lip.py) on every backend alike; the hidden state enters and leaves each
memory step as tensors."""

from __future__ import annotations

from pathlib import Path

import torch

from ..model.backbone import STRIDES
from .base import BackendUnavailable
from .onnx_export import LIP_GRAPHS, LIP_SET, ensure_onnx, read_manifest
from .onnxruntime import run_session, session_factory
from .tensorrt import EngineSet, ShapeRange, frame_ranges, seed_method_precision, shape_profiles

LIP_STRIDE = STRIDES[-1]  # image sides are multiples of the deepest level's stride


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


class _ExportedLIP(TorchLIP):
    """The four graphs (onnx_export.LIP_GRAPHS) run by `_run`; the model stays for its
    class-agnostic last layers and the memory's zero state."""

    def _run(self, graph: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def backbone(self, images):
        return self._run("lip_backbone", images)

    def memory(self, levels, hidden):
        out = self._run("lip_memory", *levels, *hidden)
        return out[0:3], out[3:6], out[6:8]

    def box_trunk(self, pooled):
        return self._run("lip_box_trunk", pooled)[0]

    def mask_trunk(self, pooled, shortcut):
        return self._run("lip_mask_trunk", pooled, shortcut)[0]


class OnnxRuntimeLIP(_ExportedLIP):
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


def lip_profiles(config, manifest: dict, rois: tuple[int, int, int]) -> dict[str, dict[str, ShapeRange]]:
    """TensorRT optimisation profiles: one frame at a time, up to 1080p, opt at the working height
    of a 16:9 frame; `rois`: the (min, opt, max) RoI count the method sends through the trunks."""
    sides = frame_ranges(config.lip.height, LIP_STRIDE)
    levels = {f"{axis}{stride}": tuple(v * (LIP_STRIDE // stride) for v in sides[axis])
              for axis in ("rows", "cols") for stride in (8, 16, 32)}
    return shape_profiles(manifest, {"batch": (1, 1, 1), "height": sides["height"], "width": sides["width"],
                                     **levels, "rois": rois})


class TensorRTLIP(_ExportedLIP):
    name = "tensorrt"

    def __init__(self, folder: Path, model: torch.nn.Module, config, rois: tuple[int, int, int],
                 device: str | torch.device = "cuda", precision: str = "fp16", cache_dir: Path | None = None):
        manifest = read_manifest(folder, LIP_SET)
        if manifest is None:
            raise BackendUnavailable(f"no complete LIP ONNX export in {folder}")
        self._engines = EngineSet(folder, manifest, LIP_GRAPHS, lip_profiles(config, manifest, rois), device,
                                  precision, cache_dir)
        self.device, self.precision, self.built = self._engines.device, precision, self._engines.built
        self.model = model.to(self.device).eval()

    @property
    def label(self) -> str:
        return f"tensorrt {self.precision} ({self._engines.gpu_name})"

    def _run(self, graph: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        return self._engines.runners[graph](*inputs)


def create_lip_backend(name: str, model: torch.nn.Module, config, device: str, precision: str | None,
                       cache_dir: Path | None, rois: tuple[int, int, int]) -> TorchLIP:
    """torch or onnxruntime (fp32), tensorrt (fp16, the default there, or fp32); the graphs are
    exported into the cache on first use, TensorRT engines built from them cached beside them.
    `rois`: the (min, opt, max) RoI count the method sends through the trunks (TensorRT's profile)."""
    precision = seed_method_precision("lip", name, precision, device)
    if name == "torch":
        return TorchLIP(model, device)
    if name == "onnxruntime":
        return OnnxRuntimeLIP(ensure_onnx(model, config, cache_dir, LIP_SET), model, device, config.threads)
    return TensorRTLIP(ensure_onnx(model, config, cache_dir, LIP_SET), model, config, rois, device, precision, cache_dir)
