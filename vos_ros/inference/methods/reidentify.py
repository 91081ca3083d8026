"""DTN's BR stream: conditional anchors around the previous box, the CRPN, Eq. 2 ranking; and for a
LOST target (ours) anchors over its search window (inference/lost_search.py), candidates ranked by
first-frame appearance instead.

A lost target's last Eq. 2 embeddings are stale by then (the returning object scored no
better than background), so its candidates are ranked by their mean first-frame appearance
match, matched per candidate RoI as the MRN's prior is: one dense match over the whole view
compares features at the tile's scale with the reference's RoI scale, and the returning object
scored 0.3-0.4 there against 0.8-0.97 so. It is re-acquired only when the best candidate's
match reaches the target's re-acquisition bar (targets.reacquire_bar); the status policy
then checks the match over the mask the MRN finds there.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...backends import Backend
from ...config import EngineConfig, MRNConfig
from ...model.crpn import (MATCH_LEVEL, MATCH_STRIDE, conditional_anchors, embed, match_distance, propose, rois,
                          select_candidates)
from ...model.geometry import Region, box_prior, clip_box, enlarge_box
from ...model.match import match_features
from ...model.step_inputs import appearance_prior
from ..lost_search import search_anchors
from ..targets import Target, reacquire_bar
from ..types import TargetStatus
from .plan import Plan

LOST_CANDIDATES_FACTOR = 2  # a lost target ranks 2 x crpn.top_n candidates by appearance


RoIFeatures = Callable[..., list[torch.Tensor]]  # DTNMethod.roi_features


def reidentify(plans: list[Plan], features: list[torch.Tensor], config: EngineConfig, backend: Backend,
               roi_features: RoIFeatures, width: int, height: int) -> None:
    """Sets each plan's RoI box from its best candidate (or the BP box when there is none)."""
    if not plans:
        return
    cfg = config.crpn
    feat4 = features[MATCH_LEVEL]
    stride = MATCH_STRIDE
    map_size = (feat4.shape[-1], feat4.shape[-2])
    bounds = (map_size[0] * stride, map_size[1] * stride)
    for plan in plans:
        target, region, state = plan.target, plan.region, plan.target.state
        lost = target.status == TargetStatus.LOST
        if lost:
            anchor_box, grid, step = search_anchors(target, region, map_size, stride, config)
        else:
            anchor_box, grid, step = region.to_input(target.box), cfg.grid, 1
        anchors = conditional_anchors(anchor_box, stride, grid, cfg.multipliers, map_size, step).to(backend.device)
        boxes, objectness = propose(backend.crpn_head, feat4, plan.view, anchors, stride, bounds, cfg.roi_size)
        # A lost target's candidates are ranked by appearance, not objectness: keep more.
        top_n = LOST_CANDIDATES_FACTOR * cfg.top_n if lost else cfg.top_n
        keep = select_candidates(boxes, objectness, top_n, cfg.nms_iou, cfg.min_objectness)
        if keep.numel():
            if lost:
                appearance = candidate_appearance(config.mrn, backend, roi_features, target, boxes[keep], features,
                                                  plan.view, region)
                best = int(appearance.argmax())
                if float(appearance[best]) < reacquire_bar(config.tracking, target.appearance_level):
                    continue  # nothing here looks like the target: stay lost, skip the MRN
            else:
                emb = embed(feat4, rois(plan.view, boxes[keep]), stride, cfg.roi_size)
                best = int(match_distance(emb, state.first_embedding, state.prev_embedding).argmin())
            plan.roi_box = clip_box(region.to_frame(tuple(boxes[keep[best]].tolist())), width, height)
            plan.box_prior = plan.propagated is None or plan.bp_box is None
        elif plan.bp_box is not None:  # no candidate: fall back to BP
            plan.roi_box = plan.bp_box
        # else: lost (or empty warp with no candidate) -> nothing to segment this frame


def candidate_appearance(cfg: MRNConfig, backend: Backend, roi_features: RoIFeatures, target: Target,
                         boxes: torch.Tensor, features: list[torch.Tensor], view: int, region: Region) -> torch.Tensor:
    """Mean first-frame appearance match inside each candidate box (input pixels), (N,)."""
    state = target.state
    roi_boxes = [enlarge_box(region.to_frame(tuple(b)), cfg.box_margin) for b in boxes.tolist()]
    # Levels 2-3 only, at half the MRN's match grid: a ranking needs no fine detail, and it is 4x cheaper.
    sizes = tuple(m // 2 for m in backend.mrn_roi_sizes[:2])
    query = match_features(roi_features(features[:2], [view] * len(roi_boxes), [region] * len(roi_boxes),
                                               roi_boxes, sizes))
    n = query.shape[0]
    match = appearance_prior(query, state.reference.expand(n, -1, -1, -1), state.reference_mask.expand(n, -1, -1),
                             cfg, None)[:, 0]
    inside = torch.from_numpy(box_prior(match.shape[-1], cfg.box_margin)).to(match.device)
    return (match * inside).sum((1, 2)) / inside.sum()
