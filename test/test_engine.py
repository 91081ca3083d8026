"""Engine contract: input errors leave the state unchanged; targets can be added, removed, reset; bounded state."""

import threading

import numpy as np
import pytest

from vos_ros.config import METHOD_NAMES, ConfigError, load_config
from vos_ros.data.synthetic import make_clip
from vos_ros.inference import EngineInputError, Stream, TargetStatus, Tracker
from vos_ros.inference.methods import METHODS
from vos_ros.model.dtn import DTN
from vos_ros.model.weights import save_weights


@pytest.fixture(scope="module")
def clip():
    return make_clip(12, (320, 240), num_objects=2, seed=1)


@pytest.fixture(scope="module")
def tracker():
    # Every add goes through first-frame adaptation as in the cpu configuration, with a short fit:
    # the fit itself is tested in test_adaptation.py, and 50 steps per add were most of this file's time.
    return Tracker.from_config(load_config("cpu", {"adaptation.iterations": 2, "adaptation.examples": 4}), untrained=True)


def test_add_step_remove_reset(tracker, clip):
    tracker.reset()
    assert tracker.add_targets(clip.frames[0], clip.labels[0]) == [1, 2]
    result = tracker.step(clip.frames[1])
    assert [t.id for t in result.targets] == [1, 2]
    assert result.labels.shape == (240, 320) and result.labels.dtype == np.uint16
    assert set(result.timings) >= {"flow", "dm", "bp", "backbone", "br", "mrn"}
    assert result.stream in (Stream.BP, Stream.BR)
    for t in result.targets:
        assert t.mask.shape == (240, 320) and t.mask.dtype == bool
        assert np.array_equal(t.mask, result.labels == t.id)
    assert tracker.remove_targets([2]) == [2]
    assert tracker.target_ids == [1]
    tracker.reset()
    assert tracker.target_ids == []
    empty = tracker.step(clip.frames[2])
    assert empty.targets == [] and empty.labels.max() == 0


def test_bad_inputs_raise_and_change_nothing(tracker, clip):
    tracker.reset()
    tracker.add_targets(clip.frames[0], clip.labels[0])
    before = tracker.target_ids
    bad = [
        lambda: tracker.step(clip.frames[1][..., 0]),  # not 3 channels
        lambda: tracker.step(clip.frames[1].astype(np.float32)),  # wrong dtype
        lambda: tracker.step(np.zeros((100, 100, 3), np.uint8)),  # size change mid-stream
        lambda: tracker.add_targets(clip.frames[0], clip.labels[0][:-1]),  # mask size mismatch
        lambda: tracker.add_targets(clip.frames[0], np.zeros((240, 320), np.uint8)),  # empty mask
        lambda: tracker.add_targets(clip.frames[0], clip.labels[0].astype(np.float32)),  # not integer ids
        lambda: tracker.remove_targets([2, 99]),  # unknown id
    ]
    for call in bad:
        with pytest.raises(EngineInputError):
            call()
        assert tracker.target_ids == before
    too_many = np.arange(240 * 320, dtype=np.int32).reshape(240, 320) % 40
    with pytest.raises(EngineInputError, match="max_objects"):
        tracker.add_targets(clip.frames[0], too_many)
    assert tracker.step(clip.frames[1]).targets  # still tracking


def test_late_mask_catches_up_without_touching_other_targets(tracker, clip):
    tracker.reset()
    only_2 = np.where(clip.labels[0] == 2, 2, 0).astype(np.uint16)
    tracker.add_targets(clip.frames[0], only_2)
    for frame in clip.frames[1:4]:
        tracker.step(frame)
    box_2 = tracker._targets[2].box
    only_1 = np.where(clip.labels[1] == 1, 1, 0).astype(np.uint16)
    assert tracker.add_targets(clip.frames[1], only_1, later_frames=clip.frames[2:4]) == [1]
    assert tracker._targets[2].box == box_2
    assert tracker.target_ids == [1, 2]
    assert [t.id for t in tracker.step(clip.frames[4]).targets] == [1, 2]


