"""Implementations of the `vos-ros` sub-commands (argument parsing is in main.py; `bench` in bench.py)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import cv2
import numpy as np

from ..config import load_config
from ..data import davis
from ..data.demo_scene import demo_scene
from ..data.visualize import overlay
from ..eval.metrics import SequenceScore, evaluate_sequence, overall
from ..inference.types import TargetStatus
from ..inference.video import segment_video, segment_video_offline
from ..progress import progress
from .bench import bench
from .common import build_tracker, print_run

__all__ = ["segment", "eval", "bench", "train", "train_rgmp", "train_lip", "train_ovsnet", "train_dyenet", "train_prompts", "prompt_eval", "reacquire", "demo", "export", "build_engine"]

CALIBRATION_FRAMES = 64  # INT8 calibration frames in all (their network inputs are kept in memory)


# ---------------------------------------------------------------------------- segment
def _video_frames(source: str):
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        if not files:
            raise FileNotFoundError(f"no images in {path}")
        return [p.stem for p in files], (davis.read_frame(p) for p in files)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}")

    def frames():
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        capture.release()

    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return [f"{i:05d}" for i in range(max(count, 0))], frames()


def segment(args) -> int:
    tracker = build_tracker(args)
    out = Path(args.out)
    if args.davis:
        sequences = args.sequences.split(",") if args.sequences else davis.list_sequences(args.davis)
        for seq in sequences:
            paths = davis.frame_paths(args.davis, seq)
            first = davis.read_labels(davis.annotation_path(args.davis, seq, 0))
            frames = (davis.read_frame(p) for p in progress(paths, desc=seq, leave=False))
            run = segment_video_offline(tracker, frames, first) if args.offline else segment_video(tracker, frames, first)
            for p, labels in zip(paths, run.labels):
                davis.write_labels(out / seq / f"{p.stem}.png", labels)
            print_run(seq, run)
        return 0
    if not args.mask:
        raise ValueError("--video needs --mask (the first frame's label PNG)")
    names, frames = _video_frames(args.video)
    first = davis.read_labels(args.mask)
    out.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first_image = next(frames, None)
    if first_image is None:
        raise ValueError(f"no frames in {args.video}")
    h, w = first_image.shape[:2]
    writer = cv2.VideoWriter(str(out / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))

    def write(index, frame, labels):
        writer.write(cv2.cvtColor(overlay(frame, labels), cv2.COLOR_RGB2BGR))
        name = names[index] if index < len(names) else f"{index:05d}"
        davis.write_labels(out / f"{name}.png", labels)

    all_frames = progress(itertools.chain([first_image], frames), desc="segment", total=len(names) or None)
    if args.offline:
        all_frames = list(all_frames)
        run = segment_video_offline(tracker, all_frames, first)
        for index, (frame, labels) in enumerate(zip(all_frames, run.labels)):
            write(index, frame, labels)
    else:
        write(0, first_image, first)
        run = segment_video(tracker, all_frames, first, lambda i, frame, result: write(i, frame, result.labels))
    writer.release()
    print_run(Path(args.video).name, run)
    print(f"masks and overlay.mp4 written to {out}")
    return 0


# ------------------------------------------------------------------------------- eval
def score_predictions(root: str, pred: str, sequences: list[str] | None = None) -> dict[str, SequenceScore]:
    """Scores of the predicted masks of every annotated sequence under `root` (or of `sequences`)."""
    available = davis.list_sequences(root)
    unknown = sorted(set(sequences or ()) - set(available))
    if unknown:
        raise FileNotFoundError(f"sequences {unknown} not under {root}")
    scores = {}
    for seq in sequences or available:
        gt = davis.read_ground_truth(root, seq)
        if gt is None:
            continue
        paths = davis.frame_paths(root, seq)
        pred_paths = [Path(pred) / seq / f"{p.stem}.png" for p in paths]
        missing = [p for p in pred_paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} predicted masks missing for {seq}, first {missing[0]}")
        scores[seq] = evaluate_sequence([davis.read_labels(p) for p in pred_paths], gt)
    if not scores:
        raise FileNotFoundError(f"no annotated sequences under {root}")
    return scores


def eval(args) -> int:  # noqa: A001 - the sub-command's name
    scores = score_predictions(args.davis, args.pred, args.sequences.split(",") if args.sequences else None)
    print(f"{'sequence':<20} {'J':>6} {'F':>6} {'J&F':>6}")
    for seq, s in scores.items():
        print(f"{seq:<20} {s.J:6.3f} {s.F:6.3f} {s.JF:6.3f}")
    j, f, jf = overall(scores)
    print(f"{'overall':<20} {j:6.3f} {f:6.3f} {jf:6.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "sequences": {k: {"J": v.J, "F": v.F, "JF": v.JF} for k, v in scores.items()},
            "overall": {"J": j, "F": f, "JF": jf}}, indent=2))
    return 0


# ------------------------------------------------------------------------------ train
def _refuse_dev_split(data: str) -> None:
    if "/dev" in str(Path(data).resolve()).replace(os.sep, "/"):
        raise ValueError(f"refusing to train on a dev split: {data}")


def train(args) -> int:
    from ..training.trainer import TrainSettings, train as run_training

    settings = TrainSettings(data=args.data, out=args.out, iterations=args.iterations, batch_size=args.batch_size,
                             workers=args.workers, seed=args.seed, holdout=args.holdout,
                             checkpoint_every=args.checkpoint_every, backbone_stages=args.backbone_stages,
                             backbone_lr=args.backbone_lr, init=args.init, widen=args.widen, lr=args.lr,
                             stage1_fraction=args.stage1_fraction,
                             alike_occluders=args.alike_occluders, recurrent_fraction=args.recurrent_fraction,
                             clip_steps=args.clip_steps, alike_clips=args.alike_clips,
                             prior_strays=args.prior_strays, heads=args.heads, stills=args.stills,
                             still_share=args.still_share)
    _refuse_dev_split(args.data)
    weights = run_training(load_config(args.config), settings, resume=not args.no_resume)
    print(f"weights written to {weights}")
    return 0


TRAINER_FIELDS = ("video", "out", "stills", "iterations", "batch_size", "lr", "seed", "checkpoint_every", "holdout")


def _train_method(args, settings_class, run, label: str, *extra: str) -> int:
    """A seed-method trainer's settings from its arguments (main._method_trainer's and `extra`), then the run."""
    _refuse_dev_split(args.video)
    settings = settings_class(**{name: getattr(args, name) for name in TRAINER_FIELDS + extra})
    weights = run(load_config(args.config), settings, resume=not args.no_resume)
    print(f"{label} weights: {weights}")
    return 0


def train_rgmp(args) -> int:
    from ..training.rgmp_trainer import RGMPTrainSettings, train_rgmp as run

    return _train_method(args, RGMPTrainSettings, run, "RGMP", "stage", "encoder_lr", "recurrences", "init")


def train_lip(args) -> int:
    from ..training.lip_trainer import LIPTrainSettings, train_lip as run

    return _train_method(args, LIPTrainSettings, run, "LIP", "still_share", "frames", "truncate", "init")


def train_ovsnet(args) -> int:
    from ..training.ovsnet_trainer import OVSNetTrainSettings, train_ovsnet as run

    return _train_method(args, OVSNetTrainSettings, run, "OVSNet", "still_share")


def train_dyenet(args) -> int:
    from ..training.dyenet_trainer import DyeNetTrainSettings, train_dyenet as run

    return _train_method(args, DyeNetTrainSettings, run, "DyeNet", "still_share", "steps")

# ------------------------------------------------------------------------------- demo
def train_prompts(args) -> int:
    from dataclasses import replace

    from ..prompts.learnt import PromptSettings, load_network
    from ..training.prompt_trainer import PromptTrainSettings
    from ..training.prompt_trainer import train_prompts as run

    _refuse_dev_split(args.video)
    settings = PromptTrainSettings(
        video=args.video, stills=args.stills, out=args.out, iterations=args.iterations, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, still_share=args.still_share, checkpoint_every=args.checkpoint_every,
        backbone_lr=args.backbone_lr, holdout=args.holdout, init=args.init or "", augment=args.augment)
    prompt = load_network(args.init)[1] if args.init else PromptSettings()
    if args.backbone_stages is not None:
        prompt = replace(prompt, backbone_stages=args.backbone_stages)
    if args.region_scale is not None:
        prompt = replace(prompt, region_scale=args.region_scale)
    if args.refine_passes is not None:
        prompt = replace(prompt, refine_passes=args.refine_passes)
    weights = run(settings, prompt, resume=not args.no_resume)
    print(f"prompt network weights: {weights}")
    return 0


def prompt_eval(args) -> int:
    from ..eval.prompt_eval import prompt_eval as run
    from ..prompts import build_segmenter

    segmenter = build_segmenter(args.segmenter, args.weights)
    sequences = args.sequences.split(",") if args.sequences else None
    scores = run(segmenter, args.davis, args.prompt, sequences, args.every,
                 report=lambda sequence, iou: print(f"{sequence} IoU={iou:.4f}", flush=True))
    if not scores:
        raise ValueError(f"no sequences under {args.davis}")
    print(f"mean IoU={np.mean(list(scores.values())):.4f}")
    return 0


def reacquire(args) -> int:
    from ..eval.reacquire import HIDDEN_FRAMES, reacquisition, summary

    tracker = build_tracker(args)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(reacquisition(tracker, seed))
        r = rows[-1]
        print(f"seed {seed}: frames to re-acquire {r.frames_to_reacquire}, false frames {r.false_frames}/"
              f"{HIDDEN_FRAMES}, false re-acquisitions {r.false_reacquisitions}", flush=True)
    print(summary(rows))
    return 0

def demo(args) -> int:
    tracker = build_tracker(args)
    clip = demo_scene(args.frames)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15, (854, 480))
    writer.write(cv2.cvtColor(overlay(clip.frames[0], clip.labels[0]), cv2.COLOR_RGB2BGR))
    last: dict[int, TargetStatus] = {}

    def on_frame(index, frame, result):
        writer.write(cv2.cvtColor(overlay(frame, result.labels), cv2.COLOR_RGB2BGR))
        for t in result.targets:
            if last.get(t.id) != t.status:
                print(f"frame {index:3d}: object {t.id} {t.status.name.lower()} (stream {t.stream.name}, score {t.score:.2f})")
                last[t.id] = t.status

    print(f"embedded demo scene: {args.frames} frames 854x480 rendered from photos, 3 objects: 1 a cup, 2 a cat's "
          "face that leaves the view and comes back, 3 a round sign that passes behind the cup")
    run = segment_video(tracker, clip.frames, clip.labels[0], on_frame)
    writer.release()
    score = evaluate_sequence(run.labels, clip.labels)
    print_run("demo", run)
    print(f"J&F against the clip's ground truth: {score.JF:.3f} (J {score.J:.3f}, F {score.F:.3f}); overlay: {out / 'overlay.mp4'}")
    return 0


# ----------------------------------------------------------------------------- deploy
def _method_config(args):
    return load_config(args.config, {} if args.method is None else {"method": args.method})


def _method_networks(config, args):
    """The networks of the config's method (weights loaded) and the graph set they export to."""
    from ..backends import onnx_export

    if config.method == "rgmp":
        from ..inference.methods.rgmp import load_rgmp

        return load_rgmp(config, args.weights, args.untrained), onnx_export.RGMP_SET
    if config.method in ("lip", "ovsnet", "dyenet"):  # their detector is LIP's network; their own heads run in torch
        from ..inference.methods.lip import load_lip

        weights = args.weights if config.method == "lip" else getattr(config, config.method).detector_weights
        return load_lip(config, weights, args.untrained), onnx_export.LIP_SET
    from ..model.dtn import load_dtn

    return load_dtn(config, args.weights, args.untrained), onnx_export.DTN_SET


