#!/usr/bin/env python3
"""Validation J&F against iterations for `vos-ros train` runs, as a PNG.

usage: python tools/plot_training.py OUT.png LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]
Reads each run's losses.jsonl (the holdout lines the trainer writes at every checkpoint);
an optional `LABEL@0=SCORE` pair plots the starting weights' score at iteration 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def holdout_curve(run: Path) -> tuple[list[int], list[float]]:
    lines = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines() if line.strip()]
    points = sorted((line["iteration"], line["JF"]) for line in lines if "holdout" in line)
    return [p[0] for p in points], [p[1] for p in points]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out, runs = Path(argv[0]), argv[1:]
    starts = dict(arg.split("@0=") for arg in runs if "@0=" in arg)
    fig, ax = plt.subplots(figsize=(6, 4))
    for arg in runs:
        if "@0=" in arg:
            continue
        label, folder = arg.split("=", 1)
        iterations, scores = holdout_curve(Path(folder))
        if label in starts:
            iterations, scores = [0] + iterations, [float(starts[label])] + scores
        ax.plot(iterations, scores, marker="o", label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation J&F (held-out train sequences)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
