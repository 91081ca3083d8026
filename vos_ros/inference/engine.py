"""The streaming DTN engine: one object holds the state, one `step()` per frame.

Per frame (DTN §3.1-3.3): backward flow to the previous frame; each target's
previous mask is warped (BP box and MRN prior); the decision module scores the
frame; if the confidence is at most theta_c the conditional RPN re-identifies
every target (BR), otherwise the BP boxes are used; the MRN segments each box;
the per-target maps are merged into one label map, which also becomes the next
frame's previous masks (as RGMP passes on its merged result).

Choices where the paper is silent (documented per item):
- An empty warped mask (BP impossible) sends that target through BR.
- A target whose mask vanishes (area or confidence too low), or no longer looks
  like its first frame (mean appearance match over the mask too low), is LOST: it keeps
  its first-frame and last embeddings, outputs an empty mask, and is searched
  for by BR every frame: `full_frame` widens the anchor grid each lost frame;
  `target_region` scans the frame with tiles at the target's own scale, one tile
  per frame, every other frame the one where it was last seen, the others nearest
  first, anchors over the whole tile; both at the size the
  target had when last seen whole. Its candidates are ranked by their mean
  first-frame appearance match (its Eq. 2 embeddings are stale by then); it is
  re-acquired only when the best candidate's match, and then the match over the
  mask the MRN finds there, reach the target's re-acquisition bar (status
  REIDENTIFIED for that frame): `reacquire_appearance`, lower for objects that
  matched their first frame less well while tracked (`reacquire_ratio`: a fixed
  bar lost a real occluded rider for good).
- A target hidden by another target (it turns occluded while the others cover
  `occluder_cover` of the last mask it had whole) is held where it was last seen
  whole, not moved by the flow (the flow there is the occluder's): for up to
  `occluder_hold_frames` frames it is OCCLUDED, the MRN segments that place with
  that mask as prior, and it keeps the pixels it finds there that are outside
  the other targets' warped masks (the occluder stays in front where it goes).
  An object that stays put behind a passing one is then found in place, which
  the lost search's appearance ranking failed to do between two alike dogs.
- A re-acquired target has no warped prior; the MRN gets a box prior instead
  (ones inside the candidate box).
- The MRN's second prior is the first-frame appearance match (model/match.py):
  each target keeps its first-frame RoI matching features and mask.
- Per-target state is a fixed set of vectors, one flow-resolution mask and one
  RoI-sized reference: memory does not grow with video length.

The networks run behind a deployment backend (vos_ros.backends: torch, ONNX
Runtime, TensorRT); everything between them (geometry, RoIAlign, matching,
state) runs here as torch ops on the backend's device.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch

from ..backends import Backend, BackendUnavailable, create_backend
from ..config import EngineConfig, TrackingConfig, load_config
from ..model.crpn import MATCH_LEVEL, MATCH_STRIDE, conditional_anchors, embed, match_distance, propose, rois, select_candidates
from ..model.decision import flow_features, photometric_warp_error
from ..model.dtn import DTN, load_dtn
from ..model.flow import MaskWarp, build_flow, flow_shape
from ..model.geometry import (Box, Region, box_center, box_prior, box_size, clip_box, crop_roi, enlarge_box, mask_box,
                              paste_roi)
from ..model.match import appearance_match, match_features
from ..model.memory import memory_readout, stack_memories
from ..model.mrn import roi_levels
from .adaptation import AdaptationReport, MRNAdapter
from .merge import merge_windows
from .types import EngineInputError, FrameResult, Stream, TargetResult, TargetStatus

MAX_LABEL = 65535  # ids must fit the uint16 label map
MAX_GROWTH_STEPS = 16  # lost-search growth stops here (1.5^16 is far past any frame)
LOST_CANDIDATES_FACTOR = 2  # a lost target ranks 2 x crpn.top_n candidates by appearance


def reacquire_bar(tracking: TrackingConfig, appearance_level: float | None) -> float:
    """The appearance match a lost target's candidate, or an occluded target's remnant, must reach:
    lower for a target that matched its first frame less well while tracked (`appearance_level`)."""
    if appearance_level is None:
        return tracking.reacquire_appearance
    return max(tracking.lost_appearance, min(tracking.reacquire_appearance, tracking.reacquire_ratio * appearance_level))


@dataclass
class _Target:
    id: int
    first_embedding: torch.Tensor  # f(T_1): Eq. 2's first-frame term
    prev_embedding: torch.Tensor  # f(T_{i-1})
    reference: torch.Tensor  # first-frame RoI matching features (C, S, S)
    reference_mask: torch.Tensor  # first-frame mask on the same grid (S, S)
    prev_mask: np.ndarray  # float32 at flow resolution
    box: Box  # last known box, frame pixels
    tracked_size: tuple[float, float]  # (w, h) of the last box seen whole (TRACKING): a lost search's scale
    score: float
    ref_area: float
    appearance_level: float | None = None  # smoothed mean appearance match while TRACKING
    whole_mask: np.ndarray | None = None  # prev_mask of the last frame it was seen whole: held behind another target
    whole_box: Box | None = None
    held_frames: int = 0  # frames held in place behind another target (0: not held)
    status: TargetStatus = TargetStatus.TRACKING
    frames_lost: int = 0
    # mrn.prior_match memory: (RoI matching features, published mask on that grid) of its last frames
    recent: deque = field(default_factory=deque)

    @property
    def follows_flow(self) -> bool:
        """Its previous mask is warped this frame: neither lost nor held in place."""
        return self.status != TargetStatus.LOST and not self.held_frames


@dataclass
class _Plan:
    """What one frame does for one target (filled stage by stage)."""

    target: _Target
    warped: np.ndarray | None = None
    bp_box: Box | None = None
    stream: Stream = Stream.BP
    region: Region | None = None
    view: int = 0
    roi_box: Box | None = None  # target RoI chosen by BP or BR (frame pixels)
    box_prior: bool = False  # use a box prior instead of the warped mask
    appearance: float = 1.0  # mean first-frame appearance match over the predicted mask
    match_features: torch.Tensor | None = None  # of its MRN RoI (C, S, S): its memory entry when found


class Tracker:
    """DTN video object segmentation, streaming, ROS-free."""

    def __init__(self, config: EngineConfig, backend: Backend, adapter: MRNAdapter | None = None):
        self.config = config
        self.backend = backend
        # First-frame adaptation (adaptation.py): refits the backend's MRN when targets are added.
        self.adapter = adapter
        self.last_adaptation: AdaptationReport | None = None  # the fit now in use
        # adaptation.background: one worker runs the adapter's calls in order; only the newest fit
        # is swapped in (a reset drops it).
        self._adaptation_worker: ThreadPoolExecutor | None = None
        self._pending_fit: Future | None = None
        self.device = backend.device
        self.flow = build_flow(config.flow.method, config.flow.preset, config.flow.scale)
        self._targets: dict[int, _Target] = {}
        self._prev_gray: np.ndarray | None = None
        self._frame_size: tuple[int, int] | None = None  # (width, height)

    @classmethod
    def from_config(
        cls, config: EngineConfig | str = "cpu", weights: str | None = None, device: str | None = None,
        untrained: bool = False, backend: str = "torch", precision: str | None = None, cache_dir: str | None = None,
    ) -> "Tracker":
        """Build networks and load weights (the config's shipped file unless `weights` is given),
        then hand them to `backend` (torch | onnxruntime | tensorrt; see vos_ros.backends).

        `untrained=True` is an explicit opt-in to ImageNet backbone + randomly
        initialised heads (seeded), for development before weights exist; a
        missing or corrupt weights file is otherwise always an error. The device
        defaults to the config's, and to cuda for tensorrt. A backend, package or
        GPU that is not there raises BackendUnavailable.
        """
        cfg = load_config(config) if isinstance(config, str) else config
        device = device or ("cuda" if backend == "tensorrt" else cfg.device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            hint = "backend tensorrt needs a CUDA GPU" if backend == "tensorrt" else "use device cpu"
            raise BackendUnavailable(f"device '{device}' requested but CUDA is not available ({hint})")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        return cls.from_model(cfg, load_dtn(cfg, weights, untrained), backend, device, precision, cache_dir)

    @classmethod
    def from_model(
        cls, config: EngineConfig, model: DTN, backend: str = "torch", device: str = "cpu",
        precision: str | None = None, cache_dir: str | None = None,
    ) -> "Tracker":
        """A tracker running `model` (weights loaded, on the CPU) behind `backend`, with first-frame
        adaptation when the config enables it and the backend can take new MRN weights."""
        # The adapter's MRN is copied before the backend moves and casts the model.
        offline_mrn = copy.deepcopy(model.mrn) if config.adaptation.iterations > 0 else None
        runner = create_backend(backend, model, config, device, precision, cache_dir)
        adapter = None
        if offline_mrn is not None and runner.takes_mrn_weights:
            adapter = MRNAdapter(config, offline_mrn, runner.device)
        return cls(config, runner, adapter)

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

    # ------------------------------------------------------------------ targets
    @property
    def target_ids(self) -> list[int]:
        return sorted(self._targets)

    def reset(self) -> None:
        """Forget every target; the MRN goes back to the offline weights (with background
        adaptation this waits for a fit still running)."""
        self._pending_fit = None
        if self.adapter is not None:
            self._adapter_call(self.adapter.clear).result()
            self.backend.load_mrn(self.adapter.network)  # the offline weights again
        self._targets.clear()
        self._prev_gray = None
        self._frame_size = None

    def remove_targets(self, ids: Iterable[int]) -> list[int]:
        ids = [int(i) for i in ids]
        unknown = sorted(set(ids) - set(self._targets))
        if unknown:
            raise EngineInputError(f"unknown target ids {unknown}; tracked ids are {self.target_ids}")
        for i in ids:
            del self._targets[i]
        if self.adapter is not None:  # the adapted MRN stays; the next refit leaves these out
            self._adapter_call(self.adapter.remove, ids)
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
        for frame in later_frames:
            self._check_image(frame, allow_new_size=False, expected=(width, height))
        labels = np.asarray(labels)
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

        if adapt and self.adapter is not None:
            self._pending_fit = self._adapter_call(self._adapt, image.copy(), labels.copy(), ids)
            self._swap_adapted_mrn()
        masks = {i: labels == i for i in ids}
        boxes = {i: mask_box(m) for i, m in masks.items()}
        regions = [self._region(boxes[i], width, height) for i in ids]
        features, views = self._features(image, regions)
        embeddings = self._embed(features, views, regions, [boxes[i] for i in ids])
        roi_boxes = [enlarge_box(boxes[i], self.config.mrn.box_margin) for i in ids]
        references = match_features(self._roi_features(features, views, regions, roi_boxes))
        size = references.shape[-1]
        fh, fw = flow_shape(width, height, self.config.flow.scale)
        new = {}
        for k, i in enumerate(ids):
            area = float(masks[i].sum())
            reference_mask = torch.from_numpy(crop_roi(masks[i].astype(np.float32), roi_boxes[k], size))
            new[i] = _Target(
                id=i, first_embedding=embeddings[k], prev_embedding=embeddings[k],
                reference=references[k], reference_mask=reference_mask.to(self.device),
                prev_mask=cv2.resize(masks[i].astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA),
                box=boxes[i], tracked_size=box_size(boxes[i]), score=1.0, ref_area=area,
                recent=deque(maxlen=self.config.mrn.memory_frames if self.config.mrn.prior_match == "memory" else 0),
            )
            new[i].whole_mask, new[i].whole_box = new[i].prev_mask, new[i].box
        gray = self.flow.prepare(image)
        for frame in later_frames:
            next_gray = self.flow.prepare(frame)
            self._track(list(new.values()), frame, gray, next_gray)
            gray = next_gray
        self._targets.update(new)
        self._prev_gray, self._frame_size = gray, (width, height)
        return ids

    # -------------------------------------------------------------------- step
    @torch.inference_mode()
    def step(self, image: np.ndarray) -> FrameResult:
        """Segment and track every target in the next frame (RGB uint8, H x W x 3)."""
        width, height = self._check_image(image, allow_new_size=not self._targets)
        self._swap_adapted_mrn()
        gray = self.flow.prepare(image)
        if not self._targets or self._prev_gray is None:
            self._prev_gray, self._frame_size = gray, (width, height)
            return FrameResult([], np.zeros((height, width), np.uint16), math.nan, Stream.BP, {})
        result = self._track([self._targets[i] for i in self.target_ids], image, self._prev_gray, gray)
        self._prev_gray = gray
        return result

    # ------------------------------------------------------------ adaptation
    def _adapter_call(self, fn, *args) -> Future:
        """Run an adapter call now, or queued on the worker with adaptation.background."""
        if not self.config.adaptation.background:
            future = Future()
            future.set_result(fn(*args))
            return future
        if self._adaptation_worker is None:
            self._adaptation_worker = ThreadPoolExecutor(1, thread_name_prefix="vos_ros_adaptation")
        return self._adaptation_worker.submit(fn, *args)

    def _adapt(self, image: np.ndarray, labels: np.ndarray, ids: list[int]) -> tuple[AdaptationReport, torch.nn.Module]:
        """Pairs for `ids`, then a refit on every current target's pairs: the adapted MRN (a copy
        when fitted in the background, where the next fit may already be changing the adapter's)."""
        start = time.perf_counter()
        self.adapter.add(image, labels, ids, self.backend.backbone)
        report = self.adapter.fit()
        report.seconds = time.perf_counter() - start
        network = copy.deepcopy(self.adapter.network) if self.config.adaptation.background else self.adapter.network
        return report, network

    @property
    def adaptation_pending(self) -> bool:
        """A background fit is running or done but not yet swapped in."""
        return self._pending_fit is not None

    def wait_for_adaptation(self) -> None:
        """Block until a background fit ends, and swap it in."""
        if self._pending_fit is not None:
            self._pending_fit.result()
            self._swap_adapted_mrn()

    def _swap_adapted_mrn(self) -> None:
        if self._pending_fit is None or not self._pending_fit.done():
            return
        report, network = self._pending_fit.result()
        self._pending_fit = None
        self.backend.load_mrn(network)
        self.last_adaptation = report

    # --------------------------------------------------------------- internals
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

    def _region(self, box: Box, width: int, height: int) -> Region:
        if self.config.features.mode == "full_frame":
            return Region.full_frame(width, height)
        fc = self.config.features
        return Region.around(box, fc.region_scale, fc.region_min_side, float(max(width, height)), fc.region_size)

    @staticmethod
    def _search_box(target: _Target) -> Box:
        """Where a lost target is looked for first, at the size it had when last seen whole
        (its very last box may be a sliver of it, or a one-frame false re-identification)."""
        cx, cy = box_center(target.box)
        w, h = target.tracked_size
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    def _search_tile(self, target: _Target, width: int, height: int) -> Region:
        """target_region while lost: the next tile of a scan over the frame.

        Tiles are squares of `lost_tile_scale` x the target's tracking region side,
        overlapping by half (any object of the target's size lies wholly inside one),
        one per lost frame: the tile nearest where the target was last seen on odd lost
        frames, the others nearest-first on even ones, so that where the target vanished is
        never more than a frame from being looked at again.
        """
        tracking_side = self._region(self._search_box(target), width, height).side
        side = min(tracking_side * self.config.tracking.lost_tile_scale, float(max(width, height)))

        def centres(extent: int) -> np.ndarray:
            if side >= extent:
                return np.array([extent / 2])
            return np.linspace(side / 2, extent - side / 2, int(math.ceil((extent - side) / (side / 2))) + 1)

        cx, cy = box_center(target.box)
        tiles = sorted(((x, y) for y in centres(height) for x in centres(width)),
                       key=lambda c: (c[0] - cx) ** 2 + (c[1] - cy) ** 2)
        # Every other lost frame looks again where the target was last seen (an occluded object
        # mostly reappears there); the frames between scan outwards.
        n = target.frames_lost
        x, y = tiles[0 if n % 2 else (n // 2) % len(tiles)]
        return Region(x - side / 2, y - side / 2, side, self.config.features.region_size)

    def _search_growth(self, frames_lost: int) -> float:
        return self.config.tracking.lost_search_growth ** min(frames_lost, MAX_GROWTH_STEPS)

    def _tensor_box(self, box: Box) -> torch.Tensor:
        return torch.tensor([box], dtype=torch.float32, device=self.device)

    def _features(self, image: np.ndarray, regions: list[Region]) -> tuple[list[torch.Tensor], list[int]]:
        """Backbone levels for the regions (one batch) and each region's batch index."""
        if self.config.features.mode == "full_frame":
            h, w = image.shape[:2]
            ph, pw = -h % 32, -w % 32  # pad to the backbone's total stride
            padded = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REPLICATE) if ph or pw else image
            batch, views = padded[None], [0] * len(regions)
        else:
            fill = image.reshape(-1, 3).mean(axis=0)
            batch, views = np.stack([region.crop(image, fill) for region in regions]), list(range(len(regions)))
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return self.backend.backbone(tensor), views

    def _embed(self, features: list[torch.Tensor], views: list[int], regions: list[Region], boxes: list[Box]) -> torch.Tensor:
        """Eq. 2's f(.) of frame boxes, (N, C)."""
        rows = torch.cat([rois(v, self._tensor_box(r.to_input(b))) for v, r, b in zip(views, regions, boxes)])
        return embed(features[MATCH_LEVEL], rows, MATCH_STRIDE, self.config.crpn.roi_size)

    def _track(self, targets: list[_Target], image: np.ndarray, prev_gray: np.ndarray, gray: np.ndarray) -> FrameResult:
        cfg = self.config
        height, width = image.shape[:2]
        scale = self.flow.scale
        timings: dict[str, float] = {}
        clock = time.perf_counter

        t0 = clock()
        # The ghost check's forward flow only when some mask will be warped.
        warping = any(t.follows_flow for t in targets)
        motion = MaskWarp.between(self.flow, prev_gray, gray, cfg.flow.remove_ghosts and warping)
        flow = motion.flow
        timings["flow"] = clock() - t0

        # BP: warp every previous mask, take the box of the warped mask (a held target stays in place).
        t0 = clock()
        plans = [_Plan(target=t) for t in targets]
        for plan in plans:
            if plan.target.held_frames:
                plan.warped, plan.bp_box = plan.target.prev_mask, plan.target.box
            elif plan.target.follows_flow:
                plan.warped = motion(plan.target.prev_mask)
                box = mask_box(plan.warped, 0.5, scale)
                plan.bp_box = clip_box(box, width, height) if box is not None else None
        timings["bp"] = clock() - t0

        # DM: one confidence for the frame, the mean over the tracked targets (a held target's
        # mask did not move with the flow: its features would describe the occluder).
        t0 = clock()
        active = [p for p in plans if p.target.follows_flow]
        if active:
            warp_error = photometric_warp_error(prev_gray, gray, flow)
            feats = np.stack([
                flow_features(flow, warp_error, p.target.prev_mask, p.warped, p.target.box, p.bp_box,
                              p.target.score, (width, height), scale)
                for p in active
            ])
            confidence = float(self.backend.decision(torch.from_numpy(feats).to(self.device)).mean())
        else:
            confidence = math.nan
        frame_stream = Stream.BP if confidence > cfg.decision.theta_c else Stream.BR
        for plan in plans:
            lost = plan.target.status == TargetStatus.LOST
            held = plan.target.held_frames > 0  # segmented where it was held, never re-identified
            plan.stream = Stream.BR if lost or (frame_stream == Stream.BR and not held) or plan.bp_box is None \
                else Stream.BP
            if lost and cfg.features.mode == "target_region":
                plan.region = self._search_tile(plan.target, width, height)
            else:
                anchor_box = plan.bp_box if plan.stream == Stream.BP else plan.target.box
                plan.region = self._region(anchor_box, width, height)
        timings["dm"] = clock() - t0

        t0 = clock()
        features, views = self._features(image, [p.region for p in plans])
        for plan, view in zip(plans, views):
            plan.view = view
        timings["backbone"] = clock() - t0

        t0 = clock()
        self._reidentify([p for p in plans if p.stream == Stream.BR], features, width, height)
        for plan in plans:
            if plan.stream == Stream.BP:
                plan.roi_box = plan.bp_box
        timings["br"] = clock() - t0

        t0 = clock()
        segmented = [p for p in plans if p.roi_box is not None]
        probs = self._segment(segmented, features, width, height)
        timings["mrn"] = clock() - t0

        t0 = clock()
        result = self._update(plans, segmented, probs, features, width, height, confidence, frame_stream)
        timings["merge"] = clock() - t0
        result.timings = timings
        return result

    def _reidentify(self, plans: list[_Plan], features: list[torch.Tensor], width: int, height: int) -> None:
        """BR: conditional anchors around the previous box, CRPN, Eq. 2 ranking."""
        if not plans:
            return
        cfg = self.config.crpn
        feat4 = features[MATCH_LEVEL]
        stride = MATCH_STRIDE
        map_size = (feat4.shape[-1], feat4.shape[-2])
        for plan in plans:
            target, region = plan.target, plan.region
            lost = target.status == TargetStatus.LOST
            grid, step = cfg.grid, 1
            prev_in = region.to_input(self._search_box(target) if lost else target.box)
            if lost:
                if self.config.features.mode == "target_region":  # the whole tile, at the last box's size
                    w, h = prev_in[2] - prev_in[0], prev_in[3] - prev_in[1]
                    mx, my = map_size[0] * stride / 2, map_size[1] * stride / 2
                    prev_in = (mx - w / 2, my - h / 2, mx + w / 2, my + h / 2)
                    grid = max(map_size) + 1
                else:  # widen the grid, up to the whole map
                    grow = self._search_growth(target.frames_lost)
                    grid = min(2 * int(math.ceil(cfg.grid * grow / 2)) + 1, 2 * max(map_size) + 1)
                # Sparser cells as the grid widens: at most (3 * cfg.grid)^2 cells, so a lost
                # target costs about what a few tracked ones do (it is searched every frame).
                step = max(1, math.ceil(grid / (3 * cfg.grid)))
            anchors = conditional_anchors(prev_in, stride, grid, cfg.multipliers, map_size, step).to(self.device)
            bounds = (map_size[0] * stride, map_size[1] * stride)
            boxes, objectness = propose(self.backend.crpn_head, feat4, plan.view, anchors, stride, bounds,
                                        cfg.roi_size)
            # A lost target's candidates are ranked by appearance, not objectness: keep more.
            top_n = LOST_CANDIDATES_FACTOR * cfg.top_n if lost else cfg.top_n
            keep = select_candidates(boxes, objectness, top_n, cfg.nms_iou, cfg.min_objectness)
            if keep.numel():
                if lost:
                    appearance = self._candidate_appearance(target, boxes[keep], features, plan.view, region)
                    best = int(appearance.argmax())
                    if float(appearance[best]) < reacquire_bar(self.config.tracking, target.appearance_level):
                        continue  # nothing here looks like the target: stay lost, skip the MRN
                else:
                    emb = embed(feat4, rois(plan.view, boxes[keep]), stride, cfg.roi_size)
                    best = int(match_distance(emb, target.first_embedding, target.prev_embedding).argmin())
                plan.roi_box = clip_box(region.to_frame(tuple(boxes[keep[best]].tolist())), width, height)
                plan.box_prior = plan.warped is None or plan.bp_box is None
            elif plan.bp_box is not None:  # no candidate: fall back to BP
                plan.roi_box = plan.bp_box
            # else: lost (or empty warp with no candidate) -> nothing to segment this frame

    def _candidate_appearance(self, target: _Target, boxes: torch.Tensor, features: list[torch.Tensor], view: int,
                              region: Region) -> torch.Tensor:
        """Mean first-frame appearance match inside each candidate box (input pixels), (N,).

        Ranks a lost target's candidates: its last Eq. 2 embeddings are stale by then
        (the returning object scored no better than background; see tracking.reacquire_appearance).
        Matched per candidate RoI, as the MRN's prior is: one dense match over the
        whole view compares features at the tile's scale with the reference's RoI
        scale, and the returning object scored 0.3-0.4 there against 0.8-0.97 so.
        """
        cfg = self.config.mrn
        roi_boxes = [enlarge_box(region.to_frame(tuple(b)), cfg.box_margin) for b in boxes.tolist()]
        # Levels 2-3 only, at half the MRN's match grid: a ranking needs no fine detail, and it is 4x cheaper.
        query = match_features(self._roi_features(features[:2], [view] * len(roi_boxes), [region] * len(roi_boxes),
                                                  roi_boxes, tuple(m // 2 for m in self.backend.mrn_roi_sizes[:2])))
        n = query.shape[0]
        match = appearance_match(query, target.reference.expand(n, -1, -1, -1),
                                 target.reference_mask.expand(n, -1, -1), cfg.match_top_k, cfg.match_temperature,
                                 None)[:, 0]
        inside = torch.from_numpy(box_prior(match.shape[-1], cfg.box_margin)).to(match.device)
        return (match * inside).sum((1, 2)) / inside.sum()

    def _roi_features(self, features: list[torch.Tensor], views: list[int], regions: list[Region],
                      roi_boxes: list[Box], sizes: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """The MRN's RoIAligned levels 2..5 for frame boxes, (K, C_j, m_j, m_j) (or the first
        len(sizes) levels at `sizes`)."""
        rows = torch.cat([rois(v, self._tensor_box(r.to_input(b))) for v, r, b in zip(views, regions, roi_boxes)])
        return roi_levels(features, rows, sizes or self.backend.mrn_roi_sizes)

    def _segment(self, plans: list[_Plan], features: list[torch.Tensor], width: int, height: int) -> list[np.ndarray]:
        """MRN on each target RoI (batched): M x M probabilities per plan; sets each plan's appearance."""
        if not plans:
            return []
        cfg = self.config.mrn
        roi_boxes = [enlarge_box(p.roi_box, cfg.box_margin) for p in plans]
        roi_feats = self._roi_features(features, [p.view for p in plans], [p.region for p in plans], roi_boxes)
        query = match_features(roi_feats)
        match = appearance_match(
            query, torch.stack([p.target.reference for p in plans]),
            torch.stack([p.target.reference_mask for p in plans]), cfg.match_top_k, cfg.match_temperature,
            self.backend.mrn_roi_sizes[0])
        second = match
        if cfg.prior_match == "memory":
            memories = [[(p.target.reference, p.target.reference_mask), *p.target.recent] for p in plans]
            second = memory_readout(query, *stack_memories(memories), cfg.memory_top_k, cfg.memory_temperature,
                                    self.backend.mrn_roi_sizes[0])
        priors = torch.cat([self._prior(p, b) for p, b in zip(plans, roi_boxes)]).to(self.device)
        probs = torch.sigmoid(self.backend.mrn(roi_feats, torch.cat([priors, second.to(priors.dtype)], 1)))[:, 0].float()
        inside = probs > cfg.mask_threshold
        appearance = (match[:, 0].float() * inside).sum((1, 2)) / inside.sum((1, 2)).clamp(min=1)
        for k, (plan, value) in enumerate(zip(plans, appearance.tolist())):
            plan.appearance, plan.match_features = value, query[k]
        return list(probs.cpu().numpy())

    def _prior(self, plan: _Plan, roi_box: Box) -> torch.Tensor:
        m = self.config.mrn.roi_size
        if plan.box_prior or plan.warped is None:
            prior = box_prior(m, self.config.mrn.box_margin)
        else:
            prior = crop_roi(plan.warped, roi_box, m, self.flow.scale)
        return torch.from_numpy(prior)[None, None]

    def _update(
        self, plans: list[_Plan], segmented: list[_Plan], probs: list[np.ndarray], features: list[torch.Tensor],
        width: int, height: int, confidence: float, frame_stream: Stream,
    ) -> FrameResult:
        """Paste back, merge into one label map, update each target's state."""
        cfg, tcfg = self.config, self.config.tracking
        windows = [paste_roi(prob, enlarge_box(p.roi_box, cfg.mrn.box_margin), height, width)
                   for prob, p in zip(probs, segmented)]
        labels, scores = merge_windows(windows, [p.target.id for p in segmented], height, width,
                                       cfg.mrn.mask_threshold, self._held_claims(segmented, windows, width, height))

        fh, fw = flow_shape(width, height, self.flow.scale)
        min_area = tcfg.min_area_fraction * width * height
        results, refresh = [], []
        for plan in plans:
            target = plan.target
            mask = labels == target.id
            area = int(mask.sum())
            score = scores.get(target.id, 0.0)
            was_lost = target.status == TargetStatus.LOST
            occluded = area < tcfg.occluded_area_ratio * target.ref_area
            # A lost target, or the small remnant of an occluded one, must clearly look like the
            # first frame: a vanished object's warped mask shrinks onto background that still
            # matches 0.5-0.6 (synthetic clip), as low as whole objects do on real video (0.56).
            strict = was_lost or occluded or target.held_frames > 0
            min_appearance = reacquire_bar(tcfg, target.appearance_level) if strict else tcfg.lost_appearance
            found = area >= min_area and score >= tcfg.lost_score and plan.appearance >= min_appearance
            if not was_lost and self._holds(target, occluded, found, labels, mask):
                if not found:
                    labels[mask] = 0
                    mask, area, score = np.zeros_like(mask), 0, 0.0
                target.held_frames += 1
                target.status = TargetStatus.OCCLUDED
                target.prev_mask, target.box = target.whole_mask, target.whole_box
                results.append(TargetResult(target.id, mask, mask_box(mask) if area else None, score,
                                            TargetStatus.OCCLUDED, plan.stream, confidence, area))
                continue
            target.held_frames = 0
            if not found:
                labels[mask] = 0  # a lost target's pixels leave the label map too
                target.status = TargetStatus.LOST
                target.frames_lost += 1
                target.prev_mask = np.zeros((fh, fw), np.float32)
                target.score = 0.0
                results.append(TargetResult(target.id, np.zeros((height, width), bool), None, 0.0,
                                            TargetStatus.LOST, plan.stream, confidence, 0))
                continue
            if was_lost:
                target.status = TargetStatus.REIDENTIFIED
            elif occluded:
                target.status = TargetStatus.OCCLUDED
            else:
                target.status = TargetStatus.TRACKING
                target.ref_area = tcfg.area_ema * target.ref_area + (1 - tcfg.area_ema) * area
                level = target.appearance_level
                target.appearance_level = plan.appearance if level is None else (
                    tcfg.appearance_ema * level + (1 - tcfg.appearance_ema) * plan.appearance)
            target.frames_lost = 0
            target.box = mask_box(mask)
            if target.status == TargetStatus.TRACKING:
                target.tracked_size = box_size(target.box)
            target.score = score
            target.prev_mask = cv2.resize(mask.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA)
            if target.status == TargetStatus.TRACKING and area >= tcfg.whole_area_ratio * target.ref_area:
                target.whole_mask, target.whole_box = target.prev_mask, target.box
            refresh.append(plan)
            if target.recent.maxlen and plan.match_features is not None:
                roi = enlarge_box(plan.roi_box, cfg.mrn.box_margin)
                size = plan.match_features.shape[-1]
                target.recent.append((plan.match_features, torch.from_numpy(
                    crop_roi(target.prev_mask, roi, size, self.flow.scale)).to(self.device)))
            results.append(TargetResult(target.id, mask, target.box, score, target.status, plan.stream, confidence, area))
        if refresh:  # Eq. 2's previous-frame term f(T_{i-1})
            emb = self._embed(features, [p.view for p in refresh], [p.region for p in refresh],
                              [p.target.box for p in refresh])
            for k, plan in enumerate(refresh):
                plan.target.prev_embedding = emb[k]
        return FrameResult(results, labels, confidence, frame_stream)

    def _holds(self, target: _Target, occluded: bool, found: bool, labels: np.ndarray, mask: np.ndarray) -> bool:
        """Whether a target not lost is held in place behind another target this frame: a held one
        until it is found whole again or the hold runs out; another when it turns occluded while
        the other targets' pixels cover its last whole mask."""
        tcfg = self.config.tracking
        if target.held_frames:
            return (occluded or not found) and target.held_frames < tcfg.occluder_hold_frames
        if not (occluded and tcfg.occluder_hold_frames):
            return False
        whole = target.whole_mask > 0.5
        fh, fw = whole.shape
        others = cv2.resize(((labels != 0) & ~mask).astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA) > 0.5
        return (whole & others).sum() >= tcfg.occluder_cover * max(whole.sum(), 1)

    def _held_claims(self, segmented: list[_Plan], windows: list[tuple[np.ndarray, tuple[int, int]]], width: int,
                     height: int) -> dict[int, np.ndarray]:
        """Per held target, the pixels of its window outside every other (moving) target's warped
        mask: merge_windows gives it what it finds there; the occluder keeps where it goes."""
        held = [(p, w) for p, w in zip(segmented, windows) if p.target.held_frames]
        if not held:
            return {}
        front = np.zeros((height, width), bool)
        for p in segmented:
            if not p.target.held_frames and p.warped is not None:
                front |= cv2.resize(p.warped, (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
        return {p.target.id: ~front[y:y + w.shape[0], x:x + w.shape[1]] for p, (w, (x, y)) in held}
