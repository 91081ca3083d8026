"""Prompt masks by the project's own network: the tracker's frozen backbone and an MRN-shaped
head (model/mrn.py) whose two prior channels carry the prompt instead of a previous mask.

Prior channels on the RoI (M x M):
- channel 0, where the object is: a box prior (ones inside the box) for a box prompt; a
  rough mask (the previous pass, or a polygon) when refining; 0.5 (no evidence) for a
  first click-only pass.
- channel 1, the clicks: 0.5 plus a Gaussian bump (sigma `click_sigma` x RoI side) of +0.45
  at each positive click and -0.45 at each negative one. The MRN adds both as logits to its
  output, so a positive click already pulls its neighbourhood in before any training.

Passes (choices of ours; SAM-like interactive segmenters iterate likewise):
- box: one pass on the box enlarged by `box_margin`, then `refine_passes` passes that feed
  the probability back as channel 0 on the same RoI.
- clicks only: the first pass looks at a square of side `click_side` x min(H, W) around the
  first positive click (the object's size is unknown); then `click_passes` passes each take
  the box of the current mask, so the RoI grows to an object the square cut off.
- polygon: its fill is the rough mask of a refining pass on its box.
The mask is the probability above `threshold`, restricted to the connected components that
touch the prompt (the box's inside or the positive clicks).

Region: the backbone sees a square around the RoI of `region_scale` x its longer side,
resized to `region_size` (the tracker uses 2.5 x to allow for motion; a prompt's box is
exact, so a tighter region gives more feature cells on the object).

Inference settings of the shipped weights (trained at region scale 1.5 with one refining
pass), chosen on the held-out train sequences (docs/experiments.md "Prompt inference
settings"): region scale 1.25, `flip_average` (mirror-image test-time augmentation), no
refining pass for boxes, and `grabcut_refine`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import WEIGHTS_DIR, load_config
from ..model.dtn import load_dtn, resolve_weights
from ..model.geometry import Box, Region, box_prior, clip_box, crop_roi, enlarge_box, mask_box, paste_roi
from ..model.mrn import MaskRefinementNetwork, roi_levels
from .prompt import Prompt, check_image
from .grabcut import component_at, refine_probability

WEIGHTS_FILE = "prompt_cpu.safetensors"
TRACKER_CONFIG = "cpu"  # whose backbone (and MRN, as the initial head) the prompt network uses


@dataclass
class PromptSettings:
    region_scale: float = 1.5
    region_size: int = 256
    region_min_side: int = 64
    roi_size: int = 56
    channels: int = 64
    box_margin: float = 0.15
    click_side: float = 0.8
    click_sigma: float = 0.06
    threshold: float = 0.5
    refine_passes: int = 1
    click_passes: int = 2
    flip_average: bool = False  # each pass also on the mirror image, the two probabilities averaged
    # GrabCut seeded by the final probability (grabcut.refine_probability) in the box, or for
    # clicks in the mask's box enlarged by box_margin: colour models of this very image fix
    # edges the network's 56x56 output blurs.
    grabcut_refine: bool = False
    grabcut_sure: tuple[float, float] = (0.9, 0.05)  # probability above: object; below: background
    # The backbone's last N of 4 stages fine-tuned for prompts (stored with the head; BatchNorm
    # statistics stay the tracker's, its scale and shift learn); the others are the tracker's.
    backbone_stages: int = 0


class PromptNetwork(nn.Module):
    def __init__(self, backbone: nn.Module, settings: PromptSettings):
        super().__init__()
        self.backbone = backbone
        self.head = MaskRefinementNetwork(backbone.channels, settings.channels, settings.roi_size)
        stages = backbone.stem_and_stages
        if not 0 <= settings.backbone_stages <= len(stages):
            raise ValueError(f"backbone_stages must be 0..{len(stages)}, got {settings.backbone_stages}")
        self.learnt_stages = stages[len(stages) - settings.backbone_stages:]
        backbone.requires_grad_(False)
        for stage in self.learnt_stages:
            stage.requires_grad_(True)

    def own_state(self) -> dict[str, torch.Tensor]:
        """What the prompt weights file stores: the head and the fine-tuned backbone stages."""
        return {k: v for k, v in self.state_dict().items() if k.startswith("head.") or _in_stages(k, self)}

    def forward(self, crops: torch.Tensor, rows: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """crops (N, 3, S, S) in [0, 1]; rows (K, 5): batch index + RoI in crop pixels; priors
        (K, 2, M, M) -> logits (K, 1, M, M)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(self.learnt_stages)):
            features = self.backbone(crops)
        return self.head(roi_levels(features, rows, self.head.roi_sizes), priors)


