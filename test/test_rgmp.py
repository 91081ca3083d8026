"""RGMP (model/rgmp.py, inference/methods/rgmp.py, training/rgmp_trainer.py): the network's
shapes and first-layer widening, the softmax aggregation, the method behind the engine, and
its training on the embedded synthetic data."""

import json

import numpy as np
import pytest
import torch

from vos_ros.backends.base import BackendUnavailable
from vos_ros.backends.onnx_export import RGMP_GRAPHS, RGMP_SET, read_manifest
from vos_ros.backends.rgmp import rgmp_profiles
from vos_ros.config import load_config
from vos_ros.data.synthetic import make_clip
from vos_ros.inference import Tracker
from vos_ros.inference.types import TargetStatus
from vos_ros.model.backbone import mobilenet_v2
from vos_ros.model.rgmp import RGMP, MaskEncoder, soft_aggregate
from vos_ros.training.rgmp_trainer import RGMPTrainSettings, train_rgmp

from tensorrt_profiles import assert_within_profiles, record_graph_inputs, tensorrt_and_cuda


def test_the_network_gives_two_channels_at_a_quarter_of_the_input():
    torch.manual_seed(0)
    model = RGMP(channels=16).eval()
    images, masks = torch.rand(3, 3, 96, 160), torch.rand(3, 1, 96, 160)
    with torch.no_grad():
        reference = model.reference(images, masks)
        logits = model(reference, images, masks)
    assert reference.shape == (3, 320, 3, 5)
    assert logits.shape == (3, 2, 24, 40)


def test_the_widened_encoder_starts_as_the_imagenet_network():
    """The mask channel's new filters start at zero: whatever the mask, the features are ImageNet's."""
    encoder, plain = MaskEncoder(imagenet=True).eval(), mobilenet_v2(imagenet=True).eval()
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ours = encoder(images, torch.rand(1, 1, 64, 96))
        theirs = plain(images)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-5)


def test_soft_aggregation_sums_to_one_and_keeps_each_pixels_ranking():
    torch.manual_seed(0)
    foreground = torch.rand(3, 8, 8)
    aggregated = soft_aggregate(foreground)
    assert aggregated.shape == (4, 8, 8)
    assert torch.allclose(aggregated.sum(0), torch.ones(8, 8), atol=1e-6)
    assert torch.equal(aggregated[1:].argmax(0), foreground.argmax(0))
    # No object anywhere: all background. One confident object: it wins.
    assert soft_aggregate(torch.zeros(2, 1))[0].min() > 0.999
    assert soft_aggregate(torch.tensor([[0.95], [0.1]]))[1].item() > 0.9


@pytest.fixture(scope="module")
def untrained_rgmp():
    config = load_config("cpu", {"method": "rgmp", "rgmp.channels": 16, "rgmp.height": 48})
    return Tracker.from_config(config, untrained=True)


def test_rgmp_tracks_through_the_engine_with_soft_guidance(untrained_rgmp):
    tracker = untrained_rgmp
    clip = make_clip(6, (160, 96), num_objects=2, seed=3)
    tracker.reset()
    assert tracker.add_targets(clip.frames[0], clip.labels[0]) == [1, 2]
    for frame in clip.frames[1:]:
        result = tracker.step(frame)
        assert result.labels.shape == (96, 160)
        assert {t.id for t in result.targets} == {1, 2}
    for target in tracker._targets.values():
        guidance = target.state.guidance
        assert guidance.shape == (1, 1, 48, 80)  # the working resolution: rgmp.height 48
        assert 0.0 <= float(guidance.min()) and float(guidance.max()) <= 1.0
        if target.status == TargetStatus.LOST:
            assert float(guidance.max()) == 0.0  # RGMP's "-Prev" input: the reference alone finds it again


def test_multi_scale_inference_averages_scales_into_one_window():
    config = load_config("cpu", {"method": "rgmp", "rgmp.channels": 16, "rgmp.height": 60,
                                 "rgmp.scales": [0.75, 1.0]})
    tracker = Tracker.from_config(config, untrained=True)
    clip = make_clip(3, (200, 120), num_objects=2, seed=2)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    assert [r.shape[-2:] for r in tracker._targets[1].state.references] == [(2, 3), (2, 4)]
    result = tracker.step(clip.frames[1])
    assert result.labels.shape == (120, 200) and tracker._targets[1].state.guidance.shape == (1, 1, 60, 100)


