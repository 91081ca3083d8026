"""LIP (model/lip.py, inference/methods/lip.py and lip_fit.py, training/lip_trainer.py): the
Conv-GRU memory, the heads' geometry, the online rules, the first-frame fit, the method behind
the engine, its backends and its training on the embedded synthetic data."""

import json

import pytest
import torch

from vos_ros.backends.base import BackendUnavailable
from vos_ros.backends.lip import lip_profiles
from vos_ros.backends.onnx_export import LIP_GRAPHS, LIP_SET, read_manifest
from vos_ros.config import load_config
from vos_ros.data.synthetic import make_clip
from vos_ros.inference import Tracker
from vos_ros.inference.methods.lip import LIPState, local_boxes, mask_grid_box, roi_counts
from vos_ros.model.lip import LIP, ConvGRU, decode_boxes, encode_boxes, heatmap_boxes
from vos_ros.training.lip_trainer import LIPTrainSettings, train_lip

from tensorrt_profiles import assert_within_profiles, record_graph_inputs, tensorrt_and_cuda


def test_the_conv_gru_has_no_biases_and_its_state_stays_within_one():
    torch.manual_seed(0)
    gru = ConvGRU(8, 16)
    assert all(conv.bias is None for conv in (gru.x_gates, gru.h_gates, gru.h_candidate))  # GN instead (Eq. 1)
    h = torch.zeros(1, 16, 6, 6)
    with torch.no_grad():
        for _ in range(50):
            h = gru(torch.randn(1, 8, 6, 6) * 100, h)
    assert float(h.abs().max()) <= 1.0


def test_the_memory_keeps_the_levels_sizes_and_proposals_are_boxes():
    torch.manual_seed(0)
    model = LIP(channels=16).eval()
    with torch.no_grad():
        levels = model.backbone(torch.rand(1, 3, 96, 160))
        hidden, propagated, heatmap, size = model.memory(levels[1:], model.zero_hidden(levels))
    assert [h.shape[-2:] for h in hidden] == [(12, 20), (6, 10), (3, 5)]
    assert [p.shape for p in propagated] == [h.shape for h in hidden]
    assert heatmap.shape == (1, 1, 12, 20) and size.shape == (1, 2, 12, 20)
    boxes, scores = heatmap_boxes(heatmap, size, 5)
    assert boxes.shape == (5, 4) and bool((boxes[:, 2] > boxes[:, 0]).all()) and bool((scores[:-1] >= scores[1:]).all())


def test_local_proposals_surround_the_last_box_at_three_scales():
    boxes = local_boxes((10.0, 10.0, 30.0, 50.0))
    assert len(boxes) == 15 and boxes[5] == (10.0, 10.0, 30.0, 50.0)  # scale 1, in place
    assert {round(b[2] - b[0], 3) for b in boxes} == {16.0, 20.0, 25.0}


def test_box_deltas_decode_to_the_boxes_they_encode():
    proposals = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 8.0, 8.0]])
    boxes = torch.tensor([[12.0, 18.0, 60.0, 70.0], [1.0, 2.0, 5.0, 9.0]])
    assert torch.allclose(decode_boxes(proposals, encode_boxes(proposals, boxes)), boxes, atol=1e-4)


@pytest.fixture(scope="module")
def untrained_lip():
    config = load_config("cpu", {"method": "lip", "lip.channels": 16, "lip.height": 64})
    return Tracker.from_config(config, untrained=True)


def test_lip_tracks_through_the_engine_after_fitting_its_heads(untrained_lip):
    tracker = untrained_lip
    clip = make_clip(6, (160, 96), num_objects=2, seed=3)
    tracker.reset()
    assert tracker.add_targets(clip.frames[0], clip.labels[0]) == [1, 2]
    for frame in clip.frames[1:]:
        result = tracker.step(frame)
        assert result.labels.shape == (96, 160)
        assert {t.id for t in result.targets} == {1, 2}
    fit = tracker.method.last_fit
    assert 0 < fit["iterations"] <= tracker.config.lip.fit_iterations
    assert fit["id_after"] < fit["id_before"] and fit["mask_after"] < fit["mask_before"]
    tracker.remove_targets([2])
    assert set(tracker.method._examples) == {1}
    tracker.step(clip.frames[1])
    assert tracker.method._heads.id.out_features == 2  # refitted: background and the one target left


