"""LIP (shared/seeds/002) behind the method seam: detection through a visual memory, and
identities from heads fitted on the first frame.

Per frame: the backbone (`prepare`), one step of the Conv-GRU memory (its hidden state
carried from the last frame; zeros from the frame targets were added on, as the paper
starts each sequence), proposals from the centre heatmap plus each target's last box, the
box head's id scores and boxes, then LIP's online rules per target (its §3.3): "one
maximum" (of the `lip.candidates` best detections scoring above `lip.id_score`, the best)
and "location continuity" (a detection whose IoU with the target's last box is below
`lip.continuity_iou` is suppressed when that last score was above `lip.continuity_score`);
the mask head segments the box it keeps. A target with no detection left is not found
(the engine's status policy makes it LOST; it is detected anywhere again, and REIDENTIFIED,
once its id scores pass).

Choices where the paper is silent:
- Boxes around each target's last box join the proposals (`local_boxes`; a lost target's
  last box too): the proposal head, trained on 27 videos and still images, misses objects
  it has not seen (the paper's RPN was trained on COCO).
- Among a target's candidates that pass the continuity rule, the best is kept (the paper
  suppresses "the instance"; taking the next one keeps a target found when a look-alike
  outscores it elsewhere), its box the score-weighted mean of the candidates' boxes that
  overlap it (box voting: the proposals around the last box all score alike, and the
  single best one's box jittered in scale from frame to frame).
- The kept box is redrawn from a first mask-head pass on it enlarged (`lip.mask_context`):
  the mask head finds the object's extent better than the box head's loose boxes do.
- The fit (lip_fit.py) runs when the set of targets changes, at the first frame segmented
  with them; it takes about a second, so it runs in the step, not in the background.
- Id-head fine-tuning during inference (the paper's, bounded; `lip.update_*`): every few
  frames the id layer is refitted for a few iterations from where it is, on the first
  frame's examples and those of the last few confident detections, taken as the first
  frame's are (the paper reuses saved tensors too; it does not say how many).
- Frames are resized to `lip.height` rows, as for RGMP.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.ops import roi_align

from ...backends.lip import TorchLIP, create_lip_backend
from ...config import EngineConfig
from ...model.flow import flow_shape
from ...model.geometry import box_iou, enlarge_box, mask_box, paste_roi
from ...model.lip import LIP, MASK_SIZE, clamp_boxes, decode_boxes, encode_boxes, heatmap_boxes, pool_boxes, pool_masks
from ...model.weights import load_weights, weights_path
from ..targets import FrameSegmentation, Segment, Target
from ..types import Stream
from .base import Method
from .lip_fit import GT_MARGIN, TargetExamples, fit_instance_heads, refit_id, sample_rois
from .rgmp import padded

FIT_POSITIVES, FIT_NEGATIVES, FIT_MASKS = 48, 96, 16  # first-frame examples per target
LOCAL_SCALES, LOCAL_SHIFT = (0.8, 1.0, 1.25), 0.2
LOCAL_OFFSETS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))  # in place, then a shift each way
VOTE_IOU = 0.5  # candidates this close to the best one vote on its box


@dataclass
class LIPState:
    # Its last mask's box, 10% larger as the boxes the heads detect (the paper's ground truth),
    # at the working resolution: the segmentation, not the regressed box, carries it on (a box
    # fed back through the regression drifted larger frame by frame).
    box: tuple[float, float, float, float] | None
    score: float  # its id score (0 when not found)


@dataclass
class LIPContext:
    """What a frame's segmentation hands its commit: each target's (box, id score) or None,
    the frame's propagated levels and its heatmap proposals, for the id-head update."""
    chosen: list[tuple[tuple[float, ...], float] | None]
    propagated: list[torch.Tensor]
    proposals: list[tuple[float, float, float, float]]
    size: tuple[int, int]


@dataclass
class LIPFrame:
    levels: list[torch.Tensor]  # the backbone's four levels of the padded working image
    size: tuple[int, int]  # (h, w) of the working image, unpadded


