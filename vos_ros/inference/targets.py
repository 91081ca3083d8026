"""Target state and the status policy: when a target is TRACKING, OCCLUDED, LOST or REIDENTIFIED.

Every method (inference/methods) proposes per-target probability windows for a frame;
this module merges them into one label map and decides each target's status from what
it got, in one place. Choices where the papers are silent:
- A target whose mask vanishes (area or mean probability too low), or no longer looks like
  its first frame (mean appearance match over the mask too low), is LOST: it outputs an
  empty mask and is searched for every frame (inference/lost_search.py).
- A lost target, or the small remnant of an occluded one, must clearly look like its first
  frame to count as found: `reacquire_bar`, lower for objects that matched their first
  frame less well while tracked (`reacquire_ratio`: a fixed bar lost a real occluded rider
  for good). Re-acquired, it is REIDENTIFIED for that frame.
- A target hidden by another target (it turns occluded while the others cover
  `occluder_cover` of the last mask it had whole) is held where it was last seen whole,
  not moved by the flow (the flow there is the occluder's): for up to
  `occluder_hold_frames` frames it is OCCLUDED, the method segments that place with that
  mask as prior, and it keeps the pixels it finds there that are outside the other
  targets' propagated masks (the occluder stays in front where it goes). An object that
  stays put behind a passing one is then found in place, which the lost search's
  appearance ranking failed to do between two alike dogs.
- Per-target state is a fixed set of arrays: memory does not grow with video length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..config import TrackingConfig
from ..model.geometry import Box, box_size, mask_box
from .merge import merge_windows
from .types import FrameResult, Stream, TargetResult, TargetStatus


def reacquire_bar(tracking: TrackingConfig, appearance_level: float | None) -> float:
    """The appearance match a lost target's candidate, or an occluded target's remnant, must reach:
    lower for a target that matched its first frame less well while tracked (`appearance_level`)."""
    if appearance_level is None:
        return tracking.reacquire_appearance
    return max(tracking.lost_appearance, min(tracking.reacquire_appearance, tracking.reacquire_ratio * appearance_level))


@dataclass
class Target:
    """What every method shares about one target; `state` is the method's own (DTN: embeddings,
    first-frame reference, memory)."""

    id: int
    prev_mask: np.ndarray  # float32 at the method's mask resolution (DTN: the flow's)
    box: Box  # last known box, frame pixels
    ref_area: float  # running area while TRACKING: the reference for OCCLUDED
    score: float = 1.0
    appearance_level: float | None = None  # smoothed mean appearance match while TRACKING
    # From the first frame on, updated while it is seen whole:
    tracked_size: tuple[float, float] = field(init=False)  # (w, h) of its box: a lost search's scale
    whole_mask: np.ndarray = field(init=False)  # its prev_mask: where it is held behind another target
    whole_box: Box = field(init=False)
    held_frames: int = 0  # frames held in place behind another target (0: not held)
    status: TargetStatus = TargetStatus.TRACKING
    frames_lost: int = 0
    state: Any = None

    def __post_init__(self):
        self.tracked_size = box_size(self.box)
        self.whole_mask, self.whole_box = self.prev_mask, self.box

    @property
    def follows_flow(self) -> bool:
        """Its previous mask is carried into this frame: neither lost nor held in place."""
        return self.status != TargetStatus.LOST and not self.held_frames


@dataclass
class Segment:
    """One target's prediction in one frame, before the targets are merged."""

    target: Target
    stream: Stream = Stream.BP
    window: tuple[np.ndarray, tuple[int, int]] | None = None  # probabilities and their (x, y) in the frame
    appearance: float = 1.0  # mean first-frame appearance match over the predicted mask
    propagated: np.ndarray | None = None  # its previous mask carried into this frame (mask resolution)


@dataclass
class FrameSegmentation:
    """A method's proposal for one frame; `context` is its own working data for `commit`."""

    segments: list[Segment]
    confidence: float
    stream: Stream
    timings: dict[str, float] = field(default_factory=dict)
    context: Any = None


