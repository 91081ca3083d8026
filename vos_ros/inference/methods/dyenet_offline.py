"""DyeNet's offline mode (its §3, Fig. 2): over a whole recorded clip, not causal.

1. Every frame's detections and their Re-ID embeddings; the backward flow of every
   neighbouring pair, both ways.
2. Rounds (at most `dyenet.rounds`; the paper stops "in about three"): per frame and object,
   the detection most similar to the object's templates is a starting point if its cosine
   exceeds rho_reid (an object is one detection in a frame; in the first round the annotated
   first frame's mask is one too, scored 1); most similar first, a starting point whose mask
   overlaps an existing tracklet above `dyenet.overlap_iou` is skipped; the others are
   propagated by Re-MP forwards and backwards until it aborts or meets a tracklet of its
   object (from there it would repeat it), giving a tracklet. Template expansion: the detections that match a new tracklet's mask
   above `dyenet.expansion_iou` join its object's templates. A round that finds no new
   tracklet ends the search.
3. Greedy linking: tracklets by their starting point's similarity; each is merged into its
   object where it does not contradict what that object already holds (a frame where both
   have masks that do not overlap above `overlap_iou`, or one where it overlaps another
   object's mask as much) and is dropped otherwise; a frame's objects are painted in
   ascending similarity, the most similar on top.
The clip's features are held in memory (about 1.2 MB per frame at 240 working rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ...model.dyenet import REMP_SIZE
from ...model.flow import MaskWarp
from ...model.geometry import Box, paste_roi
from .detections import Detections, mask_iou, zero_memory_pass
from .dyenet import DyeNetMethod, on_grid, pasted


@dataclass
class Tracklet:
    object_id: int
    score: float  # its starting point's similarity to the object's templates
    frames: dict[int, tuple[np.ndarray, Box]] = field(default_factory=dict)  # frame -> m x m probability, box
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> working-resolution bool mask

    def add(self, t: int, prob: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
        self.frames[t] = (prob, box)
        self.masks[t] = pasted(prob, box, shape) > 0.5
        return self.masks[t]


@dataclass
class ClipFeatures:
    levels: list  # per frame (propagated levels, stride-4 level)
    detections: list[Detections]
    forward: list[MaskWarp | None]  # [t]: the motion from t - 1 to t (None at 0)
    backward: list[MaskWarp | None]  # [t]: the motion from t + 1 to t (None at the end)
    shape: tuple[int, int]  # working (h, w)


@torch.no_grad()
def clip_features(method: DyeNetMethod, frames: list[np.ndarray]) -> ClipFeatures:
    prepared = [method.prepare(f) for f in frames]
    levels, detections = [], []
    for frame in prepared:
        propagated, heatmap, size = zero_memory_pass(method.backend, frame.lip)
        levels.append((propagated, frame.lip.levels[0]))
        detections.append(method.detections(frame, propagated, heatmap, size))
    grey = [p.gray for p in prepared]
    forward = [None] + [method.warp(grey[t - 1], grey[t]) for t in range(1, len(grey))]
    backward = [method.warp(grey[t + 1], grey[t]) for t in range(len(grey) - 1)] + [None]
    return ClipFeatures(levels, detections, forward, backward, prepared[0].lip.size)


def propagate_both_ways(method: DyeNetMethod, clip: ClipFeatures, start: int, mask: np.ndarray, tracklet: Tracklet,
                        others: list[Tracklet]) -> None:
    """Re-MP from `mask` (working resolution) at frame `start`, forwards and backwards until it
    aborts, or until it meets one of `others` of its object (from there it would repeat it)."""
    run = method.begin(*clip.levels[start], mask)
    if run is None:
        return
    tracklet.add(start, on_grid(mask, run.box, REMP_SIZE), run.box, clip.shape)
    same = [k for k in others if k.object_id == tracklet.object_id]
    bar = method.config.dyenet.overlap_iou
    for direction, motions in ((1, clip.forward), (-1, clip.backward)):
        current, previous, t = run, mask, start
        while 0 <= t + direction < len(clip.levels):
            t += direction
            step = method.propagate([current], [previous], motions[t], *clip.levels[t])[0]
            if step is None:
                break
            found = tracklet.add(t, step.prob, step.run.box, clip.shape)
            if _covered(same, t, found, bar):
                break
            current, previous = step.run, found.astype(np.float32)


def _covered(tracklets: list[Tracklet], t: int, mask: np.ndarray, bar: float) -> bool:
    held = [k.masks[t] for k in tracklets if t in k.masks]
    return bool(held) and float(mask_iou(mask[None], np.stack(held)).max()) > bar


@torch.no_grad()
def find_tracklets(method: DyeNetMethod, clip: ClipFeatures, first: dict[int, np.ndarray]) -> list[Tracklet]:
    """The rounds of re-identification and propagation; `first`: each object's annotated mask at frame 0."""
    cfg = method.config.dyenet
    templates = {k: method.templates(*clip.levels[0], mask.astype(np.float32), k) for k, mask in first.items()}
    tracklets: list[Tracklet] = []
    for round_index in range(cfg.rounds):
        starts = [(1.0, 0, k, mask) for k, mask in first.items()] if round_index == 0 else []
        for t, found in enumerate(clip.detections):
            for k, template in templates.items():  # an object is one detection per frame: its most similar
                if len(found.boxes):
                    similarity = (found.embeddings @ template.T).max(1).values.cpu().numpy()
                    r = int(similarity.argmax())
                    if similarity[r] > cfg.reid_similarity:
                        starts.append((float(similarity[r]), t, k, found.masks[r]))
        new: list[Tracklet] = []
        for score, t, k, mask in sorted(starts, key=lambda s: -s[0]):
            if _covered(tracklets + new, t, mask, cfg.overlap_iou):
                continue
            tracklet = Tracklet(k, score)
            propagate_both_ways(method, clip, t, mask.astype(np.float32), tracklet, tracklets + new)
            if tracklet.frames:
                new.append(tracklet)
        if not new:
            break
        for tracklet in new:  # template expansion
            for t in tracklet.frames:
                found = clip.detections[t]
                if len(found.boxes):
                    iou = mask_iou(tracklet.masks[t][None], found.masks)[0]
                    if iou.max() > cfg.expansion_iou:
                        templates[tracklet.object_id] = torch.cat(
                            [templates[tracklet.object_id], found.embeddings[int(iou.argmax())][None]])
        tracklets += new
    return tracklets


