"""Starting wider heads from narrower trained ones (Net2Net-style, function-preserving).

A saved tensor smaller than the model's in some dimensions fills the model's leading block;
the added output channels keep their fresh initialisation, and the weights by which the old
output channels would read the added input channels are zero. For heads whose layers only
append channels (the MRN: convolutions, channel-wise products and sums), the widened network
computes exactly what the narrow one did, and training then moves the added channels.
`load_weights(..., widen=True)` (model/weights.py) applies it to a weights file.
"""

from __future__ import annotations

import torch


def widened(saved: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """`fresh` (the model's initialised tensor) with `saved` in its leading block, and the block
    of the old outputs' weights on the added inputs (dims 0 < old, 1 >= old) zero."""
    if saved.dim() != fresh.dim() or any(s > f for s, f in zip(saved.shape, fresh.shape)):
        raise ValueError(f"cannot widen a tensor of shape {tuple(saved.shape)} to {tuple(fresh.shape)}")
    out = fresh.detach().clone()
    out[tuple(slice(0, s) for s in saved.shape)] = saved.to(out.dtype)
    if out.dim() >= 2 and saved.shape[1] < out.shape[1]:
        out[:saved.shape[0], saved.shape[1]:] = 0.0
    return out
