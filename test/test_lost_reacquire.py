"""Lost / re-acquire with the shipped weights on a synthetic clip.

Object 1 disappears for 14 frames and comes back on the other side of the
frame: it must be reported LOST while hidden (not stuck on a wrong region), and
found again (REIDENTIFIED, then tracked) after it returns; object 2 is not
disturbed meanwhile. How long each object is then followed is tracking quality
(issue 3), not this contract: on this clip both drift 10-15 frames after a fresh
start (noisy panning background, rotating striped sprites).
"""

import numpy as np
import pytest

from clip_runs import segment_with_statuses
from vos_ros.config import TrackingConfig
from vos_ros.data.synthetic import make_clip
from vos_ros.eval.metrics import jaccard
from vos_ros.inference import TargetStatus
from vos_ros.inference.targets import reacquire_bar

HIDE = (20, 34)
AFTER = 8  # frames scored after the re-identification
# While lost, the engine looks where the target was last seen every other frame and scans the
# frame's 15 tiles (nearest first) on the frames between. Object 1 was found on its first frame
# back with adaptation and 3 frames after without; before the scan alternated it was found 2
# frames after without adaptation and never with it (its tile came round too late, by when the
# rotating sprite no longer matched).
FOUND_WITHIN = 8


@pytest.mark.parametrize("iterations", [50, 0], ids=["adapted", "offline"])
def test_hidden_object_is_lost_then_reidentified(cpu_tracker_factory, iterations):
    # 50: the cpu configuration's first-frame adaptation; 0: the node's default (adaptation off).
    tracker = cpu_tracker_factory(**{"adaptation.iterations": iterations})
    clip = make_clip(60, (854, 480), num_objects=2, seed=7, hide=HIDE)
    run, statuses = segment_with_statuses(tracker, clip)
    s1 = statuses[1]  # s1[i] is frame i + 1
    hidden = s1[HIDE[0] + 1 - 1:HIDE[1] - 1]
    assert sum(s == TargetStatus.LOST for s in hidden) >= len(hidden) - 2, s1
    back = s1[HIDE[1] - 1:]
    assert TargetStatus.REIDENTIFIED in back[:FOUND_WITHIN], s1
    found = back.index(TargetStatus.REIDENTIFIED) + HIDE[1]
    ious = [jaccard(run.labels[i] == 1, clip.labels[i] == 1) for i in range(found, found + AFTER)]
    assert np.mean(ious) > 0.6, ious
    ious_2 = [jaccard(run.labels[i] == 2, clip.labels[i] == 2) for i in range(1, HIDE[1])]
    assert np.mean(ious_2) > 0.6, ious_2


def test_reacquire_bar_follows_the_targets_own_match():
    """The bar is the configured one until the target has been tracked, then ratio x its own
    level (a rider tracked at 0.72 keeps its 0.66 occluded remnant), never above the configured
    bar nor below lost_appearance."""
    tracking = TrackingConfig(lost_appearance=0.4, reacquire_appearance=0.65, reacquire_ratio=0.8)
    assert reacquire_bar(tracking, None) == 0.65
    assert reacquire_bar(tracking, 0.72) == pytest.approx(0.576)
    assert reacquire_bar(tracking, 0.955) == 0.65
    assert reacquire_bar(tracking, 0.3) == 0.4
