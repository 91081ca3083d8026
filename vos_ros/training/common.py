"""What every trainer does the same way: frozen BatchNorm, an optimiser step, the loss log,
the resumable checkpoint, and the engine's J&F on held-out train sequences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Iterable

import torch

from ..data import davis
from ..eval.metrics import evaluate_sequence
from ..inference.engine import Tracker
from ..inference.video import segment_video

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
