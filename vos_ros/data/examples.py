"""Examples: a (previous, current) frame pair (data/pairs.py) turned into every network's inputs and labels.

Each example replays one engine step with ground truth: the previous mask is
perturbed (imitating the tracker's own errors, optionally with a stray piece:
`add_stray`), warped with DIS flow into the
current frame, the decision module's features and Eq. 1 label (IoU of the BP
box with the ground-truth box) are computed, the target region is cropped as
the engine's `target_region` mode does, conditional anchors are labelled
against the ground-truth box, and the MRN gets a RoI (the BP box, or a jittered
ground-truth box as BR would propose) with its prior and target mask, plus a
reference view of the object (its RoI crop and mask) standing in for the first
frame that the appearance match (model/match.py) compares against, and with
`mrn.prior_match` memory the previous frame's view as the latest memory entry.
Used by offline training (training/trainer.py) and first-frame adaptation
(inference/adaptation.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou as torchvision_box_iou

from ..config import EngineConfig, MRNConfig
from ..model.crpn import MATCH_STRIDE, conditional_anchors, encode_boxes
from ..model.decision import flow_features, photometric_warp_error
from ..model.flow import DISFlow, flow_shape, warp_backward
from ..model.geometry import Box, box_iou, clip_box, crop_roi, enlarge_box, mask_box
from ..model.match import match_features
from ..model.mrn import roi_levels
from ..model.step_inputs import (appearance_prior, crop_regions, mask_prior, memory_prior, propagated_box,
                                 target_region)
from .pairs import Pair

POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.3


def mrn_inputs(features: list[torch.Tensor], batch: dict[str, torch.Tensor], reference_index: torch.Tensor,
               memory_index: torch.Tensor | None, roi_sizes: tuple[int, ...], mrn: MRNConfig
               ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The MRN's inputs for collated examples whose current views are images 0..B-1 of the
    backbone `features`, whose reference views are images `reference_index` (B,) and, with
    `mrn.prior_match` memory, whose previous-frame views are images `memory_index` (B,): the
    RoI levels and the priors (warped previous mask; the second prior as the engine computes
    it: the appearance match against the reference, or the memory readout from the reference
    and the previous frame's RoI with its prior mask, the engine's first and latest memories)."""
    device = features[0].device

    def levels_at(index: torch.Tensor, boxes: torch.Tensor) -> list[torch.Tensor]:
        return roi_levels(features, torch.cat([index.float()[:, None], boxes], 1).to(device), roi_sizes)

    levels = levels_at(torch.arange(len(reference_index)), batch["roi"])
    query, reference = match_features(levels), match_features(levels_at(reference_index, batch["ref_roi"]))
    ref_mask = batch["ref_mask"].to(device)
    if mrn.prior_match == "memory":
        previous = match_features(levels_at(memory_index, batch["mem_roi"]))
        mem_mask = batch["mem_mask"].to(device)
        memories = [[(reference[k], ref_mask[k]), (previous[k], mem_mask[k])] for k in range(len(query))]
        second = memory_prior(query, memories, mrn, roi_sizes[0])
    else:
        second = appearance_prior(query, reference, ref_mask, mrn, roi_sizes[0])
    return levels, torch.cat([batch["prior"].to(device), second], 1)


def perturb_mask(rng: np.random.Generator, mask: np.ndarray, strays: float = 0.0) -> np.ndarray:
    """Imitate a tracker's own previous-frame errors: erode/dilate and shift a little; with
    probability `strays`, also a stray piece (`add_stray`)."""
    box = mask_box(mask)
    if box is None:
        return mask
    size = max(box[2] - box[0], box[3] - box[1])
    k = int(rng.integers(0, max(2, int(0.06 * size))))
    out = mask.astype(np.uint8)
    if k > 0:
        kernel = np.ones((k, k), np.uint8)
        out = cv2.dilate(out, kernel) if rng.random() < 0.5 else cv2.erode(out, kernel)
    shift = rng.normal(0, 0.03 * size, 2)
    out = cv2.warpAffine(out, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), out.shape[::-1], flags=cv2.INTER_NEAREST)
    # No draw when off: runs without strays reproduce those made before the option.
    if strays > 0 and rng.random() < strays:
        add_stray(rng, out, box)
    return out > 0 if out.any() else mask


