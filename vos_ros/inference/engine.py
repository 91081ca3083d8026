"""The streaming engine: one `Tracker` holds the targets, one `step()` per frame.

Per frame: the method (inference/methods; DTN by default) proposes each target's mask
probabilities, the status policy (inference/targets.py) merges them into one label map
and updates each target, the method refreshes its own state of the targets found.
Lost targets are searched for (inference/lost_search.py); first-frame adaptation
(inference/adaptation.py) refits the method's networks when targets are added.

Thread safety: `step`, `add_targets`, `remove_targets` and `reset` are called from one
thread (the ROS node's worker); live settings (`set_theta_c`) may be set from any
thread and take effect at the next step.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch

from ..backends import Backend, BackendUnavailable
from ..config import EngineConfig, load_config
from ..model.dtn import DTN
from ..model.geometry import mask_box
from .adaptation import AdaptationReport, AdaptationRunner
from .methods import Method, method_class
from .methods.dtn import DTNMethod
from .targets import Target, update_targets
from .types import EngineInputError, FrameResult, Stream

MAX_LABEL = 65535  # ids must fit the uint16 label map


class Tracker:
    """Video object segmentation and tracking, streaming, ROS-free."""

    def __init__(self, config: EngineConfig, method: Method):
        self.config = config
        self.method = method
        self._targets: dict[int, Target] = {}
        self._prev_frame = None  # the method's `prepare` of the last frame
        self._frame_size: tuple[int, int] | None = None  # (width, height)
        self._live_lock = threading.Lock()
        self._live_theta_c: float | None = None  # set from another thread, applied at the next step

    @classmethod
    def from_config(
        cls, config: EngineConfig | str = "cpu", weights: str | None = None, device: str | None = None,
        untrained: bool = False, backend: str = "torch", precision: str | None = None, cache_dir: str | None = None,
    ) -> "Tracker":
        """Build the config's method (`method:`), load its weights (the config's shipped file unless
        `weights` is given), and hand its networks to `backend` (torch | onnxruntime | tensorrt).

        `untrained=True` is an explicit opt-in to ImageNet backbone + randomly initialised
        heads (seeded), for development before weights exist; a missing or corrupt weights
        file is otherwise always an error. The device defaults to the config's, and to cuda
        for tensorrt. A backend, package or GPU that is not there raises BackendUnavailable.
        """
        cfg = load_config(config) if isinstance(config, str) else config
        kind = method_class(cfg)
        device = device or ("cuda" if backend == "tensorrt" else cfg.device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            hint = "backend tensorrt needs a CUDA GPU" if backend == "tensorrt" else "use device cpu"
            raise BackendUnavailable(f"device '{device}' requested but CUDA is not available ({hint})")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        return cls(cfg, kind.from_config(cfg, weights, device, untrained, backend, precision, cache_dir))

    @classmethod
    def from_model(cls, config: EngineConfig, model: DTN, backend: str = "torch", device: str = "cpu",
                   precision: str | None = None, cache_dir: str | None = None) -> "Tracker":
        """A tracker running DTN networks `model` (weights loaded, on the CPU) behind `backend`."""
        return cls(config, DTNMethod.from_model(config, model, backend, device, precision, cache_dir))

    @classmethod
    def from_backend(cls, config: EngineConfig, backend: Backend) -> "Tracker":
        """A tracker on DTN networks already behind `backend` (no first-frame adaptation)."""
        return cls(config, DTNMethod(config, backend))

    @property
    def backend(self) -> Backend:
        return self.method.backend

    @property
    def device(self) -> torch.device:
        return self.method.backend.device

    def warm_up(self, width: int = 854, height: int = 480) -> None:
        """One add + step on a blank frame, then reset: the first real frame then runs at full speed
        (PyTorch allocates and picks kernels lazily). Only before any target is added."""
        if self._targets:
            raise EngineInputError("warm_up() is for an idle tracker; it would reset the current targets")
        frame = np.full((height, width, 3), 127, np.uint8)
        labels = np.zeros((height, width), np.uint16)
        labels[height // 3:2 * height // 3, width // 3:2 * width // 3] = 1
        self._add_targets(frame, labels, (), adapt=False)
        self.step(frame)
        self.reset()

    # ------------------------------------------------------------ live settings
    @property
    def theta_c(self) -> float:
        """The decision threshold in use (or set for the next step)."""
        with self._live_lock:
            return self._live_theta_c if self._live_theta_c is not None else self.config.decision.theta_c

    def set_theta_c(self, value: float) -> None:
        """Thread-safe: the decision threshold from the next step on."""
        if not 0.0 <= value <= 1.0:
            raise EngineInputError(f"theta_c must be in [0, 1], got {value}")
        with self._live_lock:
            self._live_theta_c = float(value)

    def _apply_live_settings(self) -> None:
        with self._live_lock:
            if self._live_theta_c is not None:
                self.config.decision.theta_c, self._live_theta_c = self._live_theta_c, None

    # ------------------------------------------------------------------ targets
    @property
    def target_ids(self) -> list[int]:
        return sorted(self._targets)

    def reset(self) -> None:
        """Forget every target; adapted networks go back to the offline weights (with background
        adaptation this waits for a fit still running)."""
        if self.adaptation is not None:
            self.adaptation.reset()
        self.method.reset()
        self._targets.clear()
        self._prev_frame = None
        self._frame_size = None

    def remove_targets(self, ids: Iterable[int]) -> list[int]:
        ids = [int(i) for i in ids]
        unknown = sorted(set(ids) - set(self._targets))
        if unknown:
            raise EngineInputError(f"unknown target ids {unknown}; tracked ids are {self.target_ids}")
        for i in ids:
            del self._targets[i]
        self.method.remove(ids)
        if self.adaptation is not None:
            self.adaptation.remove(ids)
        return sorted(set(ids))

    def add_targets(self, image: np.ndarray, labels: np.ndarray, later_frames: Sequence[np.ndarray] = ()) -> list[int]:
        """Start tracking the objects of label map `labels` (pixel = id), drawn on `image`.

        `later_frames` are the frames after `image` up to the live one (oldest
        first); only the new targets are propagated through them, so they catch
        up while the other targets stay as they are. Re-adding an id restarts it.
        With first-frame adaptation on, this call also refits the MRN (seconds on a
        CPU; `last_adaptation` reports it), or with `adaptation.background` starts the
        refit and returns: `step()` swaps the adapted MRN in when it is ready.
        """
        return self._add_targets(image, labels, later_frames, adapt=True)

    @torch.inference_mode()
    def _add_targets(self, image: np.ndarray, labels: np.ndarray, later_frames: Sequence[np.ndarray],
                     adapt: bool) -> list[int]:
        width, height = self._check_image(image, allow_new_size=not self._targets)
        self._apply_live_settings()
        for frame in later_frames:
            self._check_image(frame, allow_new_size=False, expected=(width, height))
        labels = np.asarray(labels)
        ids = self._check_labels(labels, width, height)
        if adapt and self.adaptation is not None:
            self.adaptation.start(image, labels, ids)
        masks = [labels == i for i in ids]
        mask_size = self._mask_size(width, height)
        new = [Target(id=i, prev_mask=cv2.resize(m.astype(np.float32), mask_size, interpolation=cv2.INTER_AREA),
                      box=mask_box(m), ref_area=float(m.sum())) for i, m in zip(ids, masks)]
        self.method.start(image, new, masks)
        frame = self.method.prepare(image)
        for later in later_frames:
            next_frame = self.method.prepare(later)
            self._track(new, later, frame, next_frame)
            frame = next_frame
        self._targets.update({t.id: t for t in new})
        self._prev_frame, self._frame_size = frame, (width, height)
        return ids

    # -------------------------------------------------------------------- step
    @torch.inference_mode()
    def step(self, image: np.ndarray) -> FrameResult:
        """Segment and track every target in the next frame (RGB uint8, H x W x 3)."""
        width, height = self._check_image(image, allow_new_size=not self._targets)
        self._apply_live_settings()
        if self.adaptation is not None:
            self.adaptation.swap_ready()
        frame = self.method.prepare(image)
        if not self._targets or self._prev_frame is None:
            self._prev_frame, self._frame_size = frame, (width, height)
            return FrameResult([], np.zeros((height, width), np.uint16), math.nan, Stream.BP, {})
        result = self._track([self._targets[i] for i in self.target_ids], image, self._prev_frame, frame)
        self._prev_frame = frame
        return result

    def _track(self, targets: list[Target], image: np.ndarray, previous, current) -> FrameResult:
        height, width = image.shape[:2]
        segmentation = self.method.segment(targets, image, previous, current)
        t0 = time.perf_counter()
        result, found = update_targets(segmentation, width, height, self.config.tracking,
                                       self.method.mask_threshold, self._mask_size(width, height))
        self.method.commit(segmentation, found)
        result.timings = {**segmentation.timings, "merge": time.perf_counter() - t0}
        return result

    # ------------------------------------------------------------ adaptation
    @property
    def adaptation(self) -> AdaptationRunner | None:
        """First-frame adaptation, when the config enables it and the backend can take new weights."""
        return self.method.adaptation

    @property
    def last_adaptation(self) -> AdaptationReport | None:
        """The fit now in use."""
        return self.adaptation.last if self.adaptation is not None else None

    @property
    def adaptation_pending(self) -> bool:
        """A background fit is running or done but not yet swapped in."""
        return self.adaptation is not None and self.adaptation.pending

    @property
    def adaptation_fitting(self) -> bool:
        """A background fit is running."""
        return self.adaptation is not None and self.adaptation.fitting

    def wait_for_adaptation(self) -> None:
        """Block until a background fit ends, and swap it in."""
        if self.adaptation is not None:
            self.adaptation.wait()

    # ------------------------------------------------------------------ checks
    def _mask_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) of the targets' previous masks."""
        return self.method.mask_shape(width, height)[::-1]

    def _check_image(self, image, allow_new_size: bool, expected: tuple[int, int] | None = None) -> tuple[int, int]:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise EngineInputError(f"image must be an H x W x 3 uint8 RGB array, got {desc}")
        height, width = image.shape[:2]
        if height < 16 or width < 16:
            raise EngineInputError(f"image {width}x{height} is too small (min 16x16)")
        expected = expected or (None if allow_new_size else self._frame_size)
        if expected is not None and (width, height) != expected:
            raise EngineInputError(
                f"image size {(width, height)} differs from the tracked stream's {expected}; reset() first"
            )
        return width, height

    def _check_labels(self, labels: np.ndarray, width: int, height: int) -> list[int]:
        """The ids of label map `labels`, checked against the image size and the id limits."""
        if labels.ndim != 2 or labels.shape != (height, width):
            raise EngineInputError(f"mask size {labels.shape[::-1]} does not match the image size {(width, height)}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise EngineInputError(f"mask must hold integer ids, got dtype {labels.dtype}")
        ids = [int(i) for i in np.unique(labels) if i != 0]
        if not ids:
            raise EngineInputError("mask has no object pixels (all zero)")
        if ids[0] < 0 or ids[-1] > MAX_LABEL:
            raise EngineInputError(f"object ids must be in 1..{MAX_LABEL}")
        total = len(set(self._targets) | set(ids))
        if total > self.config.tracking.max_objects:
            raise EngineInputError(f"{total} objects exceed tracking.max_objects={self.config.tracking.max_objects}")
        return ids
