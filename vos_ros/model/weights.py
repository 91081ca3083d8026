"""Weights files: safetensors (fp16 storage, fp32 in use) with a JSON metadata file beside them."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import WEIGHTS_DIR
from .widen import widened


def weights_path(name: str | Path) -> Path:
    """A path as given when it exists or is absolute; else the name in the packaged weights folder."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = WEIGHTS_DIR / path
    return path


def load_weights(model: nn.Module, path: Path, what: str, train_command: str, widen: bool = False) -> dict:
    """Load a safetensors file into `model` (`what` names the networks in errors; `train_command`
    makes them); returns its metadata. Errors name the file. With `widen`, tensors narrower
    than the model's are widened into it (model/widen.py) instead of refused."""
    if not path.exists():
        raise FileNotFoundError(
            f"{what} weights file not found: {path} (pass --weights FILE, set the weights file in the config, "
            f"or train with `{train_command}`)"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{what} weights file {path} is unreadable or corrupt: {exc}") from exc
    model_state = model.state_dict()
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    mismatched = sorted(k for k in state if k in model_state and state[k].shape != model_state[k].shape)
    if missing or unexpected or (mismatched and not widen):
        raise ValueError(
            f"{what} weights file {path} does not fit this configuration: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, shape mismatch {mismatched[:3]} (was it trained for another config?)"
        )
    model.load_state_dict({k: widened(v, model_state[k]) if k in mismatched else v.to(model_state[k].dtype)
                           for k, v in state.items()})
    meta_path = path.with_suffix(".json")
    return json.loads(meta_path.read_text()) if meta_path.exists() else {}


def save_weights(model: nn.Module, path: Path, metadata: dict, half: bool = True) -> None:
    """fp16 storage halves the file; inference upcasts to fp32 on load."""
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