def test_state_per_target_is_bounded(tracker, clip):
    tracker.reset()
    tracker.add_targets(clip.frames[0], clip.labels[0])

    def state_bytes():
        total = 0
        for t in tracker._targets.values():
            total += t.prev_mask.nbytes + t.state.first_embedding.numel() + t.state.prev_embedding.numel()
        return total

    tracker.step(clip.frames[1])
    first = state_bytes()
    for frame in clip.frames[2:] + clip.frames[::-1]:
        tracker.step(frame)
    assert state_bytes() == first


def test_missing_and_corrupt_weights_name_the_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        Tracker.from_config("cpu", weights=str(missing))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        Tracker.from_config("cpu", weights=str(corrupt))
    other = tmp_path / "gpu_arch.safetensors"
    save_weights(DTN(load_config("cpu", {"mrn.channels": 32})), other, {})
    with pytest.raises(ValueError, match="does not fit"):
        Tracker.from_config("cpu", weights=str(other))


@pytest.mark.parametrize("method", ["rgmp", "lip", "ovsnet", "dyenet"])
def test_a_seed_method_whose_weights_are_missing_says_how_to_make_them(method, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"train-{method}"):
        Tracker.from_config(load_config("cpu", {"method": method}), weights=str(tmp_path / "none.safetensors"))


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("decision: {theta: 0.5}\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(bad)
    with pytest.raises(ConfigError, match="theta_c"):
        load_config("cpu", {"decision.theta_c": 1.5})
    with pytest.raises(ConfigError, match="adaptation.iterations"):
        load_config("cpu", {"adaptation.iterations": -1})
    with pytest.raises(ConfigError, match="not found"):
        load_config("nonexistent")
    with pytest.raises(ConfigError, match="method must be one of dtn, rgmp, lip, ovsnet, dyenet"):
        load_config("cpu", {"method": "osvos"})
    assert set(METHODS) == set(METHOD_NAMES)
    gpu = load_config("gpu")
    assert gpu.device == "cuda" and gpu.weights == load_config("cpu").weights  # the same trained networks

def test_memory_prior_keeps_the_last_frames_only(clip):
    """mrn.prior_match memory: each target remembers the last `memory_frames` frames it was found in
    (features and published mask on the match grid) besides its first; memory stays bounded."""
    config = load_config("cpu", {"mrn.prior_match": "memory", "mrn.memory_frames": 3, "adaptation.iterations": 0})
    tracker = Tracker.from_config(config)
    tracker.add_targets(clip.frames[0], clip.labels[0])
    previous = {1: 0, 2: 0}
    for frame in clip.frames[1:] + clip.frames[::-1]:
        for t in tracker.step(frame).targets:
            length = len(tracker._targets[t.id].state.recent)
            found = t.status != TargetStatus.LOST
            assert length == (min(previous[t.id] + 1, 3) if found else previous[t.id])
            previous[t.id] = length
    assert max(previous.values()) == 3
    size = config.mrn.roi_size // 2
    for target in tracker._targets.values():
        assert all(f.shape == (56, size, size) and m.shape == (size, size) for f, m in target.state.recent)
        assert all(0 < float(m.max()) <= 1 for _, m in target.state.recent)  # published masks: never empty


def test_theta_c_set_from_another_thread_applies_at_the_next_step(tracker, clip):
    tracker.reset()
    tracker.add_targets(clip.frames[0], clip.labels[0])
    configured = tracker.theta_c
    setter = threading.Thread(target=tracker.set_theta_c, args=(1.0,))
    setter.start()
    setter.join()
    assert tracker.theta_c == 1.0 and tracker.config.decision.theta_c == configured  # not yet in use
    assert tracker.step(clip.frames[1]).stream == Stream.BR  # confidence never exceeds 1
    assert tracker.config.decision.theta_c == 1.0
    with pytest.raises(EngineInputError, match="theta_c"):
        tracker.set_theta_c(1.5)
    tracker.set_theta_c(configured)
    tracker.step(clip.frames[2])
