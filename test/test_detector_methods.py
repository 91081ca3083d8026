"""What OVSNet and DyeNet (methods/detections.DetectorMethod) share: their training writes
weights the method loads, and LIP's detector graphs run by ONNX Runtime give the same masks
(their own heads stay in torch)."""

import json

import pytest

from vos_ros.backends.lip import TorchLIP
from vos_ros.config import load_config
from vos_ros.data.synthetic import make_clip
from vos_ros.inference import Tracker
from vos_ros.inference.methods import METHODS
from vos_ros.inference.methods.lip import load_lip
from vos_ros.training.dyenet_trainer import DyeNetTrainSettings, train_dyenet
from vos_ros.training.ovsnet_trainer import OVSNetTrainSettings, train_ovsnet

TRAINERS = {"ovsnet": (OVSNetTrainSettings, train_ovsnet, {}), "dyenet": (DyeNetTrainSettings, train_dyenet, {"steps": 3})}


def small_config(method: str, height: int = 64):
    return load_config("cpu", {"method": method, "lip.channels": 16, f"{method}.height": height})


@pytest.mark.parametrize("method", sorted(TRAINERS))
def test_training_writes_weights_the_method_loads(method, tmp_path, davis_root, stills_root):
    config = small_config(method, 96)
    settings_class, train, extra = TRAINERS[method]
    weights = train(config, settings_class(
        video=str(davis_root), out=str(tmp_path / method), stills=str(stills_root), still_share=0.5,
        iterations=2, batch_size=2, crop=(64, 96), checkpoint_every=2, holdout="beta", **extra),
        detector_untrained=True)
    metadata = json.loads(weights.with_suffix(".json").read_text())
    assert metadata["method"] == method and metadata["selected_iteration"] == 2
    assert (tmp_path / method / f"{method}_2.safetensors").exists()
    detector = load_lip(config, untrained=True)  # the shipped detector is another width
    kind = METHODS[method]
    tracker = Tracker(config, kind(config, TorchLIP(detector, "cpu"), kind.load_heads(config, detector, str(weights))))
    clip = make_clip(3, (160, 96), num_objects=1, seed=1)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    assert tracker.step(clip.frames[1]).labels.shape == (96, 160)


@pytest.mark.parametrize("method", sorted(TRAINERS))
def test_onnxruntime_runs_the_detector_like_torch(method, onnx_cache):
    pytest.importorskip("onnxruntime")
    torch_tracker = Tracker.from_config(small_config(method), untrained=True)
    ort_tracker = Tracker.from_config(small_config(method), untrained=True, backend="onnxruntime", cache_dir=onnx_cache)
    assert ort_tracker.backend.label.startswith("onnxruntime")
    clip = make_clip(4, (200, 120), num_objects=2, seed=2)
    for tracker in (torch_tracker, ort_tracker):
        tracker.add_targets(clip.frames[0], clip.labels[0])
    for frame in clip.frames[1:]:
        a, b = torch_tracker.step(frame), ort_tracker.step(frame)
        assert (a.labels != b.labels).mean() < 1e-3