def _in_stages(key: str, network: PromptNetwork) -> bool:
    """Whether a backbone state key belongs to one of the fine-tuned stages (BatchNorm buffers too)."""
    first = len(network.backbone.stem_and_stages) - len(network.learnt_stages)
    parts = key.split(".")
    return parts[:2] == ["backbone", "stem_and_stages"] and int(parts[2]) >= first


def build_network(settings: PromptSettings, tracker_weights: str | Path | None = None, init_head: bool = True
                  ) -> tuple[PromptNetwork, Path]:
    """The network on the tracker's backbone (its shipped weights unless given); `init_head`
    starts the head from the tracker's MRN (same shapes: it segments a box prior already)."""
    config = load_config(TRACKER_CONFIG)
    path = resolve_weights(config, tracker_weights)
    dtn = load_dtn(config, path)
    network = PromptNetwork(dtn.backbone, settings)
    if init_head and settings.channels == config.mrn.channels:
        network.head.load_state_dict(dtn.mrn.state_dict())
    return network.eval(), path


def load_network(weights: str | Path | None = None) -> tuple[PromptNetwork, PromptSettings]:
    """The network of a prompt weights file (default: the shipped one) and its stored settings."""
    path = Path(weights) if weights is not None else WEIGHTS_DIR / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"prompt network weights not found: {path} (train them with "
                                "`vos-ros train-prompts`, or use the grabcut segmenter)")
    meta_path = path.with_suffix(".json")
    metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    settings = PromptSettings(**metadata.get("settings", {}))
    network, _ = build_network(settings, metadata.get("tracker_weights"), init_head=False)
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        if set(state) != set(network.own_state()):
            raise ValueError("its tensors are not those of its settings' network")
        network.load_state_dict(state, strict=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ValueError(f"prompt network weights {path} are unreadable or do not fit: {exc}") from exc
    return network, settings


def click_map(points_pos, points_neg, roi: Box, size: int, sigma: float) -> np.ndarray:
    """Channel 1 on an RoI: 0.5 + 0.45 x (positive bumps - negative bumps), in [0.05, 0.95]."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    x1, y1, x2, y2 = roi
    spread = 2 * (sigma * size) ** 2

    def bumps(points) -> np.ndarray:
        out = np.zeros((size, size), np.float32)
        for x, y in points:
            u, v = (x - x1) / (x2 - x1) * size, (y - y1) / (y2 - y1) * size
            out = np.maximum(out, np.exp(-((grid[None, :] - u) ** 2 + (grid[:, None] - v) ** 2) / spread))
        return out

    return np.clip(0.5 + 0.45 * (bumps(points_pos) - bumps(points_neg)), 0.05, 0.95)


def prompt_inputs(image: np.ndarray, box: Box, where: np.ndarray | str | None, positives, negatives,
                  settings: PromptSettings) -> dict[str, np.ndarray]:
    """One pass's inputs, the same in training and inference: the region crop (S, S, 3) uint8,
    the RoI in crop pixels (4,), the priors (2, M, M) and the RoI in frame pixels (4,).
    `where`: "box" (box prior), None (no evidence) or a frame-sized rough mask in [0, 1]."""
    height, width = image.shape[:2]
    size = settings.roi_size
    region = Region.around(box, settings.region_scale, settings.region_min_side, float(max(width, height)),
                           settings.region_size)
    roi = enlarge_box(box, settings.box_margin)
    if isinstance(where, str):
        first = box_prior(size, settings.box_margin)
    elif where is None:
        first = np.full((size, size), 0.5, np.float32)
    else:
        first = crop_roi(where.astype(np.float32), roi, size)
    fill = image.reshape(-1, 3).mean(axis=0)
    return {
        "crop": region.crop(image, fill),
        "roi": np.asarray(region.to_input(roi), np.float32),
        "priors": np.stack([first, click_map(positives, negatives, roi, size, settings.click_sigma)]).astype(np.float32),
        "frame_roi": np.asarray(roi, np.float32),
    }


def click_square(point, side: float, width: int, height: int) -> Box:
    """A square of `side` pixels around `point`, shifted inside the frame where it fits."""
    x0 = float(np.clip(point[0] - side / 2, 0, max(width - side, 0)))
    y0 = float(np.clip(point[1] - side / 2, 0, max(height - side, 0)))
    return (x0, y0, x0 + side, y0 + side)


class LearntSegmenter:
    name = "learnt"

    def __init__(self, network: PromptNetwork, settings: PromptSettings, device: str = "cpu"):
        self.network, self.settings = network.to(device).eval(), settings
        self.device = torch.device(device)

    @classmethod
    def from_weights(cls, weights: str | Path | None = None, device: str = "cpu") -> "LearntSegmenter":
        """The shipped (or given) weights, with the settings stored beside them."""
        return cls(*load_network(weights), device)

    def probability(self, image: np.ndarray, box: Box, where, positives=(), negatives=()) -> np.ndarray:
        """One pass: the object's probability over the frame (zero outside the RoI); with
        `flip_average`, the mean of the pass on the image and on its mirror image."""
        prob = self._pass(image, box, where, positives, negatives)
        if not self.settings.flip_average:
            return prob
        width = image.shape[1]
        mirrored = self._pass(np.ascontiguousarray(image[:, ::-1]), (width - box[2], box[1], width - box[0], box[3]),
                              where if where is None or isinstance(where, str) else np.ascontiguousarray(where[:, ::-1]),
                              [(width - x, y) for x, y in positives], [(width - x, y) for x, y in negatives])
        return 0.5 * (prob + mirrored[:, ::-1])

    @torch.no_grad()
    def _pass(self, image: np.ndarray, box: Box, where, positives, negatives) -> np.ndarray:
        inputs = prompt_inputs(image, box, where, positives, negatives, self.settings)
        crop = torch.from_numpy(inputs["crop"]).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)
        rows = torch.cat([torch.zeros(1, 1), torch.from_numpy(inputs["roi"])[None]], 1).to(self.device)
        priors = torch.from_numpy(inputs["priors"])[None].to(self.device)
        prob = torch.sigmoid(self.network(crop, rows, priors))[0, 0].float().cpu().numpy()
        height, width = image.shape[:2]
        window, (x0, y0) = paste_roi(prob, tuple(inputs["frame_roi"]), height, width)
        out = np.zeros((height, width), np.float32)
        out[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window
        return out

    def segment(self, image_rgb: np.ndarray, prompt: Prompt) -> np.ndarray:
        height, width = check_image(image_rgb)
        prompt.check(width, height)
        s = self.settings
        pos, neg = prompt.positives, prompt.negatives
        box = prompt.checked_box(width, height)
        if prompt.polygon:
            rough = np.zeros((height, width), np.uint8)
            cv2.fillPoly(rough, [np.round(np.asarray(prompt.polygon)).astype(np.int32)], 1)
            if rough.sum() < 4:
                raise ValueError("the polygon covers fewer than 4 pixels of the image")
            seed, passes = rough > 0, s.refine_passes
            prob = self.probability(image_rgb, mask_box(rough), rough.astype(np.float32), pos, neg)
        elif box is not None:
            seed = np.zeros((height, width), bool)
            seed[box[1]:box[3], box[0]:box[2]] = True
            prob, passes = self.probability(image_rgb, box, "box", pos, neg), s.refine_passes
        else:
            seed = np.zeros((height, width), bool)
            for x, y in pos:
                seed[int(y), int(x)] = True
            first = click_square(pos[0], s.click_side * min(height, width), width, height)
            prob, passes = self.probability(image_rgb, first, None, pos, neg), s.click_passes
        for _ in range(passes):
            current = component_at(prob > s.threshold, seed)
            roi = box if box is not None else mask_box(current)
            if roi is None:
                break
            prob = self.probability(image_rgb, roi, prob, pos, neg)
        mask = component_at(prob > s.threshold, seed)
        if not mask.any():
            raise ValueError("the prompt network found no object at this prompt")
        if s.grabcut_refine:
            region = box if box is not None else clip_box(enlarge_box(mask_box(mask), s.box_margin), width, height)
            x1, y1, x2, y2 = (int(round(v)) for v in region)
            mask = refine_probability(image_rgb, prob, (x1, y1, x2, y2), mask, *s.grabcut_sure)
        return mask


def save_prompt_weights(network: PromptNetwork, path: Path, settings: PromptSettings, tracker_weights: Path,
                        lineage: dict) -> None:
    """The head and fine-tuned stages (fp16); the metadata names the tracker weights whose backbone
    the rest is."""
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in network.own_state().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    metadata = {"settings": asdict(settings), "tracker_weights": tracker_weights.name,
                "tracker_weights_sha256": hashlib.sha256(tracker_weights.read_bytes()).hexdigest(), **lineage}
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
