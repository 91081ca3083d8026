"""DTN (shared/seeds/003): decision module, box propagation or re-identification, mask refinement.

Per frame (DTN §3.1-3.3): backward flow to the previous frame; each target's previous
mask is warped (BP box and MRN prior); the decision module scores the frame; if the
confidence is at most theta_c the conditional RPN re-identifies every target (BR,
reidentify.py), otherwise the BP boxes are used; the MRN segments each box. The engine
merges the windows, and the merged masks become the next frame's previous masks (as RGMP
passes on its merged result).

Choices where the paper is silent:
- An empty warped mask (BP impossible) sends that target through BR.
- A re-acquired target has no warped prior; the MRN gets a box prior instead.
- The MRN's second prior is the first-frame appearance match (model/match.py; each target
  keeps its first-frame RoI matching features and mask), or with mrn.prior_match memory the
  readout of its first and latest frames (model/memory.py).
- The DM's confidence for the frame is the mean over the targets that follow the flow (a
  held target's mask did not move with it: its features would describe the occluder).

The networks run behind a deployment backend (vos_ros.backends: torch, ONNX Runtime,
TensorRT); everything between them (geometry, RoIAlign, matching, state) runs here as
torch ops on the backend's device.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque

import cv2
import numpy as np
import torch

from ...backends import create_backend
from ...config import EngineConfig
from ...model.crpn import MATCH_LEVEL, MATCH_STRIDE, embed, rois
from ...model.decision import flow_features, photometric_warp_error
from ...model.dtn import DTN, load_dtn
from ...model.flow import MaskWarp, build_flow, flow_shape
from ...model.geometry import Box, Region, crop_roi, enlarge_box, paste_roi
from ...model.match import match_features
from ...model.mrn import roi_levels
from ...model.step_inputs import (appearance_prior, crop_regions, mask_prior, memory_prior, propagated_box,
                                  target_region)
from ..adaptation import AdaptationRunner, MRNAdapter
from ..lost_search import search_tile
from ..targets import FrameSegmentation, Target
from ..types import Stream, TargetStatus
from .base import Method
from .plan import DTNState, Plan
from .reidentify import reidentify


class DTNMethod(Method):
    name = "dtn"

    def __init__(self, config: EngineConfig, backend, adaptation: AdaptationRunner | None = None):
        self.config, self.backend, self.adaptation = config, backend, adaptation
        self.device = backend.device
        self.flow = build_flow(config.flow.method, config.flow.preset, config.flow.scale)

    @classmethod
    def from_config(cls, config, weights=None, device="cpu", untrained=False, backend="torch", precision=None,
                    cache_dir=None) -> "DTNMethod":
        return cls.from_model(config, load_dtn(config, weights, untrained), backend, device, precision, cache_dir)

    @classmethod
    def from_model(cls, config: EngineConfig, model: DTN, backend: str = "torch", device: str = "cpu",
                   precision: str | None = None, cache_dir: str | None = None) -> "DTNMethod":
        """`model` (weights loaded, on the CPU) behind `backend`, with first-frame adaptation when the
        config enables it."""
        # The adapter's MRN is copied before the backend moves and casts the model.
        offline_mrn = copy.deepcopy(model.mrn) if config.adaptation.iterations > 0 else None
        runner = create_backend(backend, model, config, device, precision, cache_dir)
        adaptation = None
        if offline_mrn is not None:
            adaptation = AdaptationRunner(MRNAdapter(config, offline_mrn, runner.device), runner,
                                          config.adaptation.background)
        return cls(config, runner, adaptation)

    def mask_shape(self, width: int, height: int) -> tuple[int, int]:
        return flow_shape(width, height, self.flow.scale)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return self.flow.prepare(image)

    def start(self, image: np.ndarray, targets: list[Target], masks: list[np.ndarray]) -> None:
        height, width = image.shape[:2]
        regions = [self.region(t.box, width, height) for t in targets]
        features, views = self.features(image, regions)
        embeddings = self.embed(features, views, regions, [t.box for t in targets])
        roi_boxes = [enlarge_box(t.box, self.config.mrn.box_margin) for t in targets]
        references = match_features(self.roi_features(features, views, regions, roi_boxes))
        size = references.shape[-1]
        memory_frames = self.config.mrn.memory_frames if self.config.mrn.prior_match == "memory" else 0
        for k, (target, mask) in enumerate(zip(targets, masks)):
            reference_mask = torch.from_numpy(crop_roi(mask.astype(np.float32), roi_boxes[k], size))
            target.state = DTNState(embeddings[k], embeddings[k], references[k], reference_mask.to(self.device),
                                    deque(maxlen=memory_frames))

    def segment(self, targets: list[Target], image: np.ndarray, previous: np.ndarray, current: np.ndarray
                ) -> FrameSegmentation:
        cfg = self.config
        height, width = image.shape[:2]
        scale = self.flow.scale
        timings: dict[str, float] = {}
        clock = time.perf_counter

        t0 = clock()
        # The ghost check's forward flow only when some mask will be warped.
        warping = any(t.follows_flow for t in targets)
        motion = MaskWarp.between(self.flow, previous, current, cfg.flow.remove_ghosts and warping)
        timings["flow"] = clock() - t0

        # BP: warp every previous mask, take the box of the warped mask (a held target stays in place).
        t0 = clock()
        plans = [Plan(target=t) for t in targets]
        for plan in plans:
            if plan.target.held_frames:
                plan.propagated, plan.bp_box = plan.target.prev_mask, plan.target.box
            elif plan.target.follows_flow:
                plan.propagated = motion(plan.target.prev_mask)
                plan.bp_box = propagated_box(plan.propagated, scale, width, height)
        timings["bp"] = clock() - t0

        t0 = clock()
        confidence = self._confidence([p for p in plans if p.target.follows_flow], motion.flow, previous, current,
                                      width, height)
        frame_stream = Stream.BP if confidence > cfg.decision.theta_c else Stream.BR
        for plan in plans:
            lost = plan.target.status == TargetStatus.LOST
            held = plan.target.held_frames > 0  # segmented where it was held, never re-identified
            plan.stream = Stream.BR if lost or (frame_stream == Stream.BR and not held) or plan.bp_box is None \
                else Stream.BP
            if lost and cfg.features.mode == "target_region":
                plan.region = search_tile(plan.target, cfg, width, height)
            else:
                plan.region = self.region(plan.bp_box if plan.stream == Stream.BP else plan.target.box, width, height)
        timings["dm"] = clock() - t0

        t0 = clock()
        features, views = self.features(image, [p.region for p in plans])
        for plan, view in zip(plans, views):
            plan.view = view
        timings["backbone"] = clock() - t0

        t0 = clock()
        reidentify([p for p in plans if p.stream == Stream.BR], features, cfg, self.backend, self.roi_features,
                   width, height)
        for plan in plans:
            if plan.stream == Stream.BP:
                plan.roi_box = plan.bp_box
        timings["br"] = clock() - t0

        t0 = clock()
        self._refine([p for p in plans if p.roi_box is not None], features, width, height)
        timings["mrn"] = clock() - t0
        return FrameSegmentation(plans, confidence, frame_stream, timings, context=features)

    def commit(self, frame: FrameSegmentation, found: list[Plan]) -> None:
        for plan in found:
            state = plan.target.state
            if state.recent.maxlen and plan.match_features is not None:
                roi = enlarge_box(plan.roi_box, self.config.mrn.box_margin)
                size = plan.match_features.shape[-1]
                state.recent.append((plan.match_features, torch.from_numpy(
                    crop_roi(plan.target.prev_mask, roi, size, self.flow.scale)).to(self.device)))
        if found:  # Eq. 2's previous-frame term f(T_{i-1})
            emb = self.embed(frame.context, [p.view for p in found], [p.region for p in found],
                             [p.target.box for p in found])
            for k, plan in enumerate(found):
                plan.target.state.prev_embedding = emb[k]

    # ----------------------------------------------------------------- stages
    def _confidence(self, active: list[Plan], flow: np.ndarray, previous: np.ndarray, current: np.ndarray,
                    width: int, height: int) -> float:
        """DM: one confidence for the frame, the mean over the targets that follow the flow."""
        if not active:
            return math.nan
        warp_error = photometric_warp_error(previous, current, flow)
        feats = np.stack([
            flow_features(flow, warp_error, p.target.prev_mask, p.propagated, p.target.box, p.bp_box,
                          p.target.score, (width, height), self.flow.scale)
            for p in active
        ])
        return float(self.backend.decision(torch.from_numpy(feats).to(self.device)).mean())

    def _refine(self, plans: list[Plan], features: list[torch.Tensor], width: int, height: int) -> None:
        """MRN on each target RoI (batched): each plan's window and appearance."""
        if not plans:
            return
        cfg = self.config.mrn
        out_size = self.backend.mrn_roi_sizes[0]
        roi_boxes = [enlarge_box(p.roi_box, cfg.box_margin) for p in plans]
        roi_feats = self.roi_features(features, [p.view for p in plans], [p.region for p in plans], roi_boxes)
        query = match_features(roi_feats)
        states = [p.target.state for p in plans]
        match = appearance_prior(query, torch.stack([s.reference for s in states]),
                                 torch.stack([s.reference_mask for s in states]), cfg, out_size)
        second = match
        if cfg.prior_match == "memory":
            second = memory_prior(query, [[(s.reference, s.reference_mask), *s.recent] for s in states], cfg, out_size)
        priors = torch.cat([
            torch.from_numpy(mask_prior(None if p.box_prior else p.propagated, b, cfg, self.flow.scale))[None, None]
            for p, b in zip(plans, roi_boxes)]).to(self.device)
        probs = torch.sigmoid(self.backend.mrn(roi_feats, torch.cat([priors, second.to(priors.dtype)], 1)))[:, 0].float()
        inside = probs > cfg.mask_threshold
        appearance = (match[:, 0].float() * inside).sum((1, 2)) / inside.sum((1, 2)).clamp(min=1)
        for k, (plan, prob, value) in enumerate(zip(plans, probs.cpu().numpy(), appearance.tolist())):
            plan.appearance, plan.match_features = value, query[k]
            plan.window = paste_roi(prob, roi_boxes[k], height, width)

    # ------------------------------------------------------------ shared steps
    def region(self, box: Box, width: int, height: int) -> Region:
        if self.config.features.mode == "full_frame":
            return Region.full_frame(width, height)
        return target_region(box, self.config.features, width, height)

    def features(self, image: np.ndarray, regions: list[Region]) -> tuple[list[torch.Tensor], list[int]]:
        """Backbone levels for the regions (one batch) and each region's batch index."""
        if self.config.features.mode == "full_frame":
            h, w = image.shape[:2]
            ph, pw = -h % 32, -w % 32  # pad to the backbone's total stride
            padded = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REPLICATE) if ph or pw else image
            batch, views = padded[None], [0] * len(regions)
        else:
            batch, views = crop_regions(image, regions), list(range(len(regions)))
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return self.backend.backbone(tensor), views

    def box_rows(self, views: list[int], regions: list[Region], boxes: list[Box]) -> torch.Tensor:
        """RoIAlign rows (batch index, box in input pixels) of frame boxes."""
        return torch.cat([rois(v, torch.tensor([r.to_input(b)], dtype=torch.float32, device=self.device))
                          for v, r, b in zip(views, regions, boxes)])

    def embed(self, features: list[torch.Tensor], views: list[int], regions: list[Region], boxes: list[Box]
              ) -> torch.Tensor:
        """Eq. 2's f(.) of frame boxes, (N, C)."""
        return embed(features[MATCH_LEVEL], self.box_rows(views, regions, boxes), MATCH_STRIDE,
                     self.config.crpn.roi_size)

    def roi_features(self, features: list[torch.Tensor], views: list[int], regions: list[Region],
                     roi_boxes: list[Box], sizes: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """The MRN's RoIAligned levels 2..5 for frame boxes, (K, C_j, m_j, m_j) (or the first
        len(sizes) levels at `sizes`)."""
        return roi_levels(features, self.box_rows(views, regions, roi_boxes), sizes or self.backend.mrn_roi_sizes)

