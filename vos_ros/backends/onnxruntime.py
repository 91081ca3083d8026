"""The ONNX Runtime backend: one InferenceSession per exported graph.

CPU execution provider for device cpu; CUDA execution provider for device cuda
(the onnxruntime-gpu package). Tensors cross as numpy arrays: the engine's
geometry between the networks runs on the CPU either way. An adapted MRN
(first-frame adaptation) runs in a session of its own, made from a new export of
the MRN graph with the adapted weights (onnx_export.export_mrn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .base import Backend, BackendUnavailable
from .onnx_export import GRAPHS, GraphSpec, export_mrn, mrn_levels, read_manifest


def session_factory(device: str | torch.device, threads: int) -> tuple[Callable[[str | bytes], object], str]:
    """A function making an InferenceSession of a graph (file or bytes) for `device`, and its provider."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"backend onnxruntime needs the onnxruntime package ({exc})") from exc
    wanted = torch.device(device)
    provider = "CUDAExecutionProvider" if wanted.type == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise BackendUnavailable(f"backend onnxruntime on {wanted} needs {provider}, which this onnxruntime lacks "
                                 f"(available: {ort.get_available_providers()}; CUDA needs onnxruntime-gpu)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads  # 0 = ONNX Runtime's default (one per physical core)
    # No spin-waiting after a run: the engine's flow, RoIAlign and geometry run between the
    # network calls on the same cores, and spinning ONNX Runtime threads would slow them down.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    return (lambda graph: ort.InferenceSession(graph, options, providers=providers)), provider


def run_session(session, spec: GraphSpec, inputs) -> list[torch.Tensor]:
    """`inputs` (tensors, in the graph's input order) through a session as float32 host arrays."""
    feed = {name: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32) for name, t in zip(spec.inputs, inputs)}
    return [torch.from_numpy(out) for out in session.run(list(spec.outputs), feed)]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, folder: Path, device: str | torch.device = "cpu", threads: int = 0):
        manifest = read_manifest(folder)
        if manifest is None:
            raise BackendUnavailable(f"no complete ONNX export in {folder} (vos-ros export writes one)")
        self._session, self.provider = session_factory(device, threads)
        self._sessions = {name: self._session(str(Path(folder) / entry["file"]))
                          for name, entry in manifest["graphs"].items()}
        self._offline_mrn = self._sessions["mrn"]
        self.device = torch.device("cpu")  # inputs and outputs are host arrays
        self.folder = Path(folder)
        self.mrn_roi_sizes, self._backbone_channels = mrn_levels(manifest)

    @property
    def label(self) -> str:
        return f"onnxruntime fp32 ({self.provider})"

    def _run(self, graph: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        return run_session(self._sessions[graph], GRAPHS[graph], inputs)

    def backbone(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self._run("backbone", images)

    def decision(self, features: torch.Tensor) -> torch.Tensor:
        return self._run("decision", features)[0]

    def crpn_head(self, anchor_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, deltas = self._run("crpn_head", anchor_features)
        return logits, deltas

    def mrn(self, roi_features: list[torch.Tensor], priors: torch.Tensor) -> torch.Tensor:
        return self._run("mrn", *roi_features, priors)[0]

    def compile_mrn(self, mrn: torch.nn.Module):
        return self._session(export_mrn(mrn, self._backbone_channels))

    def use_mrn(self, compiled) -> None:
        self._sessions["mrn"] = self._offline_mrn if compiled is None else compiled
