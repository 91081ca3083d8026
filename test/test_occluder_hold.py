"""A target hidden by another target, with the shipped weights on a synthetic clip.

Object 2, twice object 1's size, passes in front of object 1, which stands
still: object 1 must be reported OCCLUDED while covered, never LOST, and be
segmented again where it stood as soon as it is uncovered; object 2 must not be
disturbed by it. Without the hold (tracking.occluder_hold_frames 0) object 1
stayed OCCLUDED on a wrong remnant (IoU 0) to the end of this clip.
"""

import numpy as np

from clip_runs import segment_with_statuses
from vos_ros.data.synthetic import make_clip
from vos_ros.eval.metrics import jaccard
from vos_ros.inference import TargetStatus

CROSS_AT = 20  # object 2 is centred on object 1 at this frame
UNCOVERED = 25  # from here on most of object 1 is visible again (0.7-0.9 of its area)


def test_object_hidden_by_another_target_is_held_and_found_in_place(cpu_tracker_factory):
    tracker = cpu_tracker_factory()
    clip = make_clip(40, (854, 480), num_objects=2, seed=5, cross_at=CROSS_AT)
    first_area = (clip.labels[0] == 1).sum()
    covered = [i for i, label in enumerate(clip.labels) if (label == 1).sum() < 0.1 * first_area]
    assert covered and UNCOVERED > max(covered)  # the clip hides object 1 completely for a while
    run, statuses = segment_with_statuses(tracker, clip)
    s1 = statuses[1]  # s1[i] is frame i + 1
    assert TargetStatus.LOST not in s1, s1
    assert all(s1[i - 1] == TargetStatus.OCCLUDED for i in covered), s1
    ious_1 = [jaccard(run.labels[i] == 1, clip.labels[i] == 1) for i in range(UNCOVERED, 40)]
    assert np.mean(ious_1) > 0.7, ious_1
    ious_2 = [jaccard(run.labels[i] == 2, clip.labels[i] == 2) for i in range(1, 40)]
    assert np.mean(ious_2) > 0.8, ious_2
