"""What the OVSNet and DyeNet trainers share: their heads learn on LIP's frozen detector
(methods/detections.DetectorMethod), so they are built, described and scored alike."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict

import torch

from ..backends.lip import TorchLIP
from ..config import EngineConfig
from ..inference.engine import Tracker
from ..inference.methods.detections import DetectorMethod
from ..inference.methods.lip import load_lip
from ..model.lip import LIP
from ..model.weights import weights_path
from .common import Trainee, sequence_scores


def heads_trainee(config: EngineConfig, settings, method: type[DetectorMethod], detector_untrained: bool
                  ) -> tuple[LIP, torch.nn.Module, Trainee]:
    """The frozen detector, fresh heads (seeded by `settings.seed`) and what train_loop needs for them."""
    torch.manual_seed(settings.seed)
    section = getattr(config, method.name)
    lip = load_lip(config, section.detector_weights, detector_untrained)
    heads = method.heads_class(config.lip.channels, lip.backbone.channels[0])
    detector = weights_path(section.detector_weights)
    lineage = {"method": method.name, "config": config.name, "height": section.height,
               "detector_weights": detector.name,
               "detector_weights_sha256": (hashlib.sha256(detector.read_bytes()).hexdigest()
                                           if not detector_untrained else "untrained"),
               "command": f"vos-ros train-{method.name}", "train": asdict(settings)}
    optimizer = torch.optim.AdamW(heads.parameters(), lr=settings.lr, weight_decay=1e-4)
    heads.train()
    return lip, heads, Trainee(method.name, heads, {"heads": heads}, optimizer, lineage)


def holdout_scores(method: type[DetectorMethod], lip: LIP, heads: torch.nn.Module, config: EngineConfig, video: str,
                   sequences: tuple[str, ...]) -> dict[str, float]:
    """J&F per held-out sequence of the engine with copies of these networks."""
    tracker = Tracker(config, method(config, TorchLIP(copy.deepcopy(lip), "cpu"), copy.deepcopy(heads).eval()))
    return sequence_scores(tracker, video, sequences)
