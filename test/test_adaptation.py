"""First-frame adaptation (inference/adaptation.py): pairs dreamt from the annotated frame, a deterministic
fit that lowers the MRN loss on them, and the engine's refit on add and restore on reset."""

import cv2
import numpy as np
import pytest
import torch

from vos_ros.config import load_config
from vos_ros.data.synthetic import make_clip
from vos_ros.inference import Tracker
from vos_ros.data.pairs import FirstFramePairs


@pytest.fixture(scope="module")
def clip():
    return make_clip(6, (320, 240), num_objects=2, seed=4)


def test_first_frame_pairs_move_the_target_and_keep_the_other_objects(clip):
    image, labels = clip.frames[0], clip.labels[0]
    pairs = FirstFramePairs(image, labels, [1, 2])
    pair = pairs.sample(np.random.default_rng(0), 1)
    assert pair.prev_mask.any() and pair.mask.any()
    assert not np.array_equal(pair.prev_mask, labels == 1) and not np.array_equal(pair.mask, pair.prev_mask)
    assert pair.ref_image is image and np.array_equal(pair.ref_mask, labels == 1)
    # Object 2 stays where it is in the previous view, except near object 1's old place (inpainted)
    # and new place (pasted over it, with a feathered edge).
    def near(mask, pixels):
        return cv2.dilate(mask.astype(np.uint8), np.ones((pixels, pixels), np.uint8)) > 0

    keep = (labels == 2) & ~near(labels == 1, FirstFramePairs.HOLE_MARGIN) & ~near(pair.prev_mask, 9)
    assert keep.sum() > 100
    assert np.abs(pair.prev_image[keep].astype(int) - image[keep].astype(int)).mean() < 2
    # Object 1's own place is filled with background, not left as a copy of it.
    hole = (labels == 1) & ~pair.prev_mask
    assert np.abs(pair.prev_image[hole].astype(int) - image[hole].astype(int)).mean() > 10


def _mrn_state(tracker):
    return {k: v.clone() for k, v in tracker.backend.model.mrn.state_dict().items()}


def test_add_refits_the_mrn_deterministically_and_reset_restores_the_offline_weights(clip):
    config = load_config("cpu", {"adaptation.iterations": 15, "adaptation.examples": 8})
    tracker = Tracker.from_config(config)
    offline = _mrn_state(tracker)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    report = tracker.last_adaptation
    assert report.target_ids == [1, 2] and report.pairs == 16 and report.seconds > 0
    assert report.loss_after < report.loss_before
    adapted = _mrn_state(tracker)
    assert any(not torch.equal(offline[k], adapted[k]) for k in offline)
    tracker.step(clip.frames[1])

    tracker.reset()
    assert all(torch.equal(offline[k], v) for k, v in _mrn_state(tracker).items())
    tracker.add_targets(clip.frames[0], clip.labels[0])
    assert all(torch.equal(adapted[k], v) for k, v in _mrn_state(tracker).items())

    # A removed target's pairs leave later fits: re-adding object 1 alone fits its pairs only.
    tracker.remove_targets([2])
    tracker.add_targets(clip.frames[0], np.where(clip.labels[0] == 1, 1, 0))
    assert tracker.last_adaptation.target_ids == [1] and tracker.last_adaptation.pairs == 8


def test_adaptation_off_or_unsupported_leaves_the_offline_mrn(clip):
    tracker = Tracker.from_config(load_config("cpu", {"adaptation.iterations": 0}))
    assert tracker.adaptation is None
    offline = _mrn_state(tracker)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    assert tracker.last_adaptation is None
    assert all(torch.equal(offline[k], v) for k, v in _mrn_state(tracker).items())


def test_background_adaptation_tracks_on_and_swaps_in_the_same_fit(clip):
    """adaptation.background: the add returns before the fit, steps run with the offline MRN until
    it ends, then the very weights a blocking add would give are swapped in; a reset drops a fit
    still running."""
    overrides = {"adaptation.iterations": 15, "adaptation.examples": 8}
    blocking = Tracker.from_config(load_config("cpu", overrides))
    blocking.add_targets(clip.frames[0], clip.labels[0])
    adapted = _mrn_state(blocking)

    tracker = Tracker.from_config(load_config("cpu", {**overrides, "adaptation.background": True}))
    offline = _mrn_state(tracker)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    assert tracker.adaptation_pending and tracker.last_adaptation is None  # still fitting
    result = tracker.step(clip.frames[1])
    assert [t.id for t in result.targets] == [1, 2]
    assert all(torch.equal(offline[k], v) for k, v in _mrn_state(tracker).items())
    tracker.wait_for_adaptation()
    report = tracker.last_adaptation
    assert not tracker.adaptation_pending and report.target_ids == [1, 2] and report.pairs == 16
    assert all(torch.equal(adapted[k], v) for k, v in _mrn_state(tracker).items())
    tracker.step(clip.frames[2])

    tracker.add_targets(clip.frames[3], clip.labels[3])
    tracker.reset()  # waits for the running fit, which must not be swapped in afterwards
    tracker.step(clip.frames[4])
    assert all(torch.equal(offline[k], v) for k, v in _mrn_state(tracker).items())
