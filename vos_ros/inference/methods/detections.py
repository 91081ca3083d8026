"""The class-agnostic detections OVSNet and DyeNet take from LIP's network run with a zero
memory (its static mode: one pass, nothing carried): centre-heatmap proposals, their
regressed boxes after NMS, and their 28x28 masks; and what the two methods built on that
frozen detector share (`DetectorMethod`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.ops import nms

from ...backends.lip import TorchLIP, create_lip_backend
from ...config import EngineConfig
from ...model.flow import DISFlow, flow_shape
from ...model.geometry import paste_roi
from ...model.lip import LIP, clamp_boxes, decode_boxes, heatmap_boxes, pool_boxes, pool_masks
from ...model.weights import load_weights, weights_path
from .base import Method
from .lip import LIPFrame, batch_rows, load_lip, working_frame


@dataclass
class WorkingFrame:
    """A frame at the detector's working resolution: its backbone levels and, for the flow, its grey image."""

    lip: LIPFrame
    gray: np.ndarray

    @classmethod
    def of(cls, backend: TorchLIP, flow: DISFlow, image: np.ndarray, shape: tuple[int, int]) -> "WorkingFrame":
        """`image` resized to `shape` (h, w)."""
        small = cv2.resize(image, shape[::-1], interpolation=cv2.INTER_AREA)
        return cls(working_frame(backend, small), flow.prepare(small))


@dataclass
class Detections:
    boxes: torch.Tensor  # (R, 4) working pixels
    masks: np.ndarray  # (R, h, w) bool at the working resolution
    probs: list  # per detection its 28x28 probability
    seeded: np.ndarray  # (R,) bool: regressed from a box given as `extra`, not found by the heatmap
    embeddings: torch.Tensor | None = None  # (R, D): the method's Re-ID embeddings, when it computes them


def zero_memory_pass(backend: TorchLIP, frame: LIPFrame) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """One pass of the detector's memory from zeros: its propagated levels, heatmap and sizes."""
    _, propagated, (heatmap, size) = backend.memory(frame.levels[1:], backend.model.zero_hidden(frame.levels))
    return propagated, heatmap, size


def detect(backend: TorchLIP, frame: LIPFrame, propagated, heatmap, size, count: int, min_score: float,
           nms_iou: float, extra: list = ()) -> Detections:
    """The `count` strongest heatmap proposals above `min_score` and the `extra` boxes (last in
    the NMS order), regressed, NMS at `nms_iou`, with their masks."""
    h, w = frame.size
    boxes, scores = heatmap_boxes(heatmap, size, count)
    keep = scores > min_score
    boxes, scores = boxes[keep], scores[keep]
    detected = len(boxes)
    if extra:
        boxes = torch.cat([boxes, torch.tensor(extra, dtype=torch.float32, device=boxes.device)])
        scores = torch.cat([scores, scores.new_zeros(len(extra))])
    if not len(boxes):
        return Detections(boxes.reshape(0, 4), np.zeros((0, h, w), bool), [], np.zeros(0, bool))
    boxes = clamp_boxes(boxes, w, h)
    deltas = backend.model.box_predictor(backend.box_trunk(pool_boxes(propagated, batch_rows(boxes))))
    boxes = clamp_boxes(decode_boxes(boxes, deltas), w, h)
    kept = nms(boxes, scores, nms_iou)
    boxes, seeded = boxes[kept], (kept >= detected).cpu().numpy()
    features = backend.mask_trunk(*pool_masks(propagated, frame.levels[0], batch_rows(boxes)))
    probs = torch.sigmoid(backend.model.mask_predictor(features)[:, 0]).cpu().numpy()
    masks = np.zeros((len(boxes), h, w), bool)
    for r, (prob, box) in enumerate(zip(probs, boxes.tolist())):
        window, (x, y) = paste_roi(prob, box, h, w)
        masks[r, y:y + window.shape[0], x:x + window.shape[1]] = window > 0.5
    return Detections(boxes, masks, list(probs), seeded)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, h, w) and (R, h, w) bool -> (T, R) IoU."""
    a, b = a.reshape(len(a), -1).astype(np.float32), b.reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


class DetectorMethod(Method):
    """A method of its own heads on LIP's frozen detector (OVSNet, DyeNet). Its config section,
    named like the method, gives `detector_weights`, `weights` (the heads) and `height` (the
    working image's rows); `roi_counts` says how many RoIs its detector calls take (the
    TensorRT profiles)."""
    heads_class: ClassVar[type[nn.Module]]
    label: ClassVar[str]  # in error messages: "OVSNet"

    def __init__(self, config: EngineConfig, backend: TorchLIP, heads: nn.Module):
        self.config, self.backend = config, backend
        self.device = backend.device
        self.heads = heads.to(self.device).eval()
        self.flow = DISFlow(config.flow.preset, 1.0)  # on the working image

    @staticmethod
    def roi_counts(config: EngineConfig) -> tuple[int, int, int]:
        raise NotImplementedError

    @classmethod
    def load_heads(cls, config: EngineConfig, model: LIP, weights: str | None = None, untrained: bool = False
                   ) -> nn.Module:
        """The heads on `model`'s feature widths: the section's shipped file unless `weights`."""
        torch.manual_seed(0)
        heads = cls.heads_class(config.lip.channels, model.backbone.channels[0])
        if not untrained:
            load_weights(heads, weights_path(weights or getattr(config, cls.name).weights), cls.label,
                         f"vos-ros train-{cls.name}")
        return heads.eval()

    @classmethod
    def from_config(cls, config, weights=None, device="cpu", untrained=False, backend="torch", precision=None,
                    cache_dir=None) -> "DetectorMethod":
        model = load_lip(config, getattr(config, cls.name).detector_weights, untrained)
        return cls(config, create_lip_backend(backend, model, config, device, precision, cache_dir,
                                              cls.roi_counts(config)),
                   cls.load_heads(config, model, weights, untrained))

    def mask_shape(self, width: int, height: int) -> tuple[int, int]:
        return flow_shape(width, height, getattr(self.config, self.name).height / height)

    def prepare(self, image: np.ndarray) -> WorkingFrame:
        return WorkingFrame.of(self.backend, self.flow, image, self.mask_shape(image.shape[1], image.shape[0]))
