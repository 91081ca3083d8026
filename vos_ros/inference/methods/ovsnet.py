"""OVSNet (shared/seeds/004) behind the method seam: detections on every frame, linked to the
targets by its one-pass cascade (its §3.2, Fig. 4).

Per frame: each target's previous mask is warped by the backward flow (DIS on the working
image); the detector (LIP's network with a zero memory: model/ovsnet.py) gives boxes from the
centre heatmap (score above `ovsnet.proposal_score`), regressed, NMS at `ovsnet.nms_iou`,
their class-agnostic masks and Re-ID embeddings. Per target:
1. IoU path: of the candidates whose masks overlap the warped mask above `ovsnet.iou_path`,
   the one with the highest IoU less `ovsnet.iou_path_reid_weight` x its mean Re-ID distance
   to the target's collection is the target's mask; its embedding joins the collection.
2. Re-ID path: else a candidate closer than `ovsnet.reid_distance` to at least
   `ovsnet.reid_share` of the collection: the one with the smallest mean distance.
3. Flow path: else MGA refines the warped mask (nothing when it is empty, or after
   `ovsnet.flow_frames` frames in a row on this path: the target is lost, and only the
   Re-ID path can find it again, REIDENTIFIED).

Choices where the paper is silent:
- Each target's warped-mask box (10% larger, as the detector's boxes) joins the proposals,
  last in the NMS order: the proposal head, trained on 27 videos and still images, misses
  objects it has not seen.
- The IoU path weighs appearance too (the paper takes the largest IoU): a warped mask that has
  drifted onto the background overlaps a detection of the same drift best, and the drift then
  compounds; the object's own detection is the one closest to its collection.
- A candidate goes to one target at most: the IoU path assigns the best overlaps first, the
  Re-ID path the closest matches next.
- The collection keeps the first frame's `first_features` embeddings (its box and jittered
  copies) and the last `collection` ones the IoU path appended; the Re-ID path appends
  nothing (a wrong match would then pull the next ones): memory stays flat.
- The flow path's run is bounded (`flow_frames`): an object no detection has matched for
  that long has gone (hidden, or out of view), and MGA would otherwise carry its warped mask
  on the background for as long as it is away. A match with a candidate regressed from the
  target's own warped-mask box counts as the flow path here (it is no independent evidence).
- Lucid Data Dreaming at run time (`ovsnet.adapt_iterations`, off by default): MGA refitted
  on every add from its offline weights on pairs dreamt from the targets' first frame.
- Streams in telemetry: BP for the IoU and flow paths (they follow the flow), BR for Re-ID.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...backends.lip import TorchLIP
from ...config import EngineConfig
from ...data.examples import jitter_box, perturb_mask
from ...data.pairs import FirstFramePairs
from ...model.flow import MaskWarp
from ...model.geometry import enlarge_box, mask_box, paste_roi
from ...model.lip import pool_boxes
from ...model.ovsnet import EMBEDDING, OVSNetHeads, mga_inputs, mga_target
from ..targets import FrameSegmentation, Segment, Target
from ..types import Stream
from .detections import DetectorMethod, Detections, WorkingFrame, detect, mask_iou, zero_memory_pass
from .lip import LIPFrame, batch_rows, working_frame
from .lip_fit import GT_MARGIN

IOU, REID, FLOW = "iou", "reid", "flow"


@dataclass
class OVSNetState:
    first: torch.Tensor  # (first_features, 128) first-frame embeddings
    recent: deque  # the last embeddings the IoU path appended, each (128,)
    flow_run: int = 0  # consecutive frames carried by the flow path alone

    def collection(self) -> torch.Tensor:
        return torch.cat([self.first, torch.stack(list(self.recent))]) if self.recent else self.first


class OVSNetMethod(DetectorMethod):
    name, heads_class, label = "ovsnet", OVSNetHeads, "OVSNet"

    def __init__(self, config: EngineConfig, backend: TorchLIP, heads: OVSNetHeads):
        super().__init__(config, backend, heads)
        self._offline_mga = copy.deepcopy(self.heads.mga.state_dict())
        self._dreamt: dict[int, tuple[torch.Tensor, ...]] = {}  # per target: its lucid-dreaming MGA examples
        self.last_adaptation: dict[str, float] = {}

    def reset(self) -> None:
        self._dreamt.clear()
        self.heads.mga.load_state_dict(self._offline_mga)

    def remove(self, ids: list[int]) -> None:
        for i in ids:
            self._dreamt.pop(i, None)

    @staticmethod
    def roi_counts(config: EngineConfig) -> tuple[int, int, int]:
        cfg = config.ovsnet
        return (1, cfg.proposals + 1, max(cfg.proposals + config.tracking.max_objects, cfg.first_features))

    def _embed(self, propagated: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        return self.heads.reid(self.backend.box_trunk(pool_boxes(propagated, batch_rows(boxes))))

    @torch.no_grad()
    def start(self, image: np.ndarray, targets: list[Target], masks: list[np.ndarray]) -> None:
        frame = self.prepare(image)
        propagated, _, _ = zero_memory_pass(self.backend, frame.lip)
        cfg = self.config.ovsnet
        for target in targets:
            box = enlarge_box(mask_box(target.prev_mask), GT_MARGIN)
            rng = np.random.default_rng([target.id, 29])
            boxes = [box] + [jitter_box(rng, box, 0.08) for _ in range(cfg.first_features - 1)]
            first = self._embed(propagated, torch.tensor(boxes, dtype=torch.float32, device=self.device))
            target.state = OVSNetState(first, deque(maxlen=cfg.collection))
        if cfg.adapt_iterations:
            self._adapt(image, targets, masks)

    def _adapt(self, image: np.ndarray, targets: list[Target], masks: list[np.ndarray]) -> None:
        """OVSNet's Lucid Data Dreaming at run time (its §4.1 adds the first frames' dreamt pairs
        to training): MGA fine-tuned from its offline weights on pairs dreamt from each current
        target's first frame (data/pairs.py FirstFramePairs), the attention the object's mask
        perturbed as in training. One MGA serves all targets, refitted on every add."""
        t0 = time.perf_counter()
        cfg = self.config.ovsnet
        labels = np.zeros(masks[0].shape, np.int32)
        for target, mask in zip(targets, masks):
            labels[mask] = target.id
        dream = FirstFramePairs(image, labels, [t.id for t in targets])
        shape = self.mask_shape(image.shape[1], image.shape[0])[::-1]
        for target in targets:
            rng = np.random.default_rng([target.id, 31])
            rows = []
            for _ in range(4 * cfg.adapt_pairs):
                if len(rows) == cfg.adapt_pairs:
                    break
                pair = dream.sample(rng, target.id)
                mask = cv2.resize(pair.mask.astype(np.uint8), shape, interpolation=cv2.INTER_NEAREST) > 0
                if mask.sum() < 16:
                    continue
                frame = working_frame(self.backend, cv2.resize(pair.image, shape, interpolation=cv2.INTER_AREA))
                propagated, _, _ = zero_memory_pass(self.backend, frame)
                attention_mask = perturb_mask(rng, mask).astype(np.float32)
                box = torch.tensor([mask_box(attention_mask)], dtype=torch.float32, device=self.device)
                attended, attention, _ = self._attend(propagated, frame.levels[0], attention_mask, box)
                truth = mga_target(torch.from_numpy(mask.astype(np.float32))[None, None].to(self.device), box)
                rows.append((attended, attention, truth))
            if rows:
                self._dreamt[target.id] = tuple(torch.cat(parts) for parts in zip(*rows))
        self._fit_mga()
        self.last_adaptation["seconds"] = time.perf_counter() - t0

    @torch.inference_mode(False)
    def _fit_mga(self) -> None:
        cfg = self.config.ovsnet
        mga = self.heads.mga
        mga.load_state_dict(self._offline_mga)
        if not self._dreamt:
            return
        inputs, attention, truth = (torch.cat(parts) for parts in zip(*self._dreamt.values()))
        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.AdamW(mga.parameters(), lr=cfg.adapt_lr, weight_decay=1e-4)
        with torch.enable_grad():
            for _ in range(cfg.adapt_iterations):
                pick = torch.randint(len(truth), (min(8, len(truth)),), generator=generator).to(self.device)
                loss = F.binary_cross_entropy_with_logits(mga(inputs[pick], attention[pick]), truth[pick])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        mga.eval()
        self.last_adaptation["loss"] = loss.item()

    def _candidates(self, frame: LIPFrame, propagated, heatmap, size, extra: list) -> Detections:
        cfg = self.config.ovsnet
        found = detect(self.backend, frame, propagated, heatmap, size, cfg.proposals, cfg.proposal_score,
                       cfg.nms_iou, extra)
        found.embeddings = self._embed(propagated, found.boxes) if len(found.boxes) else torch.zeros((0, EMBEDDING))
        return found

    @torch.no_grad()
    def segment(self, targets: list[Target], image: np.ndarray, previous: WorkingFrame, current: WorkingFrame
                ) -> FrameSegmentation:
        cfg = self.config.ovsnet
        t0 = time.perf_counter()
        warp = MaskWarp.between(self.flow, previous.gray, current.gray, remove_ghosts=False)
        warped = [warp(t.prev_mask) for t in targets]
        timings = {"flow": time.perf_counter() - t0}
        t0 = time.perf_counter()
        propagated, heatmap, size = zero_memory_pass(self.backend, current.lip)
        extra = [enlarge_box(b, GT_MARGIN) for b in (mask_box(m) for m in warped) if b is not None]
        found = self._candidates(current.lip, propagated, heatmap, size, extra)
        timings["detect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        paths, picks = self._cascade(targets, warped, found)
        h, w = current.lip.size
        height, width = image.shape[:2]
        sx, sy = width / w, height / h
        segments = []
        for k, target in enumerate(targets):
            window = None
            if paths[k] in (IOU, REID):
                box = tuple(found.boxes[picks[k]].tolist())
                prob = found.probs[picks[k]]
                if cfg.refine_detections:
                    window, (x, y) = paste_roi(prob, box, h, w)
                    soft = np.zeros((h, w), np.float32)
                    soft[y:y + window.shape[0], x:x + window.shape[1]] = window
                    prob, box = self._refine(propagated, current.lip.levels[0], soft, box)
            elif paths[k] == FLOW:
                prob, box = self._refine(propagated, current.lip.levels[0], warped[k], mask_box(warped[k]))
            if paths[k] is not None:
                x1, y1, x2, y2 = box
                window = paste_roi(prob, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), height, width)
            segments.append(Segment(target=target, stream=Stream.BR if paths[k] == REID else Stream.BP, window=window,
                                    propagated=warped[k]))
        timings["link"] = time.perf_counter() - t0
        links = [(FLOW if paths[k] == IOU and found.seeded[picks[k]] else paths[k],
                  found.embeddings[picks[k]] if paths[k] == IOU else None) for k in range(len(targets))]
        stream = Stream.BR if REID in paths else Stream.BP
        return FrameSegmentation(segments, float("nan"), stream, timings, context=links)

    def _cascade(self, targets: list[Target], warped: list[np.ndarray], found: Detections
                 ) -> tuple[list[str | None], list[int | None]]:
        """Each target's path (IOU, REID, FLOW or None) and its candidate's index."""
        cfg = self.config.ovsnet
        count = len(targets)
        paths, picks = [None] * count, [None] * count
        taken = set()
        if len(found.boxes):
            ious = mask_iou(np.stack([m > 0.5 for m in warped]), found.masks)
            for k, target in enumerate(targets):  # a target carried long enough by its own box alone
                if target.state.flow_run >= cfg.flow_frames:
                    ious[k, found.seeded] = 0.0
            distances = [torch.cdist(found.embeddings, t.state.collection()) for t in targets]  # each (R, F)
            mean = torch.stack([d.mean(1) for d in distances]).cpu().numpy()  # (K, R)
            score = ious - cfg.iou_path_reid_weight * mean
            for k, r in sorted(np.argwhere(ious > cfg.iou_path).tolist(), key=lambda kr: -score[kr[0], kr[1]]):
                if paths[k] is None and r not in taken:
                    paths[k], picks[k] = IOU, r
                    taken.add(r)
            matches = []
            for k, distance in enumerate(distances):
                if paths[k] is None:
                    share = (distance < cfg.reid_distance).float().mean(1)
                    matches += [(float(mean[k, r]), k, r) for r in range(len(found.boxes)) if share[r] >= cfg.reid_share]
            for _, k, r in sorted(matches):
                if paths[k] is None and r not in taken:
                    paths[k], picks[k] = REID, r
                    taken.add(r)
        for k, target in enumerate(targets):
            if paths[k] is None and warped[k].max(initial=0) > 0.5 and target.state.flow_run < cfg.flow_frames:
                paths[k] = FLOW
        return paths, picks

    def _refine(self, propagated, stride4: torch.Tensor, mask: np.ndarray, box: tuple) -> tuple[np.ndarray, tuple]:
        """MGA on `mask` (working resolution) as attention in `box`: its 56x56 probability and the
        enlarged box it covers."""
        attended, attention, wide = self._attend(propagated, stride4, mask,
                                                 torch.tensor([box], dtype=torch.float32, device=self.device))
        return torch.sigmoid(self.heads.mga(attended, attention))[0, 0].cpu().numpy(), tuple(wide[0].tolist())

    def _attend(self, propagated, stride4: torch.Tensor, mask: np.ndarray, box: torch.Tensor):
        """mga_inputs of one working-resolution mask on its box (1, 4), this frame's levels."""
        return mga_inputs(propagated, stride4, torch.from_numpy(mask)[None, None].to(self.device), box,
                          torch.zeros(1, device=self.device))

    def commit(self, frame: FrameSegmentation, found: list[Segment]) -> None:
        found_ids = {s.target.id for s in found}
        for segment, (path, embedding) in zip(frame.segments, frame.context):
            state, is_found = segment.target.state, segment.target.id in found_ids
            state.flow_run = state.flow_run + 1 if path == FLOW and is_found else 0
            if embedding is not None and is_found and self.config.ovsnet.collection:
                state.recent.append(embedding)

