"""`vos-ros reacquire`: how a tracker re-acquires an object that was hidden for long.

Synthetic clips (data/synthetic.py make_clip): two objects; object 1 is hidden for
HIDDEN_FRAMES frames and comes back on the other side of the frame, while an unlabelled
look-alike of it (its shape, its colours reversed) moves about all along. Per clip:
- frames to re-acquire: from object 1's return to the first frame its mask overlaps the
  ground truth at IoU >= FOUND_IOU (None: not within the clip);
- false frames: hidden frames on which object 1 is reported with a non-empty mask (on the
  look-alike, or wherever it is stuck);
- false re-acquisitions: REIDENTIFIED reports while it is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.synthetic import make_clip
from ..inference.types import TargetStatus
from ..inference.video import segment_video
from .metrics import jaccard

HIDE_START, HIDDEN_FRAMES, AFTER = 20, 32, 28
FOUND_IOU = 0.5
SIZE = (640, 360)


@dataclass
class Reacquisition:
    seed: int
    frames_to_reacquire: int | None
    false_frames: int
    false_reacquisitions: int


def long_occlusion_clip(seed: int):
    return make_clip(HIDE_START + HIDDEN_FRAMES + AFTER, SIZE, num_objects=2, seed=seed,
                     hide=(HIDE_START, HIDE_START + HIDDEN_FRAMES), lookalike=True)


def reacquisition(tracker, seed: int) -> Reacquisition:
    clip = long_occlusion_clip(seed)
    back = HIDE_START + HIDDEN_FRAMES
    reports: list[tuple[TargetStatus, bool]] = [(TargetStatus.TRACKING, True)]  # frame 0: given

    def record(index, frame, result):
        target = next(t for t in result.targets if t.id == 1)
        reports.append((target.status, bool(target.mask.any())))

    run = segment_video(tracker, clip.frames, clip.labels[0], record)
    hidden = range(HIDE_START, back)
    found = [t for t in range(back, len(clip.frames)) if jaccard(run.labels[t] == 1, clip.labels[t] == 1) >= FOUND_IOU]
    return Reacquisition(seed, found[0] - back if found else None, sum(reports[t][1] for t in hidden),
                         sum(reports[t][0] == TargetStatus.REIDENTIFIED for t in hidden))


def summary(rows: list[Reacquisition]) -> str:
    found = [r.frames_to_reacquire for r in rows if r.frames_to_reacquire is not None]
    return (f"re-acquired {len(found)}/{len(rows)}, frames to re-acquire median "
            f"{np.median(found) if found else float('nan'):.1f}, false frames {sum(r.false_frames for r in rows)} "
            f"of {HIDDEN_FRAMES * len(rows)}, false re-acquisitions {sum(r.false_reacquisitions for r in rows)}")
