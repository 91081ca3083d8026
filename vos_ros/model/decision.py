"""Decision module (DM): will box propagation be right for this frame? [DTN §3.2]

The paper feeds FlowNet2-S conv6 features through average pooling and two FC
layers (256, 1). With DIS there are no conv6 features, so the DM input is a
vector of flow-derived statistics per target, each already a spatial average over
the target's neighbourhood (the "average pooling"), followed by the paper's
FC 256 -> FC 1 head with a sigmoid (unstated; the label is an IoU in [0, 1]).
Each target gets a score; the frame's confidence is their mean, mirroring the
Eq. 1 label (mean BP-box IoU over the K targets).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .flow import warp_backward
from .geometry import Box, box_iou, box_size

FEATURE_NAMES = (
    "area_ratio",  # warped / previous mask area: shrinkage hints at occlusion
    "mask_crispness",  # mean |2p-1| of the warped mask in its box: blurred = unreliable flow
    "warp_error_in",  # photometric error of the flow inside the warped mask
    "warp_error_ring",  # ... and in a ring around it
    "flow_mag",  # mean flow magnitude inside the mask / box diagonal
    "flow_std",  # flow spread inside the mask / box diagonal (deformation)
    "flow_rel",  # |mean flow inside - mean flow in the ring| / box diagonal
    "box_iou_prev",  # IoU(previous box, BP box)
    "scale_change",  # |log(BP box diagonal / previous box diagonal)|
    "border",  # BP box fraction outside the frame margin (leaving the view)
    "size",  # box diagonal / frame diagonal
    "prev_score",  # previous mask confidence
    "empty",  # 1 when the warped mask is empty (BP impossible)
)
NUM_FEATURES = len(FEATURE_NAMES)


def photometric_warp_error(prev_gray: np.ndarray, gray: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """|current - previous warped by the backward flow| per pixel, in [0, 1]: where the flow is wrong."""
    return np.abs(gray.astype(np.float32) - warp_backward(prev_gray, flow).astype(np.float32)) / 255.0


def flow_features(
    flow: np.ndarray,
    warp_error: np.ndarray,
    prev_mask: np.ndarray,
    warped_mask: np.ndarray,
    prev_box: Box,
    bp_box: Box | None,
    prev_score: float,
    frame_size: tuple[int, int],
    scale: float,
) -> np.ndarray:
    """DM input for one target; all maps are at flow resolution (`scale` x frame)."""
    width, height = frame_size
    feats = np.zeros(NUM_FEATURES, dtype=np.float32)
    frame_diag = float(np.hypot(width, height))
    feats[11] = prev_score
    prev_area = float(prev_mask.sum())
    if bp_box is None or prev_area <= 0:
        feats[12] = 1.0
        return feats
    h, w = flow.shape[:2]
    diag = float(np.hypot(*box_size(bp_box))) * scale + 1e-6
    # Work inside the BP box enlarged 2x (the ring lives there too).
    bw, bh = box_size(bp_box)
    x1 = int(max(0, np.floor((bp_box[0] - bw / 2) * scale)))
    y1 = int(max(0, np.floor((bp_box[1] - bh / 2) * scale)))
    x2 = int(min(w, np.ceil((bp_box[2] + bw / 2) * scale)))
    y2 = int(min(h, np.ceil((bp_box[3] + bh / 2) * scale)))
    wm = warped_mask[y1:y2, x1:x2]
    inside = wm > 0.5
    ring = (~inside) & (wm <= 0.05)
    fl = flow[y1:y2, x1:x2]
    err = warp_error[y1:y2, x1:x2]
    feats[0] = min(float(wm.sum()) / prev_area, 2.0)
    feats[1] = float(np.abs(2 * wm[inside] - 1).mean()) if inside.any() else 0.0
    feats[2] = float(err[inside].mean()) if inside.any() else 1.0
    feats[3] = float(err[ring].mean()) if ring.any() else feats[2]
    if inside.any():
        f_in = fl[inside]
        mean_in = f_in.mean(axis=0)
        feats[4] = min(float(np.linalg.norm(mean_in)) / diag, 2.0)
        feats[5] = min(float(f_in.std(axis=0).sum()) / diag, 2.0)
        mean_ring = fl[ring].mean(axis=0) if ring.any() else mean_in
        feats[6] = min(float(np.linalg.norm(mean_in - mean_ring)) / diag, 2.0)
    feats[7] = box_iou(prev_box, bp_box)
    prev_diag = float(np.hypot(*box_size(prev_box))) + 1e-6
    feats[8] = min(abs(float(np.log((diag / scale) / prev_diag))), 2.0)
    margin = 0.02 * min(width, height)
    inner = (margin, margin, width - margin, height - margin)
    area = bw * bh + 1e-6
    iw = max(0.0, min(bp_box[2], inner[2]) - max(bp_box[0], inner[0]))
    ih = max(0.0, min(bp_box[3], inner[3]) - max(bp_box[1], inner[1]))
    feats[9] = 1.0 - iw * ih / area
    feats[10] = float(np.hypot(bw, bh)) / frame_diag
    return feats


class DecisionModule(nn.Module):
    def __init__(self, hidden: int = 256):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(NUM_FEATURES, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(K, NUM_FEATURES) -> (K,) per-target confidence in [0, 1]."""
        return torch.sigmoid(self.head(features)).squeeze(-1)