def test_rgmp_state_stays_the_same_size_over_a_long_stream(untrained_rgmp):
    tracker = untrained_rgmp
    clip = make_clip(2, (64, 64), num_objects=1, seed=4)
    tracker.reset()
    tracker.add_targets(clip.frames[0], clip.labels[0])

    def state_bytes():
        state = tracker._targets[1].state
        return sum(t.numel() * t.element_size() for t in [*state.references, state.guidance])

    tracker.step(clip.frames[1])
    before = state_bytes()
    for k in range(2000):
        tracker.step(clip.frames[k % 2])
    assert state_bytes() == before


def test_training_writes_weights_the_method_loads(tmp_path, davis_root, stills_root):
    config = load_config("cpu", {"method": "rgmp", "rgmp.channels": 16, "rgmp.height": 96})
    common = dict(video=str(davis_root), batch_size=2, crop=(64, 96), checkpoint_every=2, holdout="beta")
    first = train_rgmp(config, RGMPTrainSettings(out=str(tmp_path / "pairs"), stage="pairs", stills=str(stills_root),
                                                 iterations=2, **common))
    second = train_rgmp(config, RGMPTrainSettings(out=str(tmp_path / "clips"), stage="clips", iterations=2,
                                                  recurrences=2, init=str(first), **common))
    metadata = json.loads(second.with_suffix(".json").read_text())
    assert metadata["train"]["stage"] == "clips" and metadata["selected_iteration"] == 2
    assert set(metadata["holdout_per_sequence"]) == {"beta"}
    assert metadata["init"].startswith("rgmp.safetensors (sha256 ")
    tracker = Tracker.from_config(config, weights=str(second))
    clip = make_clip(3, (160, 96), num_objects=1, seed=1)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    assert tracker.step(clip.frames[1]).labels.shape == (96, 160)


def test_onnxruntime_runs_rgmp_like_torch(tmp_path):
    """The two passes exported (dynamic batch and sides), run by ONNX Runtime: the same masks."""
    pytest.importorskip("onnxruntime")
    config = load_config("cpu", {"method": "rgmp", "rgmp.channels": 16, "rgmp.height": 60})
    torch_tracker = Tracker.from_config(config, untrained=True)
    ort_tracker = Tracker.from_config(config, untrained=True, backend="onnxruntime", cache_dir=str(tmp_path))
    assert ort_tracker.backend.label.startswith("onnxruntime")
    recorded = record_graph_inputs(ort_tracker.backend)
    clip = make_clip(5, (200, 120), num_objects=2, seed=2)
    for tracker in (torch_tracker, ort_tracker):
        tracker.add_targets(clip.frames[0], clip.labels[0])
    for frame in clip.frames[1:]:
        assert np.array_equal(torch_tracker.step(frame).labels, ort_tracker.step(frame).labels)
        for i in (1, 2):
            difference = torch_tracker._targets[i].state.guidance - ort_tracker._targets[i].state.guidance
            assert float(difference.abs().max()) < 1e-4
    # The TensorRT engines built from the same export would take every call made here.
    profiles = rgmp_profiles(config, read_manifest(ort_tracker.backend.folder, RGMP_SET))
    assert_within_profiles(recorded, profiles, {g: spec.inputs for g, spec in RGMP_GRAPHS.items()})
    assert profiles["rgmp_propagate"]["images"].opt == (1, 3, 64, 128)  # 60 rows padded, a 16:9 frame


def test_tensorrt_for_rgmp_needs_tensorrt_and_takes_no_int8():
    config = load_config("cpu", {"method": "rgmp", "rgmp.channels": 16})
    if not tensorrt_and_cuda():
        with pytest.raises(BackendUnavailable, match="TensorRT|CUDA GPU"):
            Tracker.from_config(config, untrained=True, backend="tensorrt", device="cuda")
    with pytest.raises(BackendUnavailable, match="tensorrt runs fp16"):
        Tracker.from_config(config, untrained=True, backend="onnxruntime", precision="fp16")


def test_the_ablations_ignore_what_they_remove():
    torch.manual_seed(0)
    full = RGMP(channels=16).eval()
    with torch.no_grad():
        full.encoder.mask_conv.weight.normal_()  # as trained: the mask channel counts
    images, masks, other = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        reference = full.reference(images, masks)
        for ablation, changed in (("no_reference", (torch.zeros_like(reference), images, masks)),
                                  ("no_previous", (reference, images, other))):
            model = RGMP(channels=16, ablation=ablation).eval()
            model.load_state_dict(full.state_dict())
            assert torch.equal(model(reference, images, masks), model(*changed))
            assert not torch.equal(full(reference, images, masks), full(*changed))
