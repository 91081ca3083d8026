"""`vos-ros bench`: per-stage times and fps on synthetic clips (1 and 3 objects), on a real DAVIS
sequence and on a 7-object clip pasted from real video (their real share of BR frames), memory over
a long run, the theta_c sweep. Every fps is also given as a ratio to the flow alone, timed in the
same run on the same machine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..config import EngineConfig
from ..data import davis
from ..data.pasted import pasted_clip
from ..data.synthetic import SyntheticClip, make_clip
from ..eval.metrics import evaluate_sequence, overall
from ..inference.engine import Tracker
from ..inference.video import segment_video
from ..model.flow import build_flow
from ..progress import progress
from .common import DEFAULT_DATA, build_tracker, print_run, run_stages


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
    print_run(label, run)
    return {"fps": run.fps, "br_share": run.br_share, "JF": evaluate_sequence(run.labels, clip.labels).JF,
            "ms_per_stage": {s: 1000 * run.stage_seconds[s] / run.steps for s in run_stages(run.stage_seconds)}}


def _dis_baseline(config: EngineConfig, clip) -> float:
    """fps of the configuration's flow alone on the same frames: the floor any flow-based tracker pays."""
    flow = build_flow(config.flow.method, config.flow.preset, config.flow.scale)
    grays = [flow.prepare(f) for f in clip.frames]
    start = time.perf_counter()
    for a, b in zip(grays, grays[1:]):
        flow.backward(a, b)
    return (len(grays) - 1) / (time.perf_counter() - start)


def _clips(frames: int, data_root: Path) -> dict:
    """Synthetic 854x480 clips with 1 and 3 objects (every frame goes through BR there); with the
    shared data also the first davis2016/dev sequence and a 7-object clip pasted from davis2016/train."""
    clips = {f"synthetic, {n} object{'s' * (n > 1)}": make_clip(frames, (854, 480), n, seed=n) for n in (1, 3)}
    dev, train = data_root / "davis2016" / "dev", data_root / "davis2016" / "train"
    if dev.exists():
        seq = davis.list_sequences(dev)[0]
        clips[f"davis2016/dev/{seq}"] = SyntheticClip([davis.read_frame(p) for p in davis.frame_paths(dev, seq)],
                                                      davis.read_ground_truth(dev, seq))
    if train.exists():
        clips["7 objects pasted from davis2016/train"] = pasted_clip(train, 7, frames)
    else:
        print(f"note: {train} not found; the 7-object clip is synthetic")
        clips["synthetic, 7 objects"] = make_clip(frames, (854, 480), 7, seed=7)
    return clips


def _print_table(report: dict) -> None:
    stages = run_stages({s: 0 for e in report["clips"].values() for s in e["ms_per_stage"]})
    print(f"| clip | objects | J&F | fps | x flow alone ({report['dis_flow_only_fps']:.0f} fps) | BR | "
          + " | ".join(f"{s} ms" for s in stages) + " |")
    print("|" + " --- |" * (6 + len(stages)))
    for label, e in report["clips"].items():
        times = " | ".join(f"{e['ms_per_stage'].get(s, 0.0):.1f}" for s in stages)
        br = f"{100 * e['br_share']:.0f}%" if "br" in e["ms_per_stage"] else "-"  # methods without BR
        print(f"| {label} | {e['objects']} | {e['JF']:.3f} | {e['fps']:.1f} | {e['ratio_to_flow_only']:.3f} | "
              f"{br} | {times} |")


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
        tracker.set_theta_c(theta)
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
    tracker = build_tracker(args)
    theta = tracker.theta_c
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"config": tracker.config.name, "backend": tracker.backend.label, "device": str(tracker.device),
                    "threads": _threads(), "theta_c": theta, "resolution": "854x480"}
    data_root = Path(args.data) if args.data else DEFAULT_DATA
    clips = _clips(args.frames, data_root)
    report["dis_flow_only_fps"] = _dis_baseline(tracker.config, clips["synthetic, 1 object"])
    # Another backend is timed against the torch networks on the same clips, clip after clip,
    # so that both see about the same machine load.
    reference = build_tracker(args, backend="torch") if args.backend != "torch" else None
    report["clips"] = {}
    for label, clip in clips.items():
        entry = report["clips"][label] = _speed(tracker, clip, f"{tracker.backend.label}, {label}")
        entry["objects"] = int(clip.labels[0].max())
        entry["ratio_to_flow_only"] = entry["fps"] / report["dis_flow_only_fps"]
        if reference is not None:
            ref = _speed(reference, clip, f"{reference.backend.label}, {label}")
            entry["torch_reference"] = {"backend": reference.backend.label, **ref}
            entry["speed_ratio_to_torch"] = entry["fps"] / ref["fps"]
            print(f"{label}: {tracker.backend.label} {entry['fps']:.1f} fps / {reference.backend.label} "
                  f"{ref['fps']:.1f} fps = {entry['speed_ratio_to_torch']:.2f}x")
    del reference
    _print_table(report)
    dev = data_root / "davis2016" / "dev"
    # The memory run replays the dev clip _clips read, else the one-object synthetic clip.
    source = next((label for label in clips if label.startswith("davis2016/dev/")), None)
    if source is None:
        print(f"note: {dev} not found; memory run and sweep use the synthetic clip only")
        source = "synthetic, 1 object"
    frames, first = clips[source].frames, clips[source].labels[0]
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
    tracker.set_theta_c(theta)
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
