"""DyeNet (shared/seeds/000) behind the method seam, in its online (causal) use: Re-MP carries
each target's mask and hidden state from frame to frame, and the Re-ID network finds a
target again among the detections once its propagation has aborted. The offline mode
(the paper's own: iterative, bidirectional, tracklets linked) is dyenet_offline.py.

Per frame: each target's previous mask is warped by the backward flow (DIS on the working
image); on the warped mask's box, enlarged, Re-MP gives its mask (model/dyenet.py). It
aborts when the warped mask is empty or its mask falls below `dyenet.abort_ratio` of the
mask it started from (the paper: "too small, a high possibility of occlusion"): the target
is lost (its window empty, so the engine reports it LOST). From the next frame on, the
detector runs for it (LIP's network with a zero memory: boxes, masks); a detection whose
embedding's cosine to any of the target's templates exceeds `dyenet.reid_similarity`
(rho_reid) is a starting point: Re-MP restarts from its mask, and the target is REIDENTIFIED.

Choices where the paper is silent:
- Templates: the first frame's box and jittered copies (`dyenet.templates`); online, they
  are not expanded (a wrong match would then pull the next ones), so memory stays flat.
- A detection goes to one lost target at most, the most similar pairs first, and never one
  that overlaps a propagated target's mask (it is that target).
- Streams in telemetry: BP for Re-MP (it follows the flow), BR for re-identification.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import roi_align

from ...config import EngineConfig
from ...data.examples import jitter_box
from ...model.dyenet import REID_POOL, REMP_MARGIN, REMP_SIZE, DyeNetHeads, remp_begin, remp_step
from ...model.flow import MaskWarp
from ...model.geometry import Box, enlarge_box, mask_box, paste_roi
from ...model.lip import pool_region
from ..targets import FrameSegmentation, Segment, Target
from ..types import Stream, TargetStatus
from .detections import DetectorMethod, Detections, WorkingFrame, detect, mask_iou, zero_memory_pass
from .lip_fit import GT_MARGIN


@dataclass
class Propagation:
    """One Re-MP run: its hidden state on the grid of `box` (working pixels, enlarged)."""

    hidden: torch.Tensor  # (1, d, m, m)
    box: Box
    start_area: float  # working pixels of the mask it started from


@dataclass
class Propagated:
    """One frame of a propagation: the next state, and the mask as an m x m probability on its box."""

    run: Propagation
    prob: np.ndarray
    area: float


@dataclass
class DyeNetState:
    templates: torch.Tensor  # (T, 256) L2-normalised
    run: Propagation | None  # None: aborted (the target is lost until re-identified)


def box_rows(box: Box, index: int = 0) -> torch.Tensor:
    return torch.tensor([[index, *box]], dtype=torch.float32)


def map_tensor(array: np.ndarray, device) -> torch.Tensor:
    """A working-resolution map (h, w) or flow (h, w, 2) as (1, C, h, w)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)
    return tensor[None, None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)[None]


def on_grid(mask: np.ndarray, box: Box, size: int) -> np.ndarray:
    """A working-resolution mask RoIAligned on `box` at size x size."""
    return roi_align(map_tensor(mask, "cpu"), box_rows(box), size, 1.0, 2, True)[0, 0].numpy()


