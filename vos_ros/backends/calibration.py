"""INT8 calibration data: the networks' real inputs, recorded while the torch networks track real frames.

Only the backbone sees frames; the DM, CRPN head and MRN see what the engine
makes of them (flow statistics, RoIAligned features, warped-mask priors). So the
calibration inputs of every graph are recorded from a torch run of the engine
over calibration clips (inference/calibration.py, through `RecordingBackend`),
regrouped into batches of the optimisation profile's opt shapes (TensorRT
calibrates at those), and handed to the calibrator as device pointers one
batch at a time.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .base import Backend
from .onnx_export import GRAPHS


class RecordingBackend(Backend):
    """Runs another backend and keeps a CPU copy of every call's inputs, per graph."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision
        self.mrn_roi_sizes = inner.mrn_roi_sizes
        self.samples: dict[str, list[tuple[torch.Tensor, ...]]] = {graph: [] for graph in GRAPHS}

    def _keep(self, graph: str, *tensors: torch.Tensor) -> None:
        self.samples[graph].append(tuple(t.detach().float().cpu() for t in tensors))

    def backbone(self, images):
        self._keep("backbone", images)
        return self.inner.backbone(images)

    def decision(self, features):
        self._keep("decision", features)
        return self.inner.decision(features)

    def crpn_head(self, anchor_features):
        self._keep("crpn_head", anchor_features)
        return self.inner.crpn_head(anchor_features)

    def mrn(self, roi_features, priors):
        self._keep("mrn", *roi_features, priors)
        return self.inner.mrn(roi_features, priors)

    def compile_mrn(self, mrn):
        return self.inner.compile_mrn(mrn)

    def use_mrn(self, compiled):
        self.inner.use_mrn(compiled)


def calibration_batches(samples: Sequence[tuple[torch.Tensor, ...]],
                        opt_shapes: Sequence[tuple[int, ...]]) -> list[tuple[torch.Tensor, ...]]:
    """Regroup recorded calls into batches of exactly the opt shapes.

    The rows of all calls are concatenated along the leading (dynamic) dimension and cut
    into opt-sized batches; the remainder is dropped. Spatial sizes that differ from the
    opt shape (full frames of another size) are resized bilinearly.
    """
    def fit(rows: torch.Tensor, opt: tuple[int, ...]) -> torch.Tensor:
        if rows.shape[1:2] != tuple(opt[1:2]):
            raise ValueError(f"recorded input of shape {tuple(rows.shape)} does not fit the profile's {tuple(opt)}")
        if rows.shape[2:] != tuple(opt[2:]):
            rows = F.interpolate(rows, size=tuple(opt[2:]), mode="bilinear", align_corners=False)
        return rows

    columns = [torch.cat([fit(call[i], tuple(opt)) for call in samples]) for i, opt in enumerate(opt_shapes)]
    per_batch = opt_shapes[0][0]
    count = columns[0].shape[0] // per_batch
    if count == 0:
        raise ValueError(f"{columns[0].shape[0]} recorded rows are fewer than one batch of {per_batch}")
    return [tuple(c[j * per_batch:(j + 1) * per_batch] for c in columns) for j in range(count)]


class BatchFeeder:
    """Hands the calibrator one batch at a time as device pointers, in the order of the names it asks for.

    The current batch's device copies stay referenced until the next request, as TensorRT
    reads them after get_batch returns.
    """

    def __init__(self, batches: Sequence[tuple[torch.Tensor, ...]], input_names: Sequence[str],
                 device: str | torch.device):
        self._batches = iter(batches)
        self._names = tuple(input_names)
        self._device = torch.device(device)
        self._current: dict[str, torch.Tensor] = {}

    def next_pointers(self, names: Sequence[str]) -> list[int] | None:
        batch = next(self._batches, None)
        if batch is None:
            self._current = {}
            return None
        self._current = {n: t.to(self._device, torch.float32).contiguous() for n, t in zip(self._names, batch)}
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)  # TensorRT reads them on its own stream
        return [self._current[n].data_ptr() for n in names]
