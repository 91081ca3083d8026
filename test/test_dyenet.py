"""DyeNet (model/dyenet.py, inference/methods/dyenet.py and dyenet_offline.py): the OIM loss,
the flow-warped hidden state, region attention, re-identification, the method behind the
engine, its offline mode. Its training, weights and backends: test_detector_methods.py."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vos_ros.config import load_config
from vos_ros.data.synthetic import make_clip
from vos_ros.eval.metrics import jaccard
from vos_ros.eval.reacquire import HIDDEN_FRAMES, long_occlusion_clip, reacquisition
from vos_ros.inference import Tracker
from vos_ros.inference.methods.detections import Detections
from vos_ros.inference.methods.dyenet_offline import Tracklet, link
from vos_ros.inference.video import segment_video, segment_video_offline
from vos_ros.model.dyenet import REMP_POOL, ReMP, oim_loss, warp_hidden


def small_config(**overrides):
    return load_config("cpu", {"method": "dyenet", "lip.channels": 16, "dyenet.height": 64, **overrides})


@pytest.fixture(scope="module")
def untrained_dyenet():
    return Tracker.from_config(small_config(), untrained=True)


def test_oim_pulls_each_embedding_to_its_identity_and_ignores_once_seen_ones_as_anchors():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    apart = torch.stack([a, a, b, b])
    mixed = torch.nn.functional.normalize(torch.stack([a, b + 0.1 * a, b, a + 0.1 * b]), dim=1)
    labels = torch.tensor([1, 1, 2, 2])
    assert float(oim_loss(apart, labels)) < float(oim_loss(mixed, labels))
    assert float(oim_loss(apart, torch.tensor([1, 2, 3, 4]))) == 0.0  # no identity is seen twice
    apart.requires_grad_(True)
    oim_loss(apart, torch.tensor([1, 1, 2, -1])).backward()  # the once-seen one is a negative only
    assert apart.grad is not None and torch.isfinite(apart.grad).all()


def test_the_hidden_state_follows_the_flow_into_the_new_box():
    hidden = torch.randn(1, 4, REMP_POOL, REMP_POOL)
    box = torch.tensor([[10.0, 20.0, 66.0, 76.0]])  # 2 pixels per cell
    still = warp_hidden(hidden, box, box, torch.zeros(1, 2, REMP_POOL, REMP_POOL))
    assert torch.allclose(still, hidden, atol=1e-5)
    moved = box + torch.tensor([[8.0, 0.0, 8.0, 0.0]])  # the object moved 8 pixels right: 4 cells
    flow = torch.zeros(1, 2, REMP_POOL, REMP_POOL)
    flow[:, 0] = -8.0  # each pixel came from 8 pixels to its left
    warped = warp_hidden(hidden, box, moved, flow)
    assert torch.allclose(warped, hidden, atol=1e-5)  # the same cells, on the moved box
    shifted = warp_hidden(hidden, box, box, flow)  # the box kept still: the content moved 4 cells
    assert torch.allclose(shifted[..., 4:], hidden[..., :-4], atol=1e-5)
    assert float(shifted[..., :3].abs().max()) == 0.0  # sources off the previous grid: zeros


def test_an_untrained_remp_returns_the_mask_it_was_given_and_attends_uniformly():
    remp = ReMP(8, 3).eval()
    features = torch.randn(2, 8, REMP_POOL, REMP_POOL)
    prior = torch.zeros(2, 1, REMP_POOL, REMP_POOL)
    prior[:, :, 8:20, 6:22] = 1.0
    hidden = remp.start(features, prior)
    attention = remp.region_attention(hidden)
    assert attention.shape == prior.shape and torch.allclose(attention, torch.ones_like(attention), atol=0.05)
    fine = torch.nn.functional.interpolate(prior, scale_factor=2)
    new_hidden, logits = remp(features, prior, hidden, torch.randn(2, 3, 2 * REMP_POOL, 2 * REMP_POOL), fine)
    assert new_hidden.shape == hidden.shape
    assert torch.equal(torch.sigmoid(logits) > 0.5, fine > 0.5)


def _detections(embeddings: torch.Tensor) -> Detections:
    count = len(embeddings)
    return Detections(torch.zeros(count, 4), np.zeros((count, 4, 4), bool), [None] * count, np.zeros(count, bool),
                      embeddings)


def test_reidentification_takes_the_most_similar_pairs_above_the_bar_each_detection_once(untrained_dyenet):
    method = untrained_dyenet.method
    x, y, z = torch.eye(3)
    found = _detections(torch.stack([x, 0.9 * x + 0.44 * y, z]))
    picks = method.reidentify(found, [x[None], x[None], z[None], y[None]], None)
    assert [p and p[0] for p in picks] == [0, 1, 2, None]  # the second takes the next most similar; y: below 0.7
    excluded = method.reidentify(found, [x[None]], np.array([True, False, False]))
    assert excluded[0][0] == 1


def test_dyenet_segments_through_the_engine_with_a_fixed_state(untrained_dyenet):
    tracker = untrained_dyenet
    clip = make_clip(6, (160, 96), num_objects=2, seed=3)
    tracker.reset()
    assert tracker.add_targets(clip.frames[0], clip.labels[0]) == [1, 2]
    shapes = set()
    for k in range(100):
        result = tracker.step(clip.frames[1 + k % 5])
        assert result.labels.shape == (96, 160) and {t.id for t in result.targets} == {1, 2}
        for target in tracker._targets.values():
            state = target.state
            shapes.add((tuple(state.templates.shape), None if state.run is None else tuple(state.run.hidden.shape)))
    assert len({s[0] for s in shapes}) == 1 and len({s[1] for s in shapes if s[1]}) == 1  # memory stays flat
    tracker.remove_targets([2])
    assert {t.id for t in tracker.step(clip.frames[1]).targets} == {1}


def test_linking_merges_what_agrees_and_drops_what_contradicts():
    def tracklet(obj, score, frames):
        out = Tracklet(obj, score)
        for t, (x, y) in frames.items():
            mask = np.zeros((20, 20), bool)
            mask[y:y + 6, x:x + 6] = True
            out.masks[t] = mask
            out.frames[t] = (None, None)
        return out

    first = tracklet(1, 1.0, {0: (0, 0), 1: (1, 0)})
    later = tracklet(1, 0.9, {1: (1, 0), 2: (2, 0), 3: (3, 0)})  # agrees with `first` on frame 1
    elsewhere = tracklet(1, 0.8, {3: (12, 12)})  # object 1 is at (3, 0) on frame 3
    other = tracklet(2, 0.85, {2: (2, 1)})  # on object 1's mask
    assert link([elsewhere, later, other, first], 0.5) == [first, later]


def test_the_offline_mode_runs_the_whole_clip_and_refuses_other_methods(untrained_dyenet):
    clip = make_clip(6, (160, 96), num_objects=2, seed=3)
    run = segment_video_offline(untrained_dyenet, clip.frames, clip.labels[0])
    assert len(run.labels) == 6 and all(labels.shape == (96, 160) for labels in run.labels)
    assert np.array_equal(run.labels[0], clip.labels[0])
    lip = Tracker.from_config(load_config("cpu", {"method": "lip", "lip.channels": 16, "lip.height": 64}),
                              untrained=True)
    with pytest.raises(ValueError, match="needs method dyenet"):
        segment_video_offline(lip, clip.frames, clip.labels[0])


@pytest.fixture(scope="module")
def shipped_dyenet():
    return Tracker.from_config(load_config("cpu", {"method": "dyenet"}))


def test_dyenet_loses_an_object_hidden_for_long_and_reacquires_it(shipped_dyenet):
    """Shipped weights, a `vos-ros reacquire` clip (object 1 hidden for 32 frames, a recoloured
    look-alike about all along): Re-MP aborts while it is away (reported lost for part of the
    time), and it is found again soon after it returns. The look-alike is not yet told apart:
    on this seed one false re-identification while hidden (the issue's open point;
    docs/experiments.md)."""
    row = reacquisition(shipped_dyenet, seed=0)
    assert row.frames_to_reacquire is not None and row.frames_to_reacquire <= 5, row
    assert row.false_frames < HIDDEN_FRAMES, row


def test_the_offline_mode_improves_on_the_online_mode_on_the_same_clip(shipped_dyenet):
    """Seed 0's clip: the returning object's tracklet is propagated back to its return (mean J
    0.288 online, 0.540 offline). Not on every clip: seeds 1 and 2 tie or lose (experiments)."""
    clip = long_occlusion_clip(0)
    truth = [labels == 1 for labels in clip.labels]

    def mean_j(labels):
        return float(np.mean([jaccard(labels[t] == 1, truth[t]) for t in range(1, len(truth))]))

    online = mean_j(segment_video(shipped_dyenet, clip.frames, clip.labels[0]).labels)
    offline = mean_j(segment_video_offline(shipped_dyenet, clip.frames, clip.labels[0]).labels)
    assert offline > online + 0.02, (online, offline)


def test_segment_offline_from_the_command_line(tmp_path, davis_root):
    exe = Path(sys.executable).with_name("vos-ros")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vos_ros.cli.main"]
    out = tmp_path / "pred"
    run = subprocess.run(cmd + ["segment", "--davis", str(davis_root), "--sequences", "alpha", "--out", str(out),
                                "--method", "dyenet", "--offline"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "alpha: " in run.stdout and "BR" not in run.stdout  # no BR share for a method without BR
    assert len(list((out / "alpha").glob("*.png"))) == len(list((davis_root / "JPEGImages" / "480p" / "alpha").iterdir()))
    refused = subprocess.run(cmd + ["segment", "--davis", str(davis_root), "--out", str(out), "--method", "lip",
                                    "--offline"], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "needs method dyenet" in refused.stderr
