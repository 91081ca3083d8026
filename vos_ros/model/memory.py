"""Space-time memory readout: the MRN's second prior when `mrn.prior_match` is `memory`.

k-NN label propagation (the CRW / DINO evaluation protocol; the project's training-free
reference is ../shared/tools/knn_anchor.py, 0.798 J&F on davis2016/dev with nothing learnt)
restricted to each target's RoI: every pixel of the current RoI takes the softmax-weighted
soft labels of its `top_k` most similar pixels among the target's memory. The memory is the
target's first frame (its given mask) and its last `mrn.memory_frames` frames (the masks the
tracker published), each stored as the RoI's matching features (match.match_features) and
the mask on the same grid. Nothing here is learnt either.

Why in the RoI and not full-frame: the RoI is where the MRN looks anyway, its features come
at the target's own scale (the anchor on 432x240 alike dogs needed a 2x upscale to compete),
and the cost is one (S^2 x n S^2) product per target. The anchor's spatial radius (12 cells)
is dropped: a RoI spans a few cells more than the object, and its memories are RoIs of
other frames, whose cells do not line up with the query's.

Why recent frames besides the first: appearance drifts (pose, light, scale); the anchor
protocol keeps four, as here by default. Its settings (k 10, temperature 0.05) are taken
as the protocol states them, not tuned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED = -1e4  # similarity of padding: below any cosine, so softmax gives it no weight


def memory_readout(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
                   top_k: int, temperature: float, out_size: int | None) -> torch.Tensor:
    """Foreground probability per query pixel, (K, 1, out_size, out_size) (or the query's own
    size when out_size is None).

    query: (K, C, H, W) unit-length features; keys: (K, C, R) unit-length memory features;
    labels: (K, R) memory soft labels in [0, 1]; valid: (K, R) bool (False: padding, for targets
    whose memories differ in length).
    """
    q = query.flatten(2).transpose(1, 2)  # K, Q, C
    similarity = torch.bmm(q, keys).masked_fill(~valid[:, None, :], MASKED)  # K, Q, R
    top, index = similarity.topk(min(top_k, similarity.shape[-1]), dim=-1)
    weights = F.softmax(top / temperature, dim=-1)
    neighbours = torch.gather(labels[:, None, :].expand(-1, q.shape[1], -1), 2, index)
    probability = (weights * neighbours).sum(-1).view(query.shape[0], 1, *query.shape[-2:])
    if out_size is None:
        return probability
    return F.interpolate(probability, size=(out_size, out_size), mode="bilinear", align_corners=False)


def stack_memories(memories: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> tuple[torch.Tensor, ...]:
    """Per target a list of (features (C, S, S), mask (S, S)) -> keys (K, C, R), labels (K, R),
    valid (K, R), padded to the longest memory."""
    longest = max(len(m) for m in memories)
    ref = memories[0][0][0]
    channels, size = ref.shape[0], ref.shape[-1]
    keys = ref.new_zeros(len(memories), channels, longest * size * size)
    labels = ref.new_zeros(len(memories), longest * size * size)
    valid = torch.zeros(len(memories), longest * size * size, dtype=torch.bool, device=ref.device)
    for k, memory in enumerate(memories):
        n = len(memory) * size * size
        keys[k, :, :n] = torch.cat([f.flatten(1) for f, _ in memory], 1)
        labels[k, :n] = torch.cat([m.flatten().to(ref.dtype) for _, m in memory])
        valid[k, :n] = True
    return keys, labels, valid
