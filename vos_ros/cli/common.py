"""What the sub-commands share: building the tracker the arguments ask for, printing a run."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from ..inference.engine import Tracker
from ..inference.video import VideoRun

STAGES = ("backbone", "flow", "dm", "bp", "br", "mrn", "merge")  # DTN's, in this order; other methods' after


def run_stages(stage_seconds: dict[str, float]) -> list[str]:
    """The stages a run timed: DTN's in STAGES order, then any other method's."""
    return [s for s in STAGES if s in stage_seconds] + sorted(set(stage_seconds) - set(STAGES))
DEFAULT_DATA = Path("../shared/data")  # beside the repository, when run from its root


def build_tracker(args, backend: str | None = None) -> Tracker:
    """The tracker the arguments ask for; `backend` overrides theirs (its default precision then)."""
    overrides = {} if args.theta_c is None else {"decision.theta_c": args.theta_c}
    if args.method is not None:
        overrides["method"] = args.method
    config = load_config(args.config, overrides)
    chosen = backend or args.backend
    # A torch reference for a tensorrt bench runs on the same GPU.
    device = args.device or ("cuda" if args.backend == "tensorrt" else None)
    return Tracker.from_config(config, weights=args.weights, device=device, untrained=args.untrained,
                               backend=chosen, precision=args.precision if chosen == args.backend else None,
                               cache_dir=args.cache)


def print_run(name: str, run: VideoRun) -> None:
    stages = " ".join(f"{s}={1000 * run.stage_seconds[s] / max(run.steps, 1):.1f}" for s in run_stages(run.stage_seconds))
    br = f", BR {100 * run.br_share:.0f}%" if "br" in run.stage_seconds else ""  # methods without BR: no share
    print(f"{name}: {run.steps + 1} frames, {run.fps:.1f} fps{br} | ms/frame {stages}")
