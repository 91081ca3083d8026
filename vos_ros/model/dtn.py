"""The DTN networks in one module, and loading / saving their weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import EngineConfig
from .backbone import STRIDES, build_backbone
from .crpn import CRPNHead
from .decision import DecisionModule
from .mrn import MaskRefinementNetwork
from .weights import load_weights, weights_path


class DTN(nn.Module):
    """Shared backbone + decision module + conditional RPN head + mask refinement network."""

    strides = STRIDES

    def __init__(self, config: EngineConfig, imagenet_init: bool = False):
        super().__init__()
        bb = config.backbone
        self.backbone = build_backbone(bb.name, imagenet_init, bb.imagenet_weights)
        channels = self.backbone.channels
        self.decision = DecisionModule(config.decision.hidden)
        self.crpn = CRPNHead(channels[2], config.crpn.head_channels, config.crpn.roi_size)
        self.mrn = MaskRefinementNetwork(channels, config.mrn.channels, config.mrn.roi_size,
                                         config.mrn.correction_scale)


def load_dtn(config: EngineConfig, weights: str | Path | None = None, untrained: bool = False) -> DTN:
    """The networks with weights loaded (the config's shipped file unless `weights` is given), on the CPU.

    `untrained=True` is an explicit opt-in to ImageNet backbone + randomly initialised heads
    (seeded), for development before weights exist; a missing or corrupt weights file is
    otherwise always an error.
    """
    torch.manual_seed(0)
    model = DTN(config, imagenet_init=untrained)
    if not untrained:
        path = resolve_weights(config, weights)
        if path is None:
            raise ValueError("no weights configured: set `weights:` in the config or pass a weights file")
        load_weights(model, path, "DTN", "vos-ros train")
    return model.eval()


def resolve_weights(config: EngineConfig, weights: str | Path | None) -> Path | None:
    """An explicit path wins; else the config's DTN file name in the packaged weights folder."""
    name = weights if weights is not None else config.weights
    return weights_path(name) if name is not None else None