def add_stray(rng: np.random.Generator, mask: np.ndarray, box: Box) -> None:
    """Draw into `mask` (uint8, in place) a piece of background that a tracker's mask keeps by
    mistake, out from the object's edge in a random direction: a thin trail 0.5-1.5x the
    object's size long (left on static background when the object moved on: flow carries it
    nowhere, so it stays and stretches the box), or a blob 0.25-1x its size beyond the edge
    (a piece stuck on a neighbour). Trained against, the MRN learns to drop prior pixels the
    image does not support."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return
    size = max(box[2] - box[0], box[3] - box[1])
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    edge = int(np.argmax(xs * direction[0] + ys * direction[1]))  # the mask's farthest pixel that way
    start = np.array([xs[edge], ys[edge]])
    if rng.random() < 0.5:
        end = start + direction * rng.uniform(0.5, 1.5) * size
        thickness = max(1, int(rng.uniform(0.02, 0.06) * size))
        cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, thickness)
    else:
        at = start + direction * rng.uniform(0.25, 1.0) * size
        axes = tuple(max(1, int(rng.uniform(0.05, 0.2) * size)) for _ in range(2))
        cv2.ellipse(mask, tuple(int(v) for v in at), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)


def jitter_box(rng: np.random.Generator, box: Box, amount: float) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    d = rng.normal(0, amount, 4) * np.array([w, h, w, h])
    return (box[0] + d[0], box[1] + d[1], box[2] + d[2], box[3] + d[3])


class ExampleBuilder:
    """Turns pairs into tensors for one configuration (target_region geometry)."""

    def __init__(self, config: EngineConfig, prior_strays: float = 0.0):
        """`prior_strays`: the share of perturbed previous masks given a stray piece (`add_stray`)."""
        self.config, self.prior_strays = config, prior_strays
        self.flow = DISFlow(config.flow.preset, config.flow.scale)

    def _view(self, name: str, image: np.ndarray, box: Box, mask: np.ndarray, mask_scale: float
              ) -> dict[str, torch.Tensor]:
        """A view of the object kept for matching, as the engine keeps a target's memory: the region
        crop around `box`, its RoI in the crop, and `mask` (at `mask_scale` x frame resolution) on the
        RoI's match grid, under the keys NAME_image, NAME_roi, NAME_mask."""
        cfg = self.config
        height, width = image.shape[:2]
        region = target_region(box, cfg.features, width, height)
        roi = enlarge_box(box, cfg.mrn.box_margin)
        return {
            f"{name}_image": torch.from_numpy(crop_regions(image, [region])[0]).permute(2, 0, 1).contiguous(),
            f"{name}_roi": torch.tensor(region.to_input(roi), dtype=torch.float32),
            f"{name}_mask": torch.from_numpy(crop_roi(mask, roi, cfg.mrn.roi_size // 2, mask_scale)),
        }

    def build(self, pair: Pair, rng: np.random.Generator, perturb: bool = True) -> dict[str, torch.Tensor] | None:
        """None when the previous mask is empty. `perturb=False` when the previous mask is
        already a tracker's output (recurrent training)."""
        cfg = self.config
        height, width = pair.image.shape[:2]
        scale = self.flow.scale
        prev_box_true = mask_box(pair.prev_mask)
        if prev_box_true is None:
            return None
        prev_mask = perturb_mask(rng, pair.prev_mask, self.prior_strays) if perturb else pair.prev_mask
        prev_box = mask_box(prev_mask)
        fh, fw = flow_shape(width, height, scale)
        prev_small = cv2.resize(prev_mask.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA)
        prev_gray, gray = self.flow.prepare(pair.prev_image), self.flow.prepare(pair.image)
        flow = self.flow.backward(prev_gray, gray)
        warped = warp_backward(prev_small, flow)
        bp_box = propagated_box(warped, scale, width, height)
        gt_box = mask_box(pair.mask)
        warp_error = photometric_warp_error(prev_gray, gray, flow)
        dm_feats = flow_features(flow, warp_error, prev_small, warped, prev_box, bp_box,
                                 float(rng.uniform(0.6, 1.0)), (width, height), scale)
        dm_label = box_iou(bp_box, gt_box)

        # Region as the engine builds it; lost-search growth imitated by a random scale.
        use_bp = bp_box is not None and rng.random() < 0.5
        anchor_box = bp_box if use_bp else prev_box
        growth = 1.0 if rng.random() < 0.7 else float(rng.uniform(1.0, 3.0))
        region = target_region(anchor_box, cfg.features, width, height, growth)
        crop = crop_regions(pair.image, [region])[0]

        # CRPN anchors around the previous box, labelled against the current ground truth.
        size = cfg.features.region_size
        map_size = (size // MATCH_STRIDE, size // MATCH_STRIDE)
        anchors = conditional_anchors(region.to_input(prev_box), MATCH_STRIDE, cfg.crpn.grid, cfg.crpn.multipliers, map_size)
        n_anchors = cfg.crpn.grid**2 * len(cfg.crpn.multipliers) ** 2
        anchor_rows = torch.zeros(n_anchors, 4)
        anchor_rows[: anchors.shape[0]] = anchors[:n_anchors]
        valid = torch.zeros(n_anchors, dtype=torch.bool)
        valid[: anchors.shape[0]] = True
        labels = torch.zeros(n_anchors)
        reg_targets = torch.zeros(n_anchors, 4)
        weights = valid.float()
        if gt_box is not None:
            gt_in = torch.tensor(region.to_input(gt_box), dtype=torch.float32)[None]
            ious = torchvision_box_iou(anchor_rows, gt_in)[:, 0]
            labels = (ious >= POSITIVE_IOU).float()
            weights = weights * ((ious >= POSITIVE_IOU) | (ious < NEGATIVE_IOU)).float()
            reg_targets = encode_boxes(anchor_rows.clamp(min=0) + torch.tensor([0, 0, 1e-3, 1e-3]), gt_in.expand(n_anchors, 4))

        # MRN RoI: the BP box, or a ground-truth box jittered as a BR candidate would be.
        use_box_prior = False
        if use_bp:
            roi = bp_box
        elif gt_box is not None:
            roi = clip_box(jitter_box(rng, gt_box, 0.08), width, height)
            use_box_prior = rng.random() < 0.2
        else:
            roi = clip_box(jitter_box(rng, prev_box, 0.1), width, height)
        roi = enlarge_box(roi, cfg.mrn.box_margin)
        prior = mask_prior(None if use_box_prior or bp_box is None else warped, roi, cfg.mrn, scale)
        target = crop_roi(pair.mask.astype(np.float32), roi, cfg.mrn.roi_size)

        # Reference view: cropped and RoI'd as the engine does for a target's first frame.
        ref_box = mask_box(pair.ref_mask)
        if ref_box is None:
            return None
        views = self._view("ref", pair.ref_image, ref_box, pair.ref_mask, 1.0)
        if cfg.mrn.prior_match == "memory":  # the previous frame as the engine's latest memory entry
            views.update(self._view("mem", pair.prev_image, prev_box, prev_small, scale))
        return {
            **views,
            "image": torch.from_numpy(crop).permute(2, 0, 1).contiguous(),
            "roi": torch.tensor(region.to_input(roi), dtype=torch.float32),
            "roi_frame": torch.tensor(roi, dtype=torch.float32),  # the same box in frame pixels
            "prior": torch.from_numpy(prior)[None],
            "mask": torch.from_numpy(target)[None],
            "anchors": anchor_rows,
            "anchor_labels": labels,
            "anchor_weights": weights,
            "anchor_targets": reg_targets,
            "dm_features": torch.from_numpy(dm_feats),
            "dm_label": torch.tensor(dm_label, dtype=torch.float32),
        }
