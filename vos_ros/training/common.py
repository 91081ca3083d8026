"""What every trainer does the same way: frozen BatchNorm, an optimiser step, the loss log,
the resumable checkpoint, the engine's J&F on held-out train sequences, and the resumable
loop of the seed-method trainers (`train_loop`)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Callable, Iterable

import numpy as np
import torch

from ..data import davis
from ..eval.metrics import evaluate_sequence
from ..inference.engine import Tracker
from ..inference.video import segment_video
from ..model.weights import save_weights
from ..progress import progress

MAX_GRAD_NORM = 5.0
LOSS_EMA = 0.95  # the progress bar's running loss


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """BatchNorm layers keep their statistics and affine weights (small batches here)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: Iterable[torch.Tensor]) -> float:
    """One step on `loss`, gradients clipped to MAX_GRAD_NORM; the loss's value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    optimizer.step()
    return loss.item()


def log_loss(log: IO[str], bar, iteration: int, seconds: float, value: float, running: float | None) -> float:
    """One iteration's loss into losses.jsonl and the progress bar; the new running loss."""
    running = value if running is None else LOSS_EMA * running + (1 - LOSS_EMA) * value
    bar.update(1)
    bar.set_postfix(loss=f"{running:.3f}")
    log.write(json.dumps({"iteration": iteration, "seconds": round(seconds, 1), "loss": round(value, 5)}) + "\n")
    return running


def save_checkpoint(path: Path, state: dict) -> None:
    """A trainer's resumable state, written whole or not at all."""
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def sequence_scores(tracker: Tracker, root: str, sequences: tuple[str, ...]) -> dict[str, float]:
    """J&F of `tracker` on each sequence of the DAVIS-layout `root` (segment_video resets it for each)."""
    scores = {}
    for sequence in sequences:
        gt = davis.read_ground_truth(root, sequence)
        frames = (davis.read_frame(p) for p in davis.frame_paths(root, sequence))
        scores[sequence] = evaluate_sequence(segment_video(tracker, frames, gt[0]).labels, gt).JF
    return scores


@dataclass
class Trainee:
    """What `train_loop` trains, checkpoints and saves."""
    name: str  # weights NAME.safetensors (the best) and NAME_ITERATION.safetensors (each checkpoint)
    saved: torch.nn.Module  # what the weights files hold
    checkpointed: dict[str, torch.nn.Module]  # what the checkpoint holds besides the optimiser, by key
    optimizer: torch.optim.Optimizer
    lineage: dict  # the weights' metadata
    desc: str = ""  # the progress bar's label (default: train-NAME)


def train_loop(trainee: Trainee, settings, config_dict: dict, stream: int,
               loss: Callable[[np.random.Generator, int], tuple[torch.Tensor, dict[str, float]]],
               score: Callable[[], dict[str, float]] | None, resume: bool = True) -> Path:
    """`settings.iterations` steps of `loss(rng, iteration)` (a loss and named parts to report)
    with AdamW at cosine-decayed rates, resumable: each iteration draws from its own seeded
    generator (`settings.seed`, `stream`, iteration), and every `settings.checkpoint_every`
    iterations leave usable weights and a checkpoint, then `score()` (J&F per held-out
    sequence; None: no held-out scoring) decides which weights are kept as the best."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    optimizer = trainee.optimizer
    base_lrs = [g["lr"] for g in optimizer.param_groups]  # before a resumed state sets decayed ones
    params = [p for g in optimizer.param_groups for p in g["params"]]
    start, best = 0, {"score": -1.0, "iteration": 0}
    checkpoint, weights = out / "checkpoint.pt", out / f"{trainee.name}.safetensors"

    def save_state(iteration: int) -> None:
        save_checkpoint(checkpoint, {**{k: m.state_dict() for k, m in trainee.checkpointed.items()},
                                     "optimizer": optimizer.state_dict(), "iteration": iteration, "best": best})

    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        for key, module in trainee.checkpointed.items():
            module.load_state_dict(state[key])
        optimizer.load_state_dict(state["optimizer"])
        start, best = state["iteration"], state["best"]
        print(f"resuming from {checkpoint} at iteration {start}")
    (out / "settings.json").write_text(json.dumps({"settings": asdict(settings), "config": config_dict}, indent=2))
    log = (out / "losses.jsonl").open("a")
    bar = progress(total=settings.iterations, initial=start, desc=trainee.desc or f"train-{trainee.name}", unit="it")
    running, t0, iteration = None, time.time(), start
    while iteration < settings.iterations:
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * 0.5 * (1 + math.cos(math.pi * iteration / settings.iterations))
        rng = np.random.default_rng([settings.seed, stream, iteration])  # per iteration: resumable
        value, parts = loss(rng, iteration)
        value = optimise(optimizer, value, params) if value.requires_grad else float(value)
        iteration += 1
        running = log_loss(log, bar, iteration, time.time() - t0, value, running)
        if iteration % settings.checkpoint_every == 0 or iteration == settings.iterations:
            save_weights(trainee.saved, out / f"{trainee.name}_{iteration}.safetensors",
                         {**trainee.lineage, "iterations": iteration})
            save_state(iteration)  # before the (slow) scoring
            scores = score() if score is not None else {}
            mean = float(np.mean(list(scores.values()))) if scores else float(iteration)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in parts.items())
            bar.write(f"iteration {iteration}, {time.time() - t0:.0f} s: loss {running:.3f}"
                      + (f" ({shown})" if shown else "") + (f", holdout J&F {mean:.4f}" if scores else ""))
            per_sequence = {k: round(v, 4) for k, v in scores.items()}
            log.write(json.dumps({"iteration": iteration, "holdout": settings.holdout, "JF": round(mean, 4),
                                  "per_sequence": per_sequence}) + "\n")
            log.flush()
            if mean > best["score"]:
                best = {"score": mean, "iteration": iteration}
                save_weights(trainee.saved, weights, {
                    **trainee.lineage, "iterations": iteration, "selected_iteration": iteration,
                    **({"holdout_JF": round(mean, 4), "holdout_per_sequence": per_sequence} if scores else {})})
            save_state(iteration)
    bar.close()
    log.close()
    return weights
