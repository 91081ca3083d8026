"""Training the prompt network (prompts/learnt.py): box, click and refining passes built from
still images and train-video frames with their masks, the head learning on the
tracker backbone. Resumable: each checkpoint keeps the best weights so far (chosen by the
held-out sequences' mean of box and click IoU) as a usable file. The backbone is the tracker's,
frozen, except for the last `backbone_stages` stages when the prompt settings fine-tune them."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data import davis
from ..data.crops import scaled
from ..data.examples import jitter_box, perturb_mask
from ..data.pairs import colour_jitter
from ..data.stills import StillImages
from ..eval.prompt_eval import boundary_distance, prompt_eval
from ..model.geometry import clip_box, crop_roi, mask_box
from ..model.losses import mrn_loss
from ..progress import progress
from .common import log_loss, optimise
from ..prompts.learnt import (WEIGHTS_FILE, LearntSegmenter, PromptNetwork, PromptSettings, build_network,
                              click_square, load_network, prompt_inputs, save_prompt_weights)

KINDS = ("box", "click", "refine")
KIND_SHARES = (0.4, 0.3, 0.3)
MIN_OBJECT_PIXELS = 64


@dataclass
class PromptTrainSettings:
    video: str  # DAVIS-layout train split (never a dev split)
    stills: str  # folder of still-image sets (data/stills.py)
    out: str
    iterations: int = 2000
    batch_size: int = 8
    lr: float = 3e-4
    seed: int = 0
    still_share: float = 0.5
    checkpoint_every: int = 250
    backbone_lr: float = 3e-5  # for the backbone stages the prompt settings fine-tune
    holdout: str = ""  # comma-separated train sequences left out and scored at every checkpoint
    init: str = ""  # prompt weights to start from (default: the head from the tracker's MRN)
    augment: float = 0.0  # share of objects mirrored, rescaled and recoloured (augmented())

    @property
    def holdouts(self) -> tuple[str, ...]:
        return tuple(s for s in self.holdout.split(",") if s)


def sample_click(rng: np.random.Generator, mask: np.ndarray) -> tuple[float, float]:
    """Where a user clicks: half the time the pixel farthest from the boundary (as prompt-eval
    does), else any pixel at least 30% of that distance inside."""
    distance = boundary_distance(mask)
    if rng.random() < 0.5:
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    else:
        ys, xs = np.nonzero(distance >= 0.3 * distance.max())
        pick = int(rng.integers(len(xs)))
        y, x = ys[pick], xs[pick]
    return float(x) + 0.5, float(y) + 0.5


def sample_negative(rng: np.random.Generator, mask: np.ndarray) -> tuple[float, float] | None:
    """A background pixel close to the object (a user's correction where a mask spilled over)."""
    size = max(3, int(0.15 * math.sqrt(mask.sum())))
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    ys, xs = np.nonzero(ring & ~mask)
    if not len(xs):
        return None
    pick = int(rng.integers(len(xs)))
    return float(xs[pick]) + 0.5, float(ys[pick]) + 0.5


def rough_mask(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A previous pass's mask: the tracker's perturbation (erode/dilate, shift), sometimes cut to
    a square (a first click pass that saw part of the object), softened."""
    rough = perturb_mask(rng, mask).astype(np.float32)
    if rng.random() < 0.3:
        box = mask_box(mask)
        side = max(box[2] - box[0], box[3] - box[1]) * rng.uniform(0.5, 0.9)
        x, y = sample_click(rng, mask)
        x0, y0 = int(max(0, x - side / 2)), int(max(0, y - side / 2))
        cut = np.zeros_like(rough)
        cut[y0:int(y + side / 2), x0:int(x + side / 2)] = 1
        rough = rough * cut if (rough * cut).sum() >= MIN_OBJECT_PIXELS else rough
    return cv2.GaussianBlur(rough, (0, 0), float(rng.uniform(0.5, 3.0)))


def augmented(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object mirrored half the time, the image rescaled by up to 1.35x either way and its
    colours jittered: 27 sequences of highly correlated frames are few, and the checkpoint
    scores of unaugmented runs fall after their peak."""
    if rng.random() < 0.5:
        image, mask = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
    image, mask = scaled(image, mask, float(np.exp(rng.uniform(-0.3, 0.3))))
    return colour_jitter(rng, image), mask


def prompt_example(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, settings: PromptSettings
                   ) -> dict[str, np.ndarray] | None:
    """One pass of a random kind with its target (None for a tiny object)."""
    if mask.sum() < MIN_OBJECT_PIXELS:
        return None
    height, width = mask.shape
    truth = mask_box(mask)
    kind = KINDS[int(rng.choice(len(KINDS), p=KIND_SHARES))]
    positives, negatives = [], []
    if kind == "box":
        box, where = clip_box(jitter_box(rng, truth, 0.05), width, height), "box"
        if rng.random() < 0.2:
            positives.append(sample_click(rng, mask))
    elif kind == "click":
        positives.append(sample_click(rng, mask))
        side = settings.click_side * min(height, width) * rng.uniform(0.85, 1.15)
        box, where = click_square(positives[0], side, width, height), None
    else:
        where = rough_mask(rng, mask)
        rough_box = mask_box(where) or truth
        box = clip_box(jitter_box(rng, rough_box, 0.03), width, height)
        if rng.random() < 0.6:
            positives.append(sample_click(rng, mask))
    if positives and rng.random() < 0.25:
        negative = sample_negative(rng, mask)
        if negative is not None:
            negatives.append(negative)
    inputs = prompt_inputs(image, box, where, positives, negatives, settings)
    inputs["target"] = crop_roi(mask.astype(np.float32), tuple(inputs["frame_roi"]), settings.roi_size)[None]
    return inputs


class ObjectSource:
    """Random (image, object mask): a still image's instance or a train-video frame's object."""

    def __init__(self, settings: PromptTrainSettings):
        self.stills = StillImages(settings.stills)
        self.still_share = settings.still_share
        self.frames = [(path, davis.annotation_path(settings.video, sequence, i))
                       for sequence in davis.list_sequences(settings.video) if sequence not in settings.holdouts
                       for i, path in enumerate(davis.frame_paths(settings.video, sequence))]
        self.frames = [(image, labels) for image, labels in self.frames if labels.exists()]
        if not self.frames:
            raise FileNotFoundError(f"no annotated train frames under {settings.video}")

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.still_share:
            image, mask, _ = self.stills.random_object(rng)
            return image, mask
        image_path, labels_path = self.frames[int(rng.integers(len(self.frames)))]
        labels = davis.read_labels(labels_path)
        ids = [i for i in np.unique(labels) if i != 0]
        mask = labels == ids[int(rng.integers(len(ids)))] if ids else labels > 0
        return davis.read_frame(image_path), mask


def collate(examples: list[dict[str, np.ndarray]]) -> tuple[torch.Tensor, ...]:
    crops = torch.from_numpy(np.stack([e["crop"] for e in examples])).permute(0, 3, 1, 2).float().div_(255.0)
    rows = torch.cat([torch.arange(len(examples), dtype=torch.float32)[:, None],
                      torch.from_numpy(np.stack([e["roi"] for e in examples]))], 1)
    priors = torch.from_numpy(np.stack([e["priors"] for e in examples]))
    targets = torch.from_numpy(np.stack([e["target"] for e in examples]))
    return crops, rows, priors, targets


def holdout_iou(network: PromptNetwork, settings: PromptSettings, video: str, sequences: tuple[str, ...]
                ) -> dict[str, float]:
    segmenter = LearntSegmenter(network, settings)
    scores = {kind: prompt_eval(segmenter, video, kind, list(sequences)) for kind in ("box", "click")}
    network.train()
    network.backbone.eval()
    return {kind: float(np.mean(list(s.values()))) for kind, s in scores.items()}


def train_prompts(settings: PromptTrainSettings, prompt: PromptSettings | None = None, resume: bool = True) -> Path:
    prompt = prompt or PromptSettings()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    network, tracker_weights = build_network(prompt)
    init = f"the tracker's MRN ({tracker_weights.name})"
    if settings.init:
        initial, _ = load_network(settings.init)
        if set(initial.own_state()) != set(network.own_state()):
            raise ValueError(f"{settings.init} holds another network than these prompt settings describe")
        network.load_state_dict(initial.own_state(), strict=False)
        init = f"{Path(settings.init).name} (sha256 {hashlib.sha256(Path(settings.init).read_bytes()).hexdigest()})"
    learnt_backbone = [p for p in network.backbone.parameters() if p.requires_grad]
    groups = [{"params": list(network.head.parameters()), "lr": settings.lr}]
    if learnt_backbone:
        groups.append({"params": learnt_backbone, "lr": settings.backbone_lr})
    base_lrs = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    start, best = 0, {"score": -1.0, "iteration": 0}
    checkpoint, weights = out / "checkpoint.pt", out / WEIGHTS_FILE
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        network.load_state_dict(state["network"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        start, best = state["iteration"], state["best"]
        print(f"resuming from {checkpoint} at iteration {start}")
    (out / "settings.json").write_text(json.dumps({"train": asdict(settings), "prompt": asdict(prompt)}, indent=2))
    source = ObjectSource(settings)
    network.train()
    network.backbone.eval()  # BatchNorm statistics stay the tracker's
    log = (out / "losses.jsonl").open("a")
    bar = progress(total=settings.iterations, initial=start, desc="train-prompts", unit="it")
    running, t0, iteration = None, time.time(), start
    while iteration < settings.iterations:
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * 0.5 * (1 + math.cos(math.pi * iteration / settings.iterations))
        rng = np.random.default_rng([settings.seed, 11, iteration])  # per iteration: resumable
        examples = []
        while len(examples) < settings.batch_size:
            image, mask = source.sample(rng)
            if settings.augment and rng.random() < settings.augment:  # no draw when off: older runs replay
                image, mask = augmented(rng, image, mask)
            example = prompt_example(image, mask, rng, prompt)
            if example is not None:
                examples.append(example)
        crops, rows, priors, targets = collate(examples)
        value = optimise(optimizer, mrn_loss(network(crops, rows, priors), targets),
                         [p for g in groups for p in g["params"]])
        iteration += 1
        running = log_loss(log, bar, iteration, time.time() - t0, value, running)
        if iteration % settings.checkpoint_every == 0 or iteration == settings.iterations:
            scores = holdout_iou(network, prompt, settings.video, settings.holdouts) if settings.holdouts else {}
            score = float(np.mean(list(scores.values()))) if scores else float(iteration)
            bar.write(f"iteration {iteration}, {time.time() - t0:.0f} s: loss {running:.3f} "
                      + " ".join(f"{k} IoU {v:.4f}" for k, v in scores.items()))
            log.write(json.dumps({"iteration": iteration, "holdout": settings.holdout,
                                  **{f"{k}_iou": round(v, 4) for k, v in scores.items()}}) + "\n")
            log.flush()
            if score > best["score"]:
                best = {"score": score, "iteration": iteration, **scores}
                save_prompt_weights(network, weights, prompt, tracker_weights, {
                    "command": "vos-ros train-prompts", "train": asdict(settings), "iterations": iteration,
                    "selected_iteration": iteration, "holdout_iou": {k: round(v, 4) for k, v in scores.items()},
                    "init": init})
            torch.save({"network": network.own_state(), "optimizer": optimizer.state_dict(),
                        "iteration": iteration, "best": best}, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
    bar.close()
    log.close()
    return weights
