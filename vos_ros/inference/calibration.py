"""INT8 calibration clips tracked with the torch networks, recording what each graph is fed
(backends/calibration.py regroups the recordings into TensorRT's calibration batches)."""

from __future__ import annotations

import copy
from typing import Iterable

import numpy as np
import torch

from ..backends.calibration import RecordingBackend
from ..backends.pytorch import TorchBackend
from ..config import EngineConfig
from ..model.dtn import DTN
from .engine import Tracker
from .video import segment_video

Clip = tuple[Iterable[np.ndarray], np.ndarray]  # frames (RGB uint8), first frame's label map


def record_network_inputs(model: DTN, config: EngineConfig, clips: Iterable[Clip],
                          device: str | torch.device = "cpu") -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """Track each clip with the torch networks (fp32) and return every graph's recorded inputs."""
    config = copy.deepcopy(config)
    config.decision.theta_c = 1.0  # BR on every frame, so that the CRPN head sees as many inputs as the MRN
    recorder = RecordingBackend(TorchBackend(model, device, "fp32"))
    tracker = Tracker.from_backend(config, recorder)
    for frames, first_labels in clips:
        segment_video(tracker, frames, first_labels)
    empty = [graph for graph, samples in recorder.samples.items() if not samples]
    if empty:
        raise ValueError(f"the calibration frames gave no input to {empty}: "
                         "give frames with a visible first-frame target")
    return recorder.samples