def link(tracklets: list[Tracklet], bar: float) -> list[Tracklet]:
    """The tracklets kept by the greedy linking, most similar first."""
    kept: list[Tracklet] = []
    for tracklet in sorted(tracklets, key=lambda k: -k.score):
        contradicts = False
        for t, mask in tracklet.masks.items():
            for other in kept:
                if t in other.masks:
                    iou = float(mask_iou(mask[None], other.masks[t][None])[0, 0])
                    same = other.object_id == tracklet.object_id
                    if (same and iou <= bar) or (not same and iou > bar):
                        contradicts = True
                        break
            if contradicts:
                break
        if not contradicts:
            kept.append(tracklet)
    return kept


def segment_offline(method: DyeNetMethod, frames: list[np.ndarray], first_labels: np.ndarray) -> list[np.ndarray]:
    """Label maps (uint16, frame size) of every frame, frame 0's the given one."""
    clip = clip_features(method, frames)
    h, w = clip.shape
    height, width = first_labels.shape
    small = cv2.resize(first_labels.astype(np.uint16), (w, h), interpolation=cv2.INTER_NEAREST)
    first = {int(k): small == k for k in np.unique(first_labels) if k and (small == k).any()}
    kept = link(find_tracklets(method, clip, first), method.config.dyenet.overlap_iou)
    sx, sy = width / w, height / h
    labels = [first_labels.astype(np.uint16)]
    for t in range(1, len(frames)):
        out = np.zeros((height, width), np.uint16)
        for tracklet in sorted((k for k in kept if t in k.frames), key=lambda k: k.score):
            prob, (x1, y1, x2, y2) = tracklet.frames[t]
            window, (x, y) = paste_roi(prob, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), height, width)
            region = out[y:y + window.shape[0], x:x + window.shape[1]]
            region[window > 0.5] = tracklet.object_id
        labels.append(out)
    return labels