def pasted(prob: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """An m x m probability on `box` as a float map of `shape` (h, w)."""
    out = np.zeros(shape, np.float32)
    window, (x, y) = paste_roi(prob, box, *shape)
    out[y:y + window.shape[0], x:x + window.shape[1]] = window
    return out


class DyeNetMethod(DetectorMethod):
    name, heads_class, label = "dyenet", DyeNetHeads, "DyeNet"

    @staticmethod
    def roi_counts(config: EngineConfig) -> tuple[int, int, int]:
        return (1, config.dyenet.proposals + 1, max(config.dyenet.proposals, config.dyenet.templates))

    @property
    def mask_threshold(self) -> float:
        return self.config.dyenet.mask_threshold

    # ----------------------------------------------------------- shared with the offline mode
    def embed(self, propagated, stride4: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(R, 4) working boxes -> (R, 256) Re-ID embeddings."""
        rows = torch.cat([boxes.new_zeros((len(boxes), 1)), boxes], 1)
        return self.heads.reid(pool_region(propagated, stride4, rows, REID_POOL))

    def templates(self, propagated, stride4: torch.Tensor, mask: np.ndarray, seed: int) -> torch.Tensor:
        """A first-frame mask's templates: its box (10% larger, as the detector's) and jittered copies."""
        box = enlarge_box(mask_box(mask), GT_MARGIN)
        rng = np.random.default_rng([seed, 41])
        boxes = [box] + [jitter_box(rng, box, 0.08) for _ in range(self.config.dyenet.templates - 1)]
        return self.embed(propagated, stride4, torch.tensor(boxes, dtype=torch.float32, device=self.device))

    def begin(self, propagated, stride4: torch.Tensor, mask: np.ndarray) -> Propagation | None:
        """A propagation started from a mask (working resolution, float) of this frame."""
        box = mask_box(mask)
        if box is None:
            return None
        box = enlarge_box(box, REMP_MARGIN)
        hidden = remp_begin(self.heads.remp, propagated, stride4, box_rows(box).to(self.device),
                            map_tensor(mask, self.device))
        return Propagation(hidden, box, float((mask > 0.5).sum()))

    def warp(self, previous: np.ndarray, current: np.ndarray) -> MaskWarp:
        """The motion from grey image `previous` to `current` (ghosts removed with `dyenet.remove_ghosts`)."""
        return MaskWarp.between(self.flow, previous, current, self.config.dyenet.remove_ghosts)

    def propagate(self, runs: list[Propagation], previous: list[np.ndarray], motion: MaskWarp, propagated,
                  stride4: torch.Tensor) -> list[Propagated | None]:
        """One Re-MP step of each run from its previous mask (working resolution) by `motion`
        (previous -> this frame); None where it aborts."""
        out: list[Propagated | None] = [None] * len(runs)
        flow = motion.flow
        warped = [motion(m.astype(np.float32)) for m in previous]
        live = [(k, enlarge_box(b, REMP_MARGIN)) for k, b in ((k, mask_box(w)) for k, w in enumerate(warped))
                if b is not None]
        if not live:
            return out
        index, boxes = [k for k, _ in live], [b for _, b in live]
        rows = torch.tensor([[0, *b] for b in boxes], dtype=torch.float32, device=self.device)
        hidden, logits = remp_step(
            self.heads.remp, propagated, stride4, rows,
            torch.tensor([runs[k].box for k in index], dtype=torch.float32, device=self.device),
            torch.cat([runs[k].hidden for k in index]), torch.cat([map_tensor(warped[k], self.device) for k in index]),
            map_tensor(flow, self.device).expand(len(index), -1, -1, -1))
        probs = torch.sigmoid(logits[:, 0]).cpu().numpy()
        shape = flow.shape[:2]
        for j, (k, box) in enumerate(live):
            area = float((pasted(probs[j], box, shape) > 0.5).sum())
            if area > 0 and area >= self.config.dyenet.abort_ratio * runs[k].start_area:
                out[k] = Propagated(Propagation(hidden[j:j + 1], box, runs[k].start_area), probs[j], area)
        return out

    def reidentify(self, found: Detections, templates: list[torch.Tensor], excluded: np.ndarray | None
                   ) -> list[tuple[int, float] | None]:
        """Per template set, the detection it re-identifies and its cosine, or None: pairs above
        rho_reid, most similar first, a detection once; `excluded` (R,) detections are not taken."""
        picks: list[tuple[int, float] | None] = [None] * len(templates)
        if not len(found.boxes):
            return picks
        pairs = []
        for k, template in enumerate(templates):
            similarity = (found.embeddings @ template.T).max(1).values.cpu().numpy()
            pairs += [(float(similarity[r]), k, r) for r in range(len(similarity))
                      if similarity[r] > self.config.dyenet.reid_similarity and not (excluded is not None and excluded[r])]
        taken = set()
        for similarity, k, r in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):  # ties: the lower target first
            if picks[k] is None and r not in taken:
                picks[k] = (r, similarity)
                taken.add(r)
        return picks

    def detections(self, frame: WorkingFrame, propagated, heatmap, size) -> Detections:
        cfg = self.config.dyenet
        found = detect(self.backend, frame.lip, propagated, heatmap, size, cfg.proposals, cfg.proposal_score,
                       cfg.nms_iou)
        found.embeddings = self.embed(propagated, frame.lip.levels[0], found.boxes)
        return found

    # ------------------------------------------------------------------------ online use
    @torch.no_grad()
    def start(self, image: np.ndarray, targets: list[Target], masks: list[np.ndarray]) -> None:
        frame = self.prepare(image)
        propagated, _, _ = zero_memory_pass(self.backend, frame.lip)
        stride4 = frame.lip.levels[0]
        for target in targets:
            target.state = DyeNetState(self.templates(propagated, stride4, target.prev_mask, target.id),
                                       self.begin(propagated, stride4, target.prev_mask))

    @torch.no_grad()
    def segment(self, targets: list[Target], image: np.ndarray, previous: WorkingFrame, current: WorkingFrame
                ) -> FrameSegmentation:
        t0 = time.perf_counter()
        motion = self.warp(previous.gray, current.gray)
        timings = {"flow": time.perf_counter() - t0}
        t0 = time.perf_counter()
        propagated, heatmap, size = zero_memory_pass(self.backend, current.lip)
        stride4 = current.lip.levels[0]
        live = [k for k, t in enumerate(targets) if t.state.run is not None and t.status != TargetStatus.LOST]
        steps = self.propagate([targets[k].state.run for k in live], [targets[k].prev_mask for k in live], motion,
                               propagated, stride4)
        results: list[Propagated | None] = [None] * len(targets)
        for k, step in zip(live, steps):
            results[k] = step
        timings["remp"] = time.perf_counter() - t0
        shape = current.lip.size
        lost = [k for k in range(len(targets)) if k not in live]  # aborted before this frame: one frame LOST
        reidentified = set()
        restart = self.config.dyenet.restart_similarity > 0
        if lost or restart:
            t0 = time.perf_counter()
            found = self.detections(current, propagated, heatmap, size)
            if restart:
                self._restart(targets, results, found, propagated, stride4, shape)
            held = [pasted(r.prob, r.run.box, shape) > 0.5 for r in results if r is not None]
            excluded = (mask_iou(found.masks, np.stack(held)).max(1) > self.config.dyenet.overlap_iou
                        if held and len(found.boxes) else None)
            picks = self.reidentify(found, [targets[k].state.templates for k in lost], excluded)
            for k, pick in zip(lost, picks):
                if pick is None:
                    continue
                box = tuple(found.boxes[pick[0]].tolist())
                mask = pasted(found.probs[pick[0]], box, shape)
                run = self.begin(propagated, stride4, mask)
                if run is not None:
                    results[k] = Propagated(run, on_grid(mask, run.box, REMP_SIZE), run.start_area)
                    reidentified.add(k)
            timings["reid"] = time.perf_counter() - t0
        height, width = image.shape[:2]
        sx, sy = width / shape[1], height / shape[0]
        segments = []
        for k, target in enumerate(targets):
            window = None
            if results[k] is not None:
                x1, y1, x2, y2 = results[k].run.box
                window = paste_roi(results[k].prob, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), height, width)
            segments.append(Segment(target=target, stream=Stream.BR if k in reidentified else Stream.BP,
                                    window=window))
        stream = Stream.BR if reidentified else Stream.BP
        return FrameSegmentation(segments, float("nan"), stream, timings,
                                 context=[r.run if r is not None else None for r in results])

    def _restart(self, targets: list[Target], results: list[Propagated | None], found: Detections, propagated,
                 stride4: torch.Tensor, shape: tuple[int, int]) -> None:
        """A propagated target whose mask a detection matches (IoU above `dyenet.overlap_iou`) that
        its templates re-identify above `dyenet.restart_similarity` is a starting point again, as
        in the offline mode: Re-MP restarts from that detection's mask, which is this frame's."""
        cfg = self.config.dyenet
        for k, result in enumerate(results):
            if result is None or not len(found.boxes):
                continue
            iou = mask_iou((pasted(result.prob, result.run.box, shape) > 0.5)[None], found.masks)[0]
            similarity = (found.embeddings @ targets[k].state.templates.T).max(1).values.cpu().numpy()
            r = int(np.argmax(np.where(iou > cfg.overlap_iou, similarity, -np.inf)))
            if iou[r] > cfg.overlap_iou and similarity[r] > cfg.restart_similarity:
                mask = pasted(found.probs[r], tuple(found.boxes[r].tolist()), shape)
                run = self.begin(propagated, stride4, mask)
                if run is not None:
                    results[k] = Propagated(run, on_grid(mask, run.box, REMP_SIZE), run.start_area)

    def commit(self, frame: FrameSegmentation, found: list[Segment]) -> None:
        found_ids = {s.target.id for s in found}
        for segment, run in zip(frame.segments, frame.context):
            segment.target.state.run = run if segment.target.id in found_ids else None
