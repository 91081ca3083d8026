"""The frame's border occludes (tracking.frame_edge_occludes): an object sliding out of view turns
OCCLUDED, and then must pass the strict appearance bar, instead of shrinking its reference area with
it and following its last sliver onto the background."""

from dataclasses import replace

import numpy as np

from vos_ros.config import TrackingConfig
from vos_ros.inference.targets import FrameSegmentation, Segment, Target, update_targets
from vos_ros.inference.types import Stream, TargetStatus

W, H = 200, 100


def slide_out(tracking: TrackingConfig, background_match: float = 0.45) -> list[TargetStatus]:
    """A 40x40 object moving right by 3 px a frame out through the right border (as slowly as
    objects leave the view in the demo scene), while the predicted mask also keeps a 10 px strip of
    background at the border, as the MRN did there (it never empties). The mask keeps a good
    score; its appearance match falls from 0.9 towards `background_match` as less of it is the
    object."""
    target = Target(id=1, prev_mask=np.zeros((H, W), np.float32), box=(150, 30, 190, 70), ref_area=1600.0)
    statuses = []
    for step in range(1, 25):
        x1 = 150 + 3 * step
        window = np.zeros((H, W), np.float32)
        window[30:70, x1:x1 + 40] = 0.95
        window[30:70, W - 10:] = 0.95
        object_share = max(0, min(x1 + 40, W) - x1) / (W - min(x1, W - 10))
        appearance = background_match + (0.9 - background_match) * object_share
        frame = FrameSegmentation([Segment(target, Stream.BP, (window, (0, 0)), appearance)], 0.9, Stream.BP)
        result, _ = update_targets(frame, W, H, tracking, 0.5, (W, H))
        statuses.append(result.targets[0].status)
        if statuses[-1] == TargetStatus.LOST:
            break  # a lost target's search is not simulated here
    return statuses


def test_sliding_out_of_view_turns_occluded_then_lost():
    statuses = slide_out(TrackingConfig(frame_edge_occludes=True))
    assert TargetStatus.OCCLUDED in statuses and statuses[-1] == TargetStatus.LOST
    # Without the rule the reference area follows the shrinking visible part: tracked to the last sliver.
    assert set(slide_out(replace(TrackingConfig(), frame_edge_occludes=False))) == {TargetStatus.TRACKING}
    # A target whose every visible pixel still looks like itself stays (occluded) while partly out of view.
    assert TargetStatus.LOST not in slide_out(TrackingConfig(frame_edge_occludes=True), background_match=0.9)
