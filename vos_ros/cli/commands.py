"""Implementations of the `vos-ros` sub-commands (argument parsing is in main.py)."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from ..config import load_config
from ..data import davis
from ..data.synthetic import demo_clip, make_clip
from ..data.visualize import overlay
from ..eval.metrics import SequenceScore, evaluate_sequence, overall
from ..inference.engine import Tracker
from ..inference.types import TargetStatus
from ..inference.video import VideoRun, segment_video
from ..progress import progress

STAGES = ("backbone", "flow", "dm", "bp", "br", "mrn", "merge")
DEFAULT_DATA = Path("../shared/data")  # beside the repository, when run from its root
CALIBRATION_FRAMES = 64  # INT8 calibration frames in all (their network inputs are kept in memory)


def _tracker(args, backend: str | None = None) -> Tracker:
    """The tracker the arguments ask for; `backend` overrides theirs (its default precision then)."""
    overrides = {} if args.theta_c is None else {"decision.theta_c": args.theta_c}
    config = load_config(args.config, overrides)
    chosen = backend or args.backend
    # A torch reference for a tensorrt bench runs on the same GPU.
    device = args.device or ("cuda" if args.backend == "tensorrt" else None)
    tracker = Tracker.from_config(config, weights=args.weights, device=device, untrained=args.untrained,
                                  backend=chosen, precision=args.precision if chosen == args.backend else None,
                                  cache_dir=args.cache)
    if config.adaptation.iterations > 0 and tracker.adapter is None:
        print(f"note: backend {chosen} runs the offline MRN; first-frame adaptation needs backend torch")
    return tracker


def _print_run(name: str, run: VideoRun) -> None:
    stages = " ".join(f"{s}={1000 * run.stage_seconds.get(s, 0) / max(run.steps, 1):.1f}" for s in STAGES)
    print(f"{name}: {run.steps + 1} frames, {run.fps:.1f} fps, BR {100 * run.br_share:.0f}% | ms/frame {stages}")


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
    tracker = _tracker(args)
    out = Path(args.out)
    if args.davis:
        sequences = args.sequences.split(",") if args.sequences else davis.list_sequences(args.davis)
        for seq in sequences:
            paths = davis.frame_paths(args.davis, seq)
            first = davis.read_labels(davis.annotation_path(args.davis, seq, 0))
            frames = (davis.read_frame(p) for p in progress(paths, desc=seq, leave=False))
            run = segment_video(tracker, frames, first)
            for p, labels in zip(paths, run.labels):
                davis.write_labels(out / seq / f"{p.stem}.png", labels)
            _print_run(seq, run)
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

    write(0, first_image, first)
    all_frames = progress(itertools.chain([first_image], frames), desc="segment", total=len(names) or None)
    run = segment_video(tracker, all_frames, first, lambda i, frame, result: write(i, frame, result.labels))
    writer.release()
    _print_run(Path(args.video).name, run)
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


# ------------------------------------------------------------------------------ bench
def _rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process (MB), from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))


def _speed(tracker: Tracker, clip, label: str) -> dict:
    run = segment_video(tracker, progress(clip.frames, desc=label, leave=False), clip.labels[0])
    _print_run(label, run)
    return {"fps": run.fps, "br_share": run.br_share,
            "ms_per_stage": {s: 1000 * run.stage_seconds.get(s, 0) / run.steps for s in STAGES}}


def _dis_baseline(tracker: Tracker, clip) -> float:
    """fps of flow alone on the same frames: the floor any flow-based tracker pays."""
    grays = [tracker.flow.prepare(f) for f in clip.frames]
    start = time.perf_counter()
    for a, b in zip(grays, grays[1:]):
        tracker.flow.backward(a, b)
    return (len(grays) - 1) / (time.perf_counter() - start)


def _memory_run(tracker: Tracker, frames: list[np.ndarray], first: np.ndarray, total: int) -> dict:
    """Play the frames back and forth for `total` steps, sampling resident memory."""
    tracker.reset()
    tracker.add_targets(frames[0], first)
    order = list(range(1, len(frames))) + list(range(len(frames) - 2, -1, -1))
    samples = []
    for i in progress(range(total), desc="memory run", leave=False):
        tracker.step(frames[order[i % len(order)]])
        if i % 100 == 99:
            samples.append(_rss_mb()[0])
    warm = samples[min(2, len(samples) - 1)]
    return {"frames": total, "rss_mb_samples": samples, "rss_mb_after_300": warm, "rss_mb_end": samples[-1],
            "rss_growth_mb": samples[-1] - warm, "peak_mb": _rss_mb()[1]}


def _sweep(tracker: Tracker, root: Path, thetas: list[float]) -> list[dict]:
    rows = []
    sequences = davis.list_sequences(root)
    data = {s: ([davis.read_frame(p) for p in davis.frame_paths(root, s)], davis.read_ground_truth(root, s)) for s in sequences}
    for theta in progress(thetas, desc="theta_c sweep"):
        tracker.config.decision.theta_c = theta
        scores, seconds, steps, br = {}, 0.0, 0, 0
        for seq, (frames, gt) in data.items():
            run = segment_video(tracker, frames, gt[0])
            scores[seq] = evaluate_sequence(run.labels, gt)
            seconds, steps, br = seconds + run.seconds, steps + run.steps, br + run.br_frames
        j, f, jf = overall(scores)
        rows.append({"theta_c": theta, "J": j, "F": f, "JF": jf, "fps": steps / seconds, "br_share": br / steps})
        print(f"theta_c={theta:.2f}: J&F {jf:.3f} (J {j:.3f}, F {f:.3f}), {steps / seconds:.1f} fps, BR {100 * br / steps:.0f}%")
    return rows


def bench(args) -> int:
    tracker = _tracker(args)
    theta = tracker.config.decision.theta_c
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"config": tracker.config.name, "backend": tracker.backend.label, "device": str(tracker.device),
                    "threads": _threads(), "theta_c": theta, "resolution": "854x480"}
    clips = {n: make_clip(args.frames, (854, 480), n, seed=n) for n in (1, 3)}
    report["dis_flow_only_fps"] = _dis_baseline(tracker, clips[1])
    # Another backend is timed against the torch networks on the same clips, clip after clip,
    # so that both see about the same machine load.
    reference = _tracker(args, backend="torch") if args.backend != "torch" else None
    for n, clip in clips.items():
        label = f"synthetic 854x480, {n} object(s)"
        entry = report[f"objects_{n}"] = _speed(tracker, clip, f"{tracker.backend.label}, {label}")
        entry["ratio_to_flow_only"] = entry["fps"] / report["dis_flow_only_fps"]
        if reference is not None:
            ref = _speed(reference, clip, f"{reference.backend.label}, {label}")
            entry["torch_reference"] = {"backend": reference.backend.label, **ref}
            entry["speed_ratio_to_torch"] = entry["fps"] / ref["fps"]
            print(f"{n} object(s): {tracker.backend.label} {entry['fps']:.1f} fps / {reference.backend.label} "
                  f"{ref['fps']:.1f} fps = {entry['speed_ratio_to_torch']:.2f}x")
    del reference
    data_root = Path(args.data) if args.data else DEFAULT_DATA
    dev = data_root / "davis2016" / "dev"
    if dev.exists():
        seq = davis.list_sequences(dev)[0]
        frames = [davis.read_frame(p) for p in davis.frame_paths(dev, seq)]
        first = davis.read_labels(davis.annotation_path(dev, seq))
        source = f"davis2016/dev/{seq}"
    else:
        print(f"note: {dev} not found; memory run and sweep use the synthetic clip only")
        frames, first, source = clips[1].frames, clips[1].labels[0], "synthetic"
    if args.long_frames > 0:
        report["memory"] = {"source": source, **_memory_run(tracker, frames, first, args.long_frames)}
        m = report["memory"]
        print(f"memory over {m['frames']} frames ({source}, back and forth): RSS {m['rss_mb_after_300']:.0f} MB "
              f"after 300 frames -> {m['rss_mb_end']:.0f} MB at the end (growth {m['rss_growth_mb']:+.1f} MB), "
              f"peak {m['peak_mb']:.0f} MB")
    thetas = [float(v) for v in args.sweep.split(",") if v.strip()]
    if thetas and dev.exists():
        report["sweep"] = _sweep(tracker, dev, thetas)
        _plot_sweep(report["sweep"], out / "theta_sweep.png", tracker.config.name)
        print(f"sweep plot: {out / 'theta_sweep.png'}")
    elif thetas:
        print(f"theta_c sweep skipped: {dev} not found")
    tracker.config.decision.theta_c = theta
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    print(f"report: {out / 'bench.json'}")
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _plot_sweep(rows: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["fps"] for r in rows], [r["JF"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"θc={r['theta_c']:.2f}", (r["fps"], r["JF"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("frames per second")
    ax.set_ylabel("J&F (davis2016/dev)")
    ax.set_title(f"DTN decision threshold sweep ({name} config)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------ train
def train(args) -> int:
    from ..training.trainer import TrainSettings, train as run_training

    settings = TrainSettings(data=args.data, out=args.out, iterations=args.iterations, batch_size=args.batch_size,
                             workers=args.workers, seed=args.seed, holdout=args.holdout,
                             checkpoint_every=args.checkpoint_every, backbone_stages=args.backbone_stages,
                             backbone_lr=args.backbone_lr, init=args.init, lr=args.lr, stage1_fraction=args.stage1_fraction,
                             alike_occluders=args.alike_occluders, recurrent_fraction=args.recurrent_fraction,
                             clip_steps=args.clip_steps, alike_clips=args.alike_clips,
                             prior_strays=args.prior_strays, heads=args.heads, stills=args.stills,
                             still_share=args.still_share)
    if "/dev" in str(Path(args.data).resolve()).replace(os.sep, "/"):
        raise ValueError(f"refusing to train on a dev split: {args.data}")
    weights = run_training(load_config(args.config), settings, resume=not args.no_resume)
    print(f"weights written to {weights}")
    return 0


# ------------------------------------------------------------------------------- demo
def demo(args) -> int:
    tracker = _tracker(args)
    clip = demo_clip(args.frames)
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

    print(f"embedded synthetic clip: {args.frames} frames 854x480, 2 objects, object 1 hidden in frames "
          f"{args.frames // 3}..{args.frames // 3 + 14} and returning elsewhere")
    run = segment_video(tracker, clip.frames, clip.labels[0], on_frame)
    writer.release()
    score = evaluate_sequence(run.labels, clip.labels)
    _print_run("demo", run)
    print(f"J&F against the clip's ground truth: {score.JF:.3f} (J {score.J:.3f}, F {score.F:.3f}); overlay: {out / 'overlay.mp4'}")
    return 0


# ----------------------------------------------------------------------------- deploy
def export(args) -> int:
    from ..backends.onnx_export import export_onnx
    from ..model.dtn import load_dtn

    config = load_config(args.config)
    manifest = export_onnx(load_dtn(config, args.weights, args.untrained), config, Path(args.out))
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
    from ..inference.calibration import record_network_inputs
    from ..backends.onnx_export import default_cache_dir
    from ..model.dtn import load_dtn

    config = load_config(args.config)
    if args.precision == "int8" and not args.calibration:
        raise ValueError("--precision int8 needs --calibration (a DAVIS root or a folder of camera frames)")
    model = load_dtn(config, args.weights, args.untrained)

    def calibration_inputs():  # runs only when an int8 engine has to be built
        return record_network_inputs(model, config, _calibration_clips(args.calibration), args.device)

    backend = create_backend("tensorrt", model, config, args.device, args.precision, args.cache,
                             calibration_inputs if args.calibration else None, args.rebuild)
    cache = Path(args.cache) if args.cache else default_cache_dir()
    built = ", ".join(backend.built) or "none (all cached)"
    print(f"{backend.label}: engines built now: {built}; cache: {cache / 'tensorrt'}; warmed up")
    return 0
