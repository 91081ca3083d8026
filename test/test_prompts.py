"""Prompt segmenters (no ROS): GrabCut on a synthetic sprite, the learnt network, prompt-eval."""

import numpy as np
import pytest

from vos_ros.data.synthetic import make_clip
from vos_ros.prompts import Prompt
from vos_ros.prompts.grabcut import GrabCutSegmenter


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def frame_and_object():
    clip = make_clip(num_frames=2, size=(320, 240), num_objects=1, seed=3)
    return clip.frames[0], clip.labels[0] == 1


GRABCUT = GrabCutSegmenter()


def test_grabcut_box_prompt_recovers_the_object(frame_and_object):
    image, truth = frame_and_object
    ys, xs = np.nonzero(truth)
    mask = GRABCUT.segment(image, Prompt(box=(xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3)))
    assert iou(mask, truth) > 0.7


def test_grabcut_polygon_and_point_prompts(frame_and_object):
    image, truth = frame_and_object
    ys, xs = np.nonzero(truth)
    polygon = ((xs.min() - 3, ys.min() - 3), (xs.max() + 3, ys.min() - 3), (xs.max() + 3, ys.max() + 3),
               (xs.min() - 3, ys.max() + 3))
    assert iou(GRABCUT.segment(image, Prompt(polygon=polygon)), truth) > 0.7
    point_mask = GRABCUT.segment(image, Prompt(positives=((xs.mean(), ys.mean()),)))
    assert point_mask[int(ys.mean()), int(xs.mean())] and iou(point_mask, truth) > 0.3


def test_prompt_errors(frame_and_object):
    image, _ = frame_and_object
    with pytest.raises(ValueError, match="outside"):
        GRABCUT.segment(image, Prompt(positives=((1000, 5),)))
    with pytest.raises(ValueError, match="at least 3 points"):
        GRABCUT.segment(image, Prompt(polygon=((1.0, 2.0),)))
    with pytest.raises(ValueError, match="needs a box"):
        GRABCUT.segment(image, Prompt(negatives=((1.0, 2.0),)))