def working_frame(backend: TorchLIP, small: np.ndarray) -> LIPFrame:
    """The backbone's levels of `small`, an image already at the working resolution."""
    tensor = torch.from_numpy(small).to(backend.device).permute(2, 0, 1)[None].float().div_(255.0)
    return LIPFrame(backend.backbone(padded(tensor, 1.0)), small.shape[:2])


def load_lip(config: EngineConfig, weights: str | None = None, untrained: bool = False) -> LIP:
    """The networks with weights loaded (the config's `lip.weights` unless given), on the CPU."""
    torch.manual_seed(0)
    model = LIP(config.lip.channels, imagenet_init=untrained)
    if not untrained:
        load_weights(model, weights_path(weights or config.lip.weights), "LIP", "vos-ros train-lip")
    return model.eval()


def roi_counts(config: EngineConfig) -> tuple[int, int, int]:
    """(min, opt, max) RoIs per trunk call: a frame's proposals with one target's local boxes
    (opt), up to a first-frame fit's examples or every target's local boxes (max)."""
    proposals, local = config.lip.proposals, len(LOCAL_SCALES) * len(LOCAL_OFFSETS)
    fit = FIT_POSITIVES + FIT_NEGATIVES + proposals
    return 1, proposals + local, max(fit, proposals + local * config.tracking.max_objects)


