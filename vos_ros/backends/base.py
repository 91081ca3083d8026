"""The interface the engine calls for the four DTN networks, whatever runs them.

The engine keeps every piece of geometry (region crops, RoIAlign, anchors, box
decoding, NMS, Eq. 2 matching, warping) and all per-object state; a backend
only maps tensors to tensors, so a torch module, an ONNX Runtime session and a
TensorRT engine are interchangeable. Inputs and outputs are float32 torch
tensors on `backend.device` (a backend converts to its own precision inside).
The leading dimension of every input is dynamic: the number of objects (DM,
MRN), of anchors (CRPN head) or of target regions (backbone).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only with a backend, so the ROS node can import the names cheaply
    import torch

PRECISIONS = ("fp32", "fp16", "int8")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message names what is missing (package, GPU, file)."""


class Backend(ABC):
    name: str  # torch | onnxruntime | tensorrt
    device: torch.device  # where the engine keeps the tensors it passes in
    precision: str  # fp32 | fp16 | int8
    mrn_roi_sizes: tuple[int, ...]  # RoIAlign output size per level (Res2..Res5) that the MRN expects

    @property
    def label(self) -> str:
        """One line for logs and diagnostics, e.g. 'onnxruntime fp32 (CPUExecutionProvider)'."""
        return f"{self.name} {self.precision} ({self.device})"

    @abstractmethod
    def backbone(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> four levels (strides 4, 8, 16, 32)."""

    @abstractmethod
    def decision(self, features: torch.Tensor) -> torch.Tensor:
        """(K, NUM_FEATURES) DM input -> (K,) confidence in [0, 1]."""

    @abstractmethod
    def crpn_head(self, anchor_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C4, r, r) RoIAligned anchors -> objectness logits (N,), box deltas (N, 4)."""

    @abstractmethod
    def mrn(self, roi_features: list[torch.Tensor], priors: torch.Tensor) -> torch.Tensor:
        """Levels 2..5 (K, C_j, m_j, m_j) and priors (K, 2, M, M: warped previous mask, appearance match) -> mask logits (K, 1, M, M)."""

    @abstractmethod
    def compile_mrn(self, mrn: torch.nn.Module) -> object:
        """`mrn` (an MRN module, its correction scale set for inference) in the form `use_mrn`
        swaps in: first-frame adaptation (inference/adaptation.py) calls it where the fit runs,
        in the background with adaptation.background, so a slow compile costs no frame."""

    @abstractmethod
    def use_mrn(self, compiled: object | None) -> None:
        """Run the MRN `compile_mrn` made from now on; None: the weights the backend was built with."""
