"""The DTN networks in one module, and loading / saving their weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import WEIGHTS_DIR, EngineConfig
from .backbone import STRIDES, build_backbone
from .crpn import CRPNHead
from .decision import DecisionModule
from .mrn import MaskRefinementNetwork


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
        load_weights(model, path)
    return model.eval()


def resolve_weights(config: EngineConfig, weights: str | Path | None) -> Path | None:
    """An explicit path wins; else the config's file name in the packaged weights folder."""
    name = weights if weights is not None else config.weights
    if name is None:
        return None
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = WEIGHTS_DIR / path
    return path


def load_weights(model: DTN, path: Path) -> dict:
    """Load a safetensors file into `model`; returns its metadata. Errors name the file."""
    if not path.exists():
        raise FileNotFoundError(
            f"DTN weights file not found: {path} (pass --weights FILE, set `weights:` in the config, "
            "or train with `vos-ros train`)"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"DTN weights file {path} is unreadable or corrupt: {exc}") from exc
    model_state = model.state_dict()
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    mismatched = sorted(k for k in state if k in model_state and state[k].shape != model_state[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"DTN weights file {path} does not fit this configuration: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, shape mismatch {mismatched[:3]} (was it trained for another config?)"
        )
    model.load_state_dict({k: v.to(model_state[k].dtype) for k, v in state.items()})
    meta_path = path.with_suffix(".json")
    return json.loads(meta_path.read_text()) if meta_path.exists() else {}


def save_weights(model: DTN, path: Path, metadata: dict, half: bool = True) -> None:
    """fp16 storage halves the file; inference upcasts to fp32 on load."""
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