def test_the_memory_restarts_when_targets_are_added_and_on_reset(untrained_lip):
    tracker = untrained_lip
    clip = make_clip(4, (160, 96), num_objects=1, seed=5)
    tracker.reset()
    assert tracker.method._hidden is None
    tracker.add_targets(clip.frames[0], clip.labels[0])
    after_add = [h.clone() for h in tracker.method._hidden]
    tracker.step(clip.frames[1])
    tracker.step(clip.frames[2])
    tracker.add_targets(clip.frames[0], clip.labels[0])  # the same frame again: the same fresh memory
    for a, b in zip(after_add, tracker.method._hidden):
        assert torch.equal(a, b)
    tracker.reset()
    assert tracker.method._hidden is None and not tracker.method._examples


def test_static_memory_forgets_the_past_and_dynamic_memory_does_not():
    clip = make_clip(4, (128, 96), num_objects=1, seed=6)
    results = {}
    for memory in ("static", "dynamic"):
        config = load_config("cpu", {"method": "lip", "lip.channels": 16, "lip.height": 64, "lip.memory": memory})
        tracker = Tracker.from_config(config, untrained=True)
        frame = tracker.method.prepare(clip.frames[2])
        outputs = []
        for history in (clip.frames[0], clip.frames[1]):
            tracker.method._hidden = None
            tracker.method._remember(tracker.method.prepare(history))
            outputs.append(tracker.method._remember(frame)[1])
        results[memory] = torch.equal(*outputs)
    assert results == {"static": True, "dynamic": False}


def test_one_maximum_and_location_continuity(untrained_lip):
    method = untrained_lip.method
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 11, 11]])
    scores = torch.tensor([0.5, 0.9, 0.3])
    confident_here = LIPState((0.0, 0.0, 10.0, 10.0), 0.8)
    # The best-scoring detection is far from where a confident target was: suppressed, the next taken,
    # its box the score-weighted vote of the kept candidates overlapping it.
    box, score = method._choose(0, confident_here, scores, boxes)
    assert score == 0.5 and box == pytest.approx((0.375, 0.375, 10.375, 10.375))
    # Unsure last time (or lost): no continuity, the maximum wins.
    assert method._choose(0, LIPState((0.0, 0.0, 10.0, 10.0), 0.3), scores, boxes)[0] == (50.0, 50.0, 60.0, 60.0)
    # Nothing above the id bar: no detection.
    assert method._choose(0, confident_here, torch.tensor([0.1, 0.15, 0.2]), boxes) is None


def test_the_id_head_is_refitted_online_on_a_bounded_set_of_examples():
    config = load_config("cpu", {"method": "lip", "lip.channels": 16, "lip.height": 64, "lip.fit_id_loss": 0.0,
                                 "lip.update_score": 0.0, "lip.update_every": 2, "lip.update_memory": 3})
    tracker = Tracker.from_config(config, untrained=True)
    clip = make_clip(12, (160, 96), num_objects=1, seed=3)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    tracker.step(clip.frames[1])
    before = tracker.method._heads.id.weight.clone()
    for frame in clip.frames[2:]:
        tracker.step(frame)
    update = tracker.method.last_update
    assert update["iterations"] == config.lip.update_iterations and update["id_after"] < update["id_before"]
    assert len(tracker.method._updates[1]) == 3  # 5 updates in 11 frames, the last 3 kept
    assert not torch.equal(before, tracker.method._heads.id.weight)
    tracker.remove_targets([1])
    assert not tracker.method._updates


def test_a_box_on_the_mask_grid_maps_into_its_roi():
    assert mask_grid_box((0, 0, 28, 28), (10.0, 20.0, 38.0, 76.0)) == (10.0, 20.0, 38.0, 76.0)
    assert mask_grid_box((7, 14, 21, 28), (0.0, 0.0, 56.0, 28.0)) == (14.0, 14.0, 42.0, 28.0)