def update_targets(frame: FrameSegmentation, width: int, height: int, tracking: TrackingConfig,
                   mask_threshold: float, mask_size: tuple[int, int]) -> tuple[FrameResult, list[Segment]]:
    """Merge the windows into one label map, update every target's state and status; the
    result, and the segments of the targets found (whose method state is to be refreshed).
    `mask_size`: (w, h) of the targets' previous masks."""
    segmented = [s for s in frame.segments if s.window is not None]
    labels, scores = merge_windows([s.window for s in segmented], [s.target.id for s in segmented], height, width,
                                   mask_threshold, _held_claims(segmented, width, height))
    min_area = tracking.min_area_fraction * width * height
    results, found_segments = [], []
    for segment in frame.segments:
        target = segment.target
        mask = labels == target.id
        area = int(mask.sum())
        score = scores.get(target.id, 0.0)
        was_lost = target.status == TargetStatus.LOST
        occluded = area < tracking.occluded_area_ratio * target.ref_area
        # A lost target, or the small remnant of an occluded one, must clearly look like the
        # first frame: a vanished object's warped mask shrinks onto background that still
        # matches 0.5-0.6 (synthetic clip), as low as whole objects do on real video (0.56).
        strict = was_lost or occluded or target.held_frames > 0
        min_appearance = reacquire_bar(tracking, target.appearance_level) if strict else tracking.lost_appearance
        found = area >= min_area and score >= tracking.lost_score and segment.appearance >= min_appearance
        if not was_lost and _holds(target, occluded, found, labels, mask, tracking):
            if not found:
                labels[mask] = 0
                mask, area, score = np.zeros_like(mask), 0, 0.0
            target.held_frames += 1
            target.status = TargetStatus.OCCLUDED
            target.prev_mask, target.box = target.whole_mask, target.whole_box
            results.append(TargetResult(target.id, mask, mask_box(mask) if area else None, score,
                                        TargetStatus.OCCLUDED, segment.stream, frame.confidence, area))
            continue
        target.held_frames = 0
        if not found:
            labels[mask] = 0  # a lost target's pixels leave the label map too
            target.status = TargetStatus.LOST
            target.frames_lost += 1
            target.prev_mask = np.zeros(mask_size[::-1], np.float32)
            target.score = 0.0
            results.append(TargetResult(target.id, np.zeros((height, width), bool), None, 0.0,
                                        TargetStatus.LOST, segment.stream, frame.confidence, 0))
            continue
        target.box = mask_box(mask)
        if was_lost:
            target.status = TargetStatus.REIDENTIFIED
        elif occluded:
            target.status = TargetStatus.OCCLUDED
        else:
            target.status = TargetStatus.TRACKING
            if not (tracking.frame_edge_occludes and _at_frame_edge(target.box, width, height)):
                target.ref_area = tracking.area_ema * target.ref_area + (1 - tracking.area_ema) * area
            level = target.appearance_level
            target.appearance_level = segment.appearance if level is None else (
                tracking.appearance_ema * level + (1 - tracking.appearance_ema) * segment.appearance)
        target.frames_lost = 0
        if target.status == TargetStatus.TRACKING:
            target.tracked_size = box_size(target.box)
        target.score = score
        target.prev_mask = cv2.resize(mask.astype(np.float32), mask_size, interpolation=cv2.INTER_AREA)
        if target.status == TargetStatus.TRACKING and area >= tracking.whole_area_ratio * target.ref_area:
            target.whole_mask, target.whole_box = target.prev_mask, target.box
        found_segments.append(segment)
        results.append(TargetResult(target.id, mask, target.box, score, target.status, segment.stream,
                                    frame.confidence, area))
    return FrameResult(results, labels, frame.confidence, frame.stream), found_segments


def _at_frame_edge(box: Box, width: int, height: int, margin: float = 2.0) -> bool:
    """Whether the box touches the frame's border: the object may be partly out of view."""
    x1, y1, x2, y2 = box
    return x1 <= margin or y1 <= margin or x2 >= width - margin or y2 >= height - margin


def _holds(target: Target, occluded: bool, found: bool, labels: np.ndarray, mask: np.ndarray,
           tracking: TrackingConfig) -> bool:
    """Whether a target not lost is held in place behind another target this frame: a held one
    until it is found whole again or the hold runs out; another when it turns occluded while
    the other targets' pixels cover its last whole mask."""
    if target.held_frames:
        return (occluded or not found) and target.held_frames < tracking.occluder_hold_frames
    if not (occluded and tracking.occluder_hold_frames):
        return False
    whole = target.whole_mask > 0.5
    fh, fw = whole.shape
    others = cv2.resize(((labels != 0) & ~mask).astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA) > 0.5
    return (whole & others).sum() >= tracking.occluder_cover * max(whole.sum(), 1)


def _held_claims(segmented: list[Segment], width: int, height: int) -> dict[int, np.ndarray]:
    """Per held target, the pixels of its window outside every other (moving) target's propagated
    mask: merge_windows gives it what it finds there; the occluder keeps where it goes."""
    held = [s for s in segmented if s.target.held_frames]
    if not held:
        return {}
    front = np.zeros((height, width), bool)
    for s in segmented:
        if not s.target.held_frames and s.propagated is not None:
            front |= cv2.resize(s.propagated, (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
    return {s.target.id: ~front[y:y + w.shape[0], x:x + w.shape[1]] for s in held for w, (x, y) in [s.window]}
