"""Training: examples, recurrent clips, checkpoints and resume, on a DAVIS-layout folder
written from the embedded synthetic clip (no shared data needed)."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vos_ros.config import load_config
from vos_ros.training import trainer
from vos_ros.data.stills import StillImages
from vos_ros.data.examples import ExampleBuilder, perturb_mask
from vos_ros.data.pairs import SyntheticPairs, VideoPairs
from vos_ros.model.dtn import DTN
from vos_ros.model.weights import load_weights, save_weights
from vos_ros.training.trainer import TrainSettings, recurrent_losses, train

SIZE = (320, 192)  # the conftest clips' size


def test_clips_are_evenly_spaced_frames_of_one_sequence(davis_root):
    clip = VideoPairs(davis_root).sample_clip(np.random.default_rng(0), 4)
    assert len(clip.frames) == len(clip.masks) == 4
    assert all(f.shape == (SIZE[1], SIZE[0], 3) for f in clip.frames)
    assert all(m.dtype == bool and m.any() for m in clip.masks)
    assert clip.ref_mask.any()


@pytest.mark.parametrize("alike", [0.0, 1.0])
def test_alike_occluders_are_cut_from_the_targets_own_video(davis_root, monkeypatch, alike):
    video = VideoPairs(davis_root)
    draws = []  # per sample: (sequence asked for, sequence returned) of each random_frame call
    random_frame = video.random_frame

    def recording(rng, sequence=None):
        out = random_frame(rng, sequence)
        draws[-1].append((sequence, out[2]))
        return out

    monkeypatch.setattr(video, "random_frame", recording)
    synthetic, rng, occluded = SyntheticPairs(video, alike), np.random.default_rng(0), 0
    for _ in range(30):
        draws.append([])
        synthetic.sample(rng)
        if len(draws[-1]) == 3:  # target, background, occluder
            occluded += 1
            (_, target), _, (asked, got) = draws[-1]
            assert asked == (target if alike else None)
            assert alike == 0 or got == target
    assert occluded >= 5


def test_alike_clips_carry_the_target_itself_through_every_frame(davis_root, monkeypatch):
    video = VideoPairs(davis_root)
    asked, frame = [], video._frame
    monkeypatch.setattr(video, "_frame", lambda sequence, index: (asked.append(sequence), frame(sequence, index))[1])
    in_front = behind = 0
    for seed in range(12):
        plain = video.sample_clip(np.random.default_rng(seed), 4)
        asked.clear()
        alike = video.sample_clip(np.random.default_rng(seed), 4, alike=1.0)
        assert len(set(asked)) == 1  # the clip's frames and the pasted instance: one video
        assert all((a & ~p).sum() == 0 for a, p in zip(alike.masks, plain.masks))
        assert all((a != p).any() for a, p in zip(alike.frames, plain.frames))
        assert np.array_equal(alike.ref_image, plain.ref_image)
        covered = [int((p & ~a).sum()) for a, p in zip(alike.masks, plain.masks)]
        in_front += any(covered)
        behind += not any(covered)
    assert in_front >= 2 and behind >= 2


def test_stray_pieces_reach_beyond_the_object_and_only_when_asked():
    mask = np.zeros((120, 200), bool)
    mask[50:70, 90:110] = True
    assert np.array_equal(perturb_mask(np.random.default_rng(3), mask),
                          perturb_mask(np.random.default_rng(3), mask, strays=0.0))

    def reach(strays: float, seed: int) -> float:  # from the object's centre (its half-size is 10 px)
        ys, xs = np.nonzero(perturb_mask(np.random.default_rng(seed), mask, strays))
        return max(np.abs(xs - 99.5).max(), np.abs(ys - 59.5).max())

    # a shift or dilation alone stays within a few pixels; a stray goes a quarter size or more beyond the edge
    assert all(reach(0.0, seed) < 13 for seed in range(20))
    assert all(reach(1.0, seed) > 14 for seed in range(20))


def test_recurrent_steps_feed_the_models_predictions_back(davis_root, monkeypatch):
    config = load_config("cpu")
    model = trainer.DTN(config, imagenet_init=True)
    builder = ExampleBuilder(config)
    calls = []
    build = builder.build

    def recording_build(pair, rng, perturb=True):
        calls.append((pair.prev_mask.copy(), perturb))
        return build(pair, rng, perturb)

    monkeypatch.setattr(builder, "build", recording_build)
    rng = np.random.default_rng(3)
    clips = [VideoPairs(davis_root).sample_clip(rng, 3) for _ in range(2)]
    parts = recurrent_losses(model, clips, builder, rng, config)
    assert set(parts) == {"mrn", "crpn_obj", "crpn_reg", "dm"}
    assert all(np.isfinite(float(v)) for v in parts.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mrn.parameters())
    first, later = calls[:2], calls[2:]
    # Step 1 starts from the (perturbed) ground truth; later steps take the model's own output.
    assert all(perturb for _, perturb in first)
    assert np.array_equal(first[0][0], clips[0].masks[0])
    assert later and not any(perturb for _, perturb in later)
    assert not any(np.array_equal(mask, clip.masks[1]) for (mask, _), clip in zip(later, clips))


def test_train_checkpoints_resumes_and_writes_weights_with_metadata(davis_root, tmp_path):
    config = load_config("cpu", {"adaptation.iterations": 2, "adaptation.examples": 4})  # a short fit in the holdout scoring
    settings = TrainSettings(data=str(davis_root), out=str(tmp_path / "run"), iterations=2, batch_size=2,
                             checkpoint_every=1, workers=0, stage1_fraction=0.5, recurrent_fraction=0.5,
                             clip_steps=2, holdout="beta")
    train(config, settings)
    lines = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "mrn" in line] == [1, 2]
    assert all(np.isfinite(line["mrn"]) for line in lines if "mrn" in line)
    assert [line["JF"] >= 0 for line in lines if "holdout" in line] == [True, True]

    settings.iterations = 3
    weights = train(config, settings)  # resumes at 2: one more iteration
    lines = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "mrn" in line] == [1, 2, 3]
    metadata = json.loads(weights.with_suffix(".json").read_text())
    assert metadata["iterations"] == 3 and metadata["holdout"] == "beta"

    finetune = TrainSettings(data=str(davis_root), out=str(tmp_path / "finetune"), iterations=1, batch_size=2,
                             workers=0, stage1_fraction=0.0, init=str(weights), heads="mrn")
    tuned = train(config, finetune)
    assert json.loads(tuned.with_suffix(".json").read_text())["init"] == str(weights)
    before, after = load_file(str(weights)), load_file(str(tuned))
    for prefix, learns in (("mrn.", True), ("crpn.", False), ("decision.", False), ("backbone.", False)):
        changed = any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
        assert changed == learns, prefix

    upper = TrainSettings(data=str(davis_root), out=str(tmp_path / "upper"), iterations=1, batch_size=2,
                          workers=0, stage1_fraction=0.0, init=str(weights), heads="mrn", backbone_stages=2)
    after = load_file(str(train(config, upper)))
    for stage, learns in ((0, False), (1, False), (2, True), (3, True)):
        prefix = f"backbone.stem_and_stages.{stage}."
        weights_changed = any(not torch.equal(before[k], after[k]) for k in before
                              if k.startswith(prefix) and "running_" not in k and not k.endswith("num_batches_tracked"))
        statistics_kept = all(torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and "running_" in k)
        assert weights_changed == learns and statistics_kept, stage


def test_a_narrower_mrn_is_widened_to_compute_what_it_computed_and_then_learns(davis_root, tmp_path):
    narrow_config, wide_config = load_config("cpu"), load_config("cpu", {"mrn.channels": 96})
    torch.manual_seed(1)
    narrow = DTN(narrow_config).eval()
    save_weights(narrow, tmp_path / "narrow.safetensors", {}, half=False)
    wide = DTN(wide_config)
    load_weights(wide, tmp_path / "narrow.safetensors", "DTN", "vos-ros train", widen=True)
    narrow_state, wide_state = narrow.state_dict(), wide.state_dict()
    grown = [k for k in narrow_state if narrow_state[k].shape != wide_state[k].shape]
    assert grown and all(k.startswith("mrn.") for k in grown)
    features = [torch.randn(2, c, 56 // 2**j, 56 // 2**j) for j, c in enumerate(narrow.backbone.channels)]
    priors = torch.rand(2, 2, 56, 56)
    with torch.no_grad():
        assert torch.allclose(narrow.mrn(features, priors), wide.eval().mrn(features, priors), atol=1e-5)
    with pytest.raises(ValueError, match="cannot widen"):
        load_weights(DTN(load_config("cpu", {"mrn.channels": 32})), tmp_path / "narrow.safetensors", "DTN",
                     "vos-ros train", widen=True)

    settings = TrainSettings(data=str(davis_root), out=str(tmp_path / "wide"), iterations=1, batch_size=2, workers=0,
                             stage1_fraction=0.0, init=str(tmp_path / "narrow.safetensors"), widen=True, heads="mrn")
    trained = load_file(str(train(wide_config, settings)))
    assert trained["mrn.predict.weight"].shape[1] == 96
    assert trained["mrn.predict.weight"][:, 64:].abs().sum() > 0  # the added channels learn


def test_still_images_give_one_instance_at_a_time(stills_root, tmp_path):
    stills = StillImages(stills_root)
    assert len(stills) == 2
    people = [i for i, (path, _) in enumerate(stills.items) if "people" in str(path)][0]
    rng = np.random.default_rng(0)
    areas = {int(stills.random_object(rng, people)[1].sum()) for _ in range(20)}
    assert len(areas) == 2 and 0 not in areas  # both people, one at a time
    with pytest.raises(FileNotFoundError, match="no images with masks"):
        StillImages(tmp_path)


def test_memory_prior_training_with_still_images(davis_root, stills_root, tmp_path):
    """With mrn.prior_match memory each example carries the previous frame's view, the MRN's second
    prior is the memory readout, and a run with still-image objects trains and scores its holdouts."""
    config = load_config("cpu", {"mrn.prior_match": "memory", "adaptation.iterations": 0})
    pair = VideoPairs(davis_root).sample(np.random.default_rng(1))
    example = ExampleBuilder(config).build(pair, np.random.default_rng(1))
    size = config.mrn.roi_size // 2
    assert example["mem_image"].shape == example["image"].shape and example["mem_mask"].shape == (size, size)
    assert 0 < float(example["mem_mask"].max()) <= 1
    used = []
    video = VideoPairs(davis_root)
    stills = StillImages(stills_root)
    random_object = stills.random_object
    stills.random_object = lambda rng, index=None: used.append(index) or random_object(rng, index)
    synthetic, rng = SyntheticPairs(video, 0.5, stills, still_share=1.0), np.random.default_rng(0)
    for _ in range(5):
        synthetic.sample(rng)
    assert len(used) >= 5
    settings = TrainSettings(data=str(davis_root), out=str(tmp_path / "run"), iterations=2, batch_size=2,
                             checkpoint_every=2, workers=0, stage1_fraction=0.5, recurrent_fraction=0.5,
                             clip_steps=2, holdout="beta", stills=str(stills_root), still_share=0.5)
    weights = train(config, settings)
    lines = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert all(np.isfinite(line["mrn"]) for line in lines if "mrn" in line)
    assert [list(line["per_sequence"]) for line in lines if "holdout" in line] == [["beta"]]
    assert json.loads(weights.with_suffix(".json").read_text())["settings"]["stills"] == str(stills_root)


def test_unknown_holdout_sequence_or_head_is_refused_before_training(davis_root, tmp_path):
    with pytest.raises(ValueError, match="holdout sequence 'gamma'"):
        train(load_config("cpu"), TrainSettings(data=str(davis_root), out=str(tmp_path), holdout="beta,gamma"))
    with pytest.raises(ValueError, match="unknown heads"):
        train(load_config("cpu"), TrainSettings(data=str(davis_root), out=str(tmp_path), heads="mrn,rpn"))


@dataclass
class _LoopSettings:
    out: str
    iterations: int = 4
    seed: int = 0
    checkpoint_every: int = 2
    holdout: str = "beta"


def test_train_loop_resumed_after_a_crash_ends_where_an_unbroken_run_does(tmp_path):
    """The seed-method trainers' shared loop: each checkpoint leaves weights, the best by held-out
    score is kept, and a run stopped after a checkpoint resumes to the very same weights."""
    from vos_ros.training.common import Trainee, train_loop

    def run(out: str, crash_at: int | None = None):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        trainee = Trainee("toy", model, {"model": model}, torch.optim.AdamW(model.parameters(), lr=0.1), {"toy": True})
        scores = iter([{"beta": 0.7}, {"beta": 0.5}])

        def loss(rng, iteration):
            if iteration == crash_at:
                raise KeyboardInterrupt
            x = torch.from_numpy(rng.normal(size=(8, 3)).astype(np.float32))
            return ((model(x) - x.sum(1, keepdim=True)) ** 2).mean(), {"mse": 0.0}

        return train_loop(trainee, _LoopSettings(out), {}, 5, loss, lambda: next(scores))

    unbroken = run(str(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        run(str(tmp_path / "b"), crash_at=3)
    assert (tmp_path / "b" / "toy_2.safetensors").exists() and not (tmp_path / "b" / "toy_4.safetensors").exists()
    resumed = run(str(tmp_path / "b"))  # the scores restart too: the resumed run scores 0.7 at iteration 4
    final_a, final_b = (load_file(str(Path(p).with_name("toy_4.safetensors"))) for p in (unbroken, resumed))
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    metadata = json.loads(unbroken.with_suffix(".json").read_text())
    assert metadata["selected_iteration"] == 2 and metadata["holdout_JF"] == 0.7 and metadata["toy"]
    assert [json.loads(line)["JF"] for line in (tmp_path / "a" / "losses.jsonl").read_text().splitlines()
            if "JF" in json.loads(line)] == [0.7, 0.5]
