import numpy as np
import pytest
from std_msgs.msg import Header

from vos_ros.data.synthetic import make_clip
from vos_ros.ros import prompts
from vos_ros.ros.frame_ring import Frame, FrameNotBuffered, FrameRing


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def frame_and_object():
    clip = make_clip(num_frames=2, size=(320, 240), num_objects=1, seed=3)
    return clip.frames[0], clip.labels[0] == 1


def test_box_prompt_recovers_the_object(frame_and_object):
    image, truth = frame_and_object
    ys, xs = np.nonzero(truth)
    mask = prompts.mask_from_box(image, (xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3))
    assert iou(mask, truth) > 0.7


def test_polygon_and_point_prompts(frame_and_object):
    image, truth = frame_and_object
    ys, xs = np.nonzero(truth)
    polygon = [(xs.min() - 3, ys.min() - 3), (xs.max() + 3, ys.min() - 3), (xs.max() + 3, ys.max() + 3),
               (xs.min() - 3, ys.max() + 3)]
    assert iou(prompts.mask_from_polygon(image, np.array(polygon)), truth) > 0.7
    point_mask = prompts.mask_from_point(image, xs.mean(), ys.mean())
    assert point_mask[int(ys.mean()), int(xs.mean())] and iou(point_mask, truth) > 0.3


def test_prompt_errors(frame_and_object):
    image, _ = frame_and_object
    with pytest.raises(ValueError, match="outside"):
        prompts.mask_from_point(image, 1000, 5)
    with pytest.raises(ValueError, match="at least 3 points"):
        prompts.mask_from_polygon(image, np.array([[1.0, 2.0]]))


def _frame(sec):
    header = Header()
    header.stamp.sec = sec
    return Frame(header, np.zeros((2, 2, 3), np.uint8))


def test_frame_ring_lookup():
    ring = FrameRing(3)
    for sec in range(1, 6):
        ring.append(_frame(sec))
    assert ring.find(4 * 10**9) == 1
    ring.frames[1].processed = True
    assert [f.stamp_ns for f in ring.processed_after(0)] == [4 * 10**9]
    with pytest.raises(FrameNotBuffered, match="older than the oldest") as old:
        ring.find(1 * 10**9)
    assert not old.value.too_new
    with pytest.raises(FrameNotBuffered) as new:
        ring.find(9 * 10**9)
    assert new.value.too_new