def test_lip_state_stays_the_same_size_over_a_long_stream(untrained_lip):
    tracker = untrained_lip
    clip = make_clip(2, (64, 64), num_objects=1, seed=4)
    tracker.reset()
    tracker.add_targets(clip.frames[0], clip.labels[0])

    def state_bytes():
        method = tracker.method
        tensors = [*method._hidden, *(t for e in method._examples.values() for t in vars(e).values())]
        return sum(t.numel() * t.element_size() for t in tensors)

    lip = tracker.config.lip
    for k in range(lip.update_every * (lip.update_memory + 1)):  # the online examples at their bound
        tracker.step(clip.frames[1 - k % 2])
    before = state_bytes()
    for k in range(2000):
        tracker.step(clip.frames[k % 2])
    assert state_bytes() == before
    # The online examples: at most update_memory sets per target, each at most one fit's RoIs.
    rows = roi_counts(tracker.config)[2]
    assert all(len(sets) <= lip.update_memory and all(len(f) <= rows for f, _ in sets)
               for sets in tracker.method._updates.values())
    assert float(max(h.abs().max() for h in tracker.method._hidden)) <= 1.0


def test_training_writes_weights_the_method_loads(tmp_path, davis_root, stills_root):
    config = load_config("cpu", {"method": "lip", "lip.channels": 16, "lip.height": 96})
    weights = train_lip(config, LIPTrainSettings(
        video=str(davis_root), out=str(tmp_path / "lip"), stills=str(stills_root), still_share=0.5, iterations=2,
        batch_size=2, frames=3, truncate=2, crop=(64, 96), checkpoint_every=2, holdout="beta"))
    metadata = json.loads(weights.with_suffix(".json").read_text())
    assert metadata["method"] == "lip" and metadata["selected_iteration"] == 2
    assert set(metadata["holdout_per_sequence"]) == {"beta"}
    tracker = Tracker.from_config(config, weights=str(weights))
    clip = make_clip(3, (160, 96), num_objects=1, seed=1)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    assert tracker.step(clip.frames[1]).labels.shape == (96, 160)


def test_onnxruntime_runs_lip_like_torch(onnx_cache):
    """The four graphs exported (dynamic batch, sides and RoIs), run by ONNX Runtime: the same masks."""
    pytest.importorskip("onnxruntime")
    config = load_config("cpu", {"method": "lip", "lip.channels": 16, "lip.height": 64})
    torch_tracker = Tracker.from_config(config, untrained=True)
    ort_tracker = Tracker.from_config(config, untrained=True, backend="onnxruntime", cache_dir=onnx_cache)
    assert ort_tracker.backend.label.startswith("onnxruntime")
    recorded = record_graph_inputs(ort_tracker.backend)
    clip = make_clip(5, (200, 120), num_objects=2, seed=2)
    for tracker in (torch_tracker, ort_tracker):
        tracker.add_targets(clip.frames[0], clip.labels[0])
    for frame in clip.frames[1:]:
        a, b = torch_tracker.step(frame), ort_tracker.step(frame)
        assert (a.labels != b.labels).mean() < 1e-3
        for h_torch, h_ort in zip(torch_tracker.method._hidden, ort_tracker.method._hidden):
            assert float((h_torch - h_ort).abs().max()) < 1e-3
    # The TensorRT engines built from the same export would take every call made here: the
    # first-frame fit's examples and each frame's proposals included.
    profiles = lip_profiles(config, read_manifest(ort_tracker.backend.folder, LIP_SET), roi_counts(config))
    assert_within_profiles(recorded, profiles, {g: spec.inputs for g, spec in LIP_GRAPHS.items()})
    assert max(call[0][0] for call in recorded["lip_box_trunk"]) > roi_counts(config)[1]  # the fit's examples


def test_tensorrt_for_lip_needs_tensorrt_and_takes_no_int8():
    config = load_config("cpu", {"method": "lip", "lip.channels": 16, "lip.height": 64})
    if not tensorrt_and_cuda():
        with pytest.raises(BackendUnavailable, match="TensorRT|CUDA GPU"):
            Tracker.from_config(config, untrained=True, backend="tensorrt", device="cuda")
    with pytest.raises(BackendUnavailable, match="tensorrt runs fp16"):
        Tracker.from_config(config, untrained=True, backend="torch", precision="fp16")
