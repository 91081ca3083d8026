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


def test_learnt_segmenter_box_clicks_and_polygon(frame_and_object):
    from vos_ros.prompts import build_segmenter

    image, truth = frame_and_object
    learnt = build_segmenter("learnt")
    ys, xs = np.nonzero(truth)
    box = (xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3)
    assert iou(learnt.segment(image, Prompt(box=box)), truth) > 0.8
    centre = (xs.mean(), ys.mean())
    click = learnt.segment(image, Prompt(positives=(centre,)))
    assert click[int(centre[1]), int(centre[0])] and iou(click, truth) > 0.6
    polygon = ((box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3]))
    assert iou(learnt.segment(image, Prompt(polygon=polygon)), truth) > 0.6
    with pytest.raises(ValueError, match="outside"):
        learnt.segment(image, Prompt(positives=((-1, 5),)))


def test_missing_prompt_weights_are_a_clear_error(tmp_path):
    from vos_ros.prompts import build_segmenter

    with pytest.raises(FileNotFoundError, match="train-prompts"):
        build_segmenter("learnt", str(tmp_path / "none.safetensors"))
    with pytest.raises(ValueError, match="unknown prompt segmenter"):
        build_segmenter("sam")


def test_train_prompts_resumes_and_leaves_usable_weights(davis_root, stills_root, tmp_path, frame_and_object):
    import json

    from vos_ros.prompts.learnt import LearntSegmenter
    from vos_ros.training.prompt_trainer import PromptTrainSettings, train_prompts

    settings = PromptTrainSettings(video=str(davis_root), stills=str(stills_root), out=str(tmp_path), iterations=2,
                                   batch_size=2, checkpoint_every=1, holdout="beta", augment=1.0)
    weights = train_prompts(settings)
    log = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log if "box_iou" in r] == [1, 2]
    metadata = json.loads(weights.with_suffix(".json").read_text())
    assert metadata["train"]["holdout"] == "beta" and len(metadata["tracker_weights_sha256"]) == 64
    assert metadata["selected_iteration"] in (1, 2) and set(metadata["holdout_iou"]) == {"box", "click"}
    train_prompts(settings)  # resumes at the end: nothing more
    assert len((tmp_path / "losses.jsonl").read_text().splitlines()) == len(log)
    image, truth = frame_and_object
    assert LearntSegmenter.from_weights(weights).segment(image, Prompt(box=(10, 10, 200, 150))).shape == truth.shape


def test_augmented_objects_keep_image_and_mask_aligned():
    from vos_ros.training.prompt_trainer import augmented

    mask = np.zeros((120, 200), bool)
    mask[20:70, 10:90] = True  # off-centre: a mirror moves it
    image = np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8)
    rng = np.random.default_rng(0)
    shapes = set()
    for _ in range(10):
        out_image, out_mask = augmented(rng, image, mask)
        assert out_image.shape[:2] == out_mask.shape
        inside, outside = out_image[out_mask].mean(axis=1), out_image[~out_mask].mean(axis=1)
        assert np.percentile(inside, 5) > 120 and np.percentile(outside, 95) < 60  # the object where its mask is
        shapes.add(out_mask.shape)
    assert len(shapes) > 1  # rescaled


@pytest.mark.parametrize("segmenter", ["learnt", "grabcut"])
def test_prompt_eval_prints_the_mean_iou_last(davis_root, capsys, segmenter):
    from vos_ros.cli.main import main

    assert main(["prompt-eval", "--davis", str(davis_root), "--prompt", "click", "--segmenter", segmenter]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["alpha", "beta"]
    assert lines[-1].startswith("mean IoU=") and 0 < float(lines[-1].split("=")[1]) <= 1