def export(args) -> int:
    from ..backends.onnx_export import export_onnx

    config = _method_config(args)
    model, graph_set = _method_networks(config, args)
    manifest = export_onnx(model, config, Path(args.out), graph_set=graph_set)
    for name, graph in manifest["graphs"].items():
        inputs = ", ".join(f"{k}{v}" for k, v in graph["inputs"].items())
        print(f"{name}: {graph['file']} opset {graph['opset']}, inputs {inputs}")
    print(f"checked (onnx full check), simplified ({manifest['simplifier']}); "
          f"manifest: {Path(args.out) / 'manifest.json'}")
    return 0


def _centre_box(shape: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(shape[:2], np.uint16)
    h, w = shape[:2]
    labels[h // 3:2 * h // 3, w // 3:2 * w // 3] = 1
    return labels


def _calibration_clips(source: str):
    """(frames, first labels) for INT8 calibration: a DAVIS root's annotated sequences, or a
    plain frame folder / video with a centre box as its target (no mask there; the box still
    sends real image content through every network)."""
    root = Path(source)
    if (root / "JPEGImages").is_dir():
        sequences = davis.list_sequences(root)
        per_sequence = max(8, CALIBRATION_FRAMES // len(sequences))
        for seq in sequences[:max(1, CALIBRATION_FRAMES // per_sequence)]:
            paths = davis.frame_paths(root, seq)[:per_sequence]
            yield (davis.read_frame(p) for p in paths), davis.read_labels(davis.annotation_path(root, seq))
        return
    frames = list(itertools.islice(_video_frames(source)[1], CALIBRATION_FRAMES))
    if not frames:
        raise ValueError(f"no frames in {source}")
    yield frames, _centre_box(frames[0].shape)


def build_engine(args) -> int:
    from ..backends import create_backend
    from ..backends.onnx_export import default_cache_dir
    from ..inference.calibration import record_network_inputs
    from ..inference.engine import Tracker

    config = _method_config(args)
    cache = Path(args.cache) if args.cache else default_cache_dir()
    if config.method != "dtn":  # RGMP and LIP: fp16 or fp32 engines, built as their tracker starts
        if args.calibration or args.rebuild:
            raise ValueError(f"--calibration and --rebuild are for method dtn; method {config.method} builds fp16 "
                             f"or fp32 engines (delete {cache / 'tensorrt'} to rebuild them)")
        backend = Tracker.from_config(config, weights=args.weights, device=args.device, untrained=args.untrained,
                                      backend="tensorrt", precision=args.precision, cache_dir=args.cache).backend
    else:
        if args.precision == "int8" and not args.calibration:
            raise ValueError("--precision int8 needs --calibration (a DAVIS root or a folder of camera frames)")
        model, _ = _method_networks(config, args)

        def calibration_inputs():  # runs only when an int8 engine has to be built
            return record_network_inputs(model, config, _calibration_clips(args.calibration), args.device)

        backend = create_backend("tensorrt", model, config, args.device, args.precision, args.cache,
                                 calibration_inputs if args.calibration else None, args.rebuild)
    built = ", ".join(backend.built) or "none (all cached)"
    print(f"{backend.label}: engines built now: {built}; cache: {cache / 'tensorrt'}; warmed up")
    return 0
