"""Deployment backends for the four DTN networks: torch, ONNX Runtime, TensorRT (RGMP's and
LIP's networks: rgmp.py, lip.py, the same three).

`create_backend` is the one entry point; the engine only sees the `Backend`
interface (base.py). The ONNX graphs that onnxruntime and tensorrt run are
exported on first use into a cache folder keyed by the network digest
(onnx_export.py); TensorRT engines are cached beside them (tensorrt.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .base import PRECISIONS, Backend, BackendUnavailable

if TYPE_CHECKING:  # importing the package stays torch-free (the ROS node reads BACKENDS at start)
    import torch

    from ..config import EngineConfig
    from ..model.dtn import DTN

BACKENDS = ("torch", "onnxruntime", "tensorrt")

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "BackendUnavailable", "create_backend"]


def create_backend(
    name: str, model: DTN, config: EngineConfig, device: str | torch.device, precision: str | None = None,
    cache_dir: Path | None = None, calibration_inputs: Callable[[], dict[str, list]] | None = None,
    rebuild: bool = False,
) -> Backend:
    """The backend `name` for `model` (weights loaded, on the CPU).

    precision: torch fp32 (CPU) / fp16 (CUDA, the default there); onnxruntime fp32;
    tensorrt fp16 (default), fp32 or int8. cache_dir: ONNX graphs and engines
    (default $VOS_ROS_CACHE or ~/.cache/vos_ros). calibration_inputs / rebuild: tensorrt only.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not '{name}'")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not '{precision}'")
    if name == "torch":
        from .pytorch import TorchBackend

        return TorchBackend(model, device, precision)
    from .onnx_export import ensure_onnx

    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        if precision not in (None, "fp32"):
            raise ValueError(f"backend onnxruntime runs fp32 only, not {precision} (use tensorrt for fp16/int8)")
        return OnnxRuntimeBackend(ensure_onnx(model, config, cache_dir), device, config.threads)
    from .tensorrt import TensorRTBackend, require_tensorrt

    require_tensorrt(device)  # fail before the export when TensorRT or the GPU is missing
    return TensorRTBackend(ensure_onnx(model, config, cache_dir), config, device, precision or "fp16", cache_dir,
                           calibration_inputs, rebuild)