def local_boxes(box: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """Proposals around a target's last box: three scales, each in place and shifted a fifth
    of its size four ways."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    boxes = []
    for s in LOCAL_SCALES:
        for dx, dy in LOCAL_OFFSETS:
            mx, my = cx + dx * LOCAL_SHIFT * w, cy + dy * LOCAL_SHIFT * h
            boxes.append((mx - s * w / 2, my - s * h / 2, mx + s * w / 2, my + s * h / 2))
    return boxes


def example_rois(rng: np.random.Generator, boxes: list, index: int, width: int, height: int,
                 proposals: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit examples (N, 4) for target `index` among `boxes` and which are positive (N,): the
    sampled boxes of sample_rois plus the proposals away from every target (hard negatives:
    look-alikes elsewhere)."""
    rois, labels = sample_rois(rng, boxes, index, width, height, FIT_POSITIVES, FIT_NEGATIVES)
    hard = [p for p in proposals if all(box_iou(p, b) < 0.3 for b in boxes)]
    rois = torch.from_numpy(np.concatenate([rois, np.asarray(hard, np.float32).reshape(-1, 4)]))
    return rois, torch.from_numpy(np.concatenate([labels, np.zeros(len(hard), np.int64)])) == 1


def mask_grid_box(inner: tuple[float, ...], box: tuple[float, ...]) -> tuple[float, float, float, float]:
    """A box on the MASK_SIZE grid of the mask head's output for `box`, in `box`'s pixels."""
    sx, sy = (box[2] - box[0]) / MASK_SIZE, (box[3] - box[1]) / MASK_SIZE
    return box[0] + inner[0] * sx, box[1] + inner[1] * sy, box[0] + inner[2] * sx, box[1] + inner[3] * sy


def batch_rows(boxes: torch.Tensor) -> torch.Tensor:
    """(R, 4) boxes -> RoIAlign rows (R, 5) of batch 0."""
    return torch.cat([boxes.new_zeros((len(boxes), 1)), boxes], 1)


class LIPMethod(Method):
    name = "lip"

    def __init__(self, config: EngineConfig, backend: TorchLIP):
        self.config, self.backend = config, backend
        self.device = backend.device
        self.reset()

    @classmethod
    def from_config(cls, config, weights=None, device="cpu", untrained=False, backend="torch", precision=None,
                    cache_dir=None) -> "LIPMethod":
        model = load_lip(config, weights, untrained)
        return cls(config, create_lip_backend(backend, model, config, device, precision, cache_dir, roi_counts(config)))

    def reset(self) -> None:
        self._hidden: list[torch.Tensor] | None = None
        self._examples: dict[int, TargetExamples] = {}
        self._updates: dict[int, deque] = {}  # per target: the last updates' (box features, positive)
        self._heads, self._fitted_ids = None, ()
        self._frames = 0  # segmented since the last fit
        self.last_fit: dict[str, float] = {}
        self.last_update: dict[str, float] = {}

    def remove(self, ids: list[int]) -> None:
        for i in ids:
            self._examples.pop(i, None)
            self._updates.pop(i, None)

    def mask_shape(self, width: int, height: int) -> tuple[int, int]:
        return flow_shape(width, height, self.config.lip.height / height)

    def prepare(self, image: np.ndarray) -> LIPFrame:
        return working_frame(self.backend, cv2.resize(image, self.mask_shape(image.shape[1], image.shape[0])[::-1],
                                                      interpolation=cv2.INTER_AREA))

    def _remember(self, frame: LIPFrame) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """One memory step on `frame`: the propagated levels, the heatmap and the sizes."""
        levels = frame.levels[1:]
        hidden = self._hidden
        if (hidden is None or self.config.lip.memory == "static"
                or any(h.shape[-2:] != x.shape[-2:] for h, x in zip(hidden, levels))):
            hidden = self.backend.model.zero_hidden(frame.levels)
        self._hidden, propagated, (heatmap, size) = self.backend.memory(levels, hidden)
        return propagated, heatmap, size

    def start(self, image: np.ndarray, targets: list[Target], masks: list[np.ndarray]) -> None:
        frame = self.prepare(image)
        self._hidden = None  # the memory restarts, as at a sequence's first frame
        propagated, heatmap, size = self._remember(frame)
        h, w = frame.size
        boxes = [mask_box(t.prev_mask) for t in targets]
        proposals = heatmap_boxes(heatmap, size, self.config.lip.proposals)[0].tolist()
        for k, target in enumerate(targets):
            rois, positive = example_rois(np.random.default_rng([target.id, 7]), boxes, k, w, h, proposals)
            self._updates[target.id] = deque(maxlen=self.config.lip.update_memory)
            features = self.backend.box_trunk(pool_boxes(propagated, batch_rows(rois)))
            gt = torch.tensor(enlarge_box(boxes[k], GT_MARGIN), dtype=torch.float32)
            mask_rois = batch_rows(rois[positive][:FIT_MASKS])
            mask = torch.from_numpy(target.prev_mask)[None, None].to(self.device)
            self._examples[target.id] = TargetExamples(
                features, positive, encode_boxes(rois[positive], gt[None].expand(int(positive.sum()), -1)),
                self.backend.mask_trunk(*pool_masks(propagated, frame.levels[0], mask_rois)),
                roi_align(mask, mask_rois, (MASK_SIZE, MASK_SIZE), 1.0, 2, True)[:, 0])
            target.state = LIPState(enlarge_box(boxes[k], GT_MARGIN), 1.0)
        self._fitted_ids = ()

    def _fit(self, ids: tuple[int, ...]) -> None:
        self._heads, self.last_fit = fit_instance_heads(self.backend.model, [self._examples[i] for i in ids],
                                                        self.config.lip)
        self._fitted_ids, self._frames = ids, 0

    def _choose(self, k: int, state: LIPState, scores: torch.Tensor, boxes: torch.Tensor
                ) -> tuple[tuple[float, ...], float] | None:
        """LIP's one-maximum and location-continuity rules for target k: its box and id score."""
        cfg = self.config.lip
        order = torch.argsort(scores, descending=True)[:cfg.candidates]
        kept = [r for r in order.tolist() if scores[r] > cfg.id_score]
        if state.box is not None and state.score > cfg.continuity_score:
            kept = [r for r in kept if box_iou(tuple(boxes[r].tolist()), state.box) >= cfg.continuity_iou]
        if not kept:
            return None
        best = tuple(boxes[kept[0]].tolist())
        voters = [r for r in kept if box_iou(tuple(boxes[r].tolist()), best) >= VOTE_IOU]
        weights = scores[voters][:, None]
        return tuple(((boxes[voters] * weights).sum(0) / weights.sum()).tolist()), float(scores[kept[0]])

    def segment(self, targets: list[Target], image: np.ndarray, previous, current: LIPFrame) -> FrameSegmentation:
        t0 = time.perf_counter()
        propagated, heatmap, size = self._remember(current)
        ids = tuple(t.id for t in targets)
        if ids != self._fitted_ids:
            self._fit(ids)
        self._frames += 1
        timings = {"memory": time.perf_counter() - t0}
        t0 = time.perf_counter()
        h, w = current.size
        proposals = [heatmap_boxes(heatmap, size, self.config.lip.proposals)[0]]
        last = [t.state.box for t in targets if t.state.box is not None]
        if last:
            proposals.append(torch.tensor([b for box in last for b in local_boxes(box)], dtype=torch.float32))
        rois = clamp_boxes(torch.cat(proposals), w, h)
        features = self.backend.box_trunk(pool_boxes(propagated, batch_rows(rois)))
        scores = torch.softmax(self._heads.id(features), 1)[:, 1:]
        boxes = decode_boxes(rois, self._heads.boxes(features))
        chosen = [self._choose(k, t.state, scores[:, k], boxes[:, k]) for k, t in enumerate(targets)]
        kept = [k for k, c in enumerate(chosen) if c is not None]
        timings["detect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        windows = {}
        if kept:
            ctx = self.config.lip.mask_context
            if ctx > 0:  # the box redrawn from a first, wider pass (config.py LIPConfig.mask_context)
                wide = [enlarge_box(chosen[k][0], ctx) for k in kept]
                for k, box, prob in zip(kept, wide, self._masks(propagated, current.levels[0], wide, kept)):
                    inner = mask_box(prob)
                    if inner is not None:
                        chosen[k] = (enlarge_box(mask_grid_box(inner, box), GT_MARGIN), chosen[k][1])
            probs = self._masks(propagated, current.levels[0], [chosen[k][0] for k in kept], kept)
            height, width = image.shape[:2]
            sx, sy = width / w, height / h
            for prob, k in zip(probs, kept):
                x1, y1, x2, y2 = chosen[k][0]
                windows[k] = paste_roi(prob, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), height, width)
        timings["mask"] = time.perf_counter() - t0
        segments = [Segment(target=t, stream=Stream.BR, window=windows.get(k)) for k, t in enumerate(targets)]
        context = LIPContext(chosen, propagated, proposals[0].tolist(), (h, w))
        return FrameSegmentation(segments, float("nan"), Stream.BR, timings, context=context)

    def _masks(self, propagated: list[torch.Tensor], fine: torch.Tensor, boxes: list, kept: list[int]) -> np.ndarray:
        """The mask head's probabilities (R, 28, 28) of targets `kept` in `boxes` (working pixels)."""
        rows = batch_rows(torch.tensor(boxes, dtype=torch.float32))
        features = self.backend.mask_trunk(*pool_masks(propagated, fine, rows))
        return torch.sigmoid(self._heads.masks(features, torch.tensor(kept))).cpu().numpy()

    def commit(self, frame: FrameSegmentation, found: list[Segment]) -> None:
        found_ids = {s.target.id for s in found}
        placed = []  # (target, its mask's box) of the targets found this frame
        for segment, chosen in zip(frame.segments, frame.context.chosen):
            target = segment.target
            box = mask_box(target.prev_mask)
            if target.id in found_ids and chosen is not None and box is not None:
                target.state = LIPState(enlarge_box(box, GT_MARGIN), chosen[1])
                placed.append((target, box))
            else:
                target.state = LIPState(target.state.box, 0.0)
        every = self.config.lip.update_every
        if every and self._frames % every == 0:
            self._update(frame.context, placed)

    def _update(self, context: LIPContext, placed: list[tuple[Target, tuple[float, ...]]]) -> None:
        """The id-head fine-tuning during inference: examples around each confident target's
        mask box on this frame's propagated levels, then the id layer refitted."""
        cfg = self.config.lip
        boxes = [b for _, b in placed]
        h, w = context.size
        added = False
        for k, (target, _) in enumerate(placed):
            if target.state.score <= cfg.update_score:
                continue
            rng = np.random.default_rng([target.id, 11, self._frames])
            rois, positive = example_rois(rng, boxes, k, w, h, context.proposals)
            features = self.backend.box_trunk(pool_boxes(context.propagated, batch_rows(rois)))
            self._updates[target.id].append((features, positive))
            added = True
        if added:
            examples = [[(self._examples[i].box_features, self._examples[i].positive), *self._updates[i]]
                        for i in self._fitted_ids]
            self.last_update = refit_id(self._heads, examples, cfg)
