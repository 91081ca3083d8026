"""The space-time memory readout (model/memory.py): contracts without any weights."""

import torch
import torch.nn.functional as F

from vos_ros.model.memory import memory_readout, stack_memories


def _colours(size: int = 8):
    """A memory frame: left half colour A (the object), right half colour B; unit features."""
    a, b = F.normalize(torch.tensor([1.0, 0.2, 0.0]), dim=0), F.normalize(torch.tensor([0.0, 0.3, 1.0]), dim=0)
    features = torch.empty(3, size, size)
    features[..., : size // 2] = a[:, None, None]
    features[..., size // 2:] = b[:, None, None]
    mask = torch.zeros(size, size)
    mask[..., : size // 2] = 1
    return features, mask, a, b


def test_each_pixel_takes_the_labels_of_the_memory_pixels_it_looks_like():
    features, mask, a, b = _colours()
    query = torch.empty(1, 3, 8, 8)
    query[..., :4, :] = a[:, None, None]
    query[..., 4:, :] = b[:, None, None]
    p = memory_readout(query, *stack_memories([[(features, mask)]]), top_k=10, temperature=0.05, out_size=16)
    assert p.shape == (1, 1, 16, 16)
    assert p[0, 0, :6].min() > 0.99 and p[0, 0, 10:].max() < 0.01


def test_soft_labels_are_averaged_and_recent_frames_count():
    features, mask, a, _ = _colours()
    query = a.view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    # First frame: A is the object; a recent frame says A is half object (soft label 0.5).
    recent = (features.flip(-1).flip(-1), mask * 0.5)
    p = memory_readout(query, *stack_memories([[(features, mask), recent]]), 64, 0.05, None)
    assert p.shape == (1, 1, 4, 4)
    assert torch.allclose(p, torch.full_like(p, 0.75), atol=1e-4)


def test_targets_with_memories_of_different_lengths_ignore_the_padding():
    features, mask, a, b = _colours()
    other = (features.flip(-1), mask)  # B labelled object
    memories = [[(features, mask)], [(features, torch.zeros_like(mask)), other, other]]
    keys, labels, valid = stack_memories(memories)
    assert keys.shape == (2, 3, 3 * 64) and valid[0].sum() == 64 and valid[1].all()
    query = b.view(1, 3, 1, 1).expand(2, 3, 2, 2).contiguous()
    p = memory_readout(query, keys, labels, valid, 10, 0.05, None)
    assert p[0].max() < 0.01  # target 1: B is background (the padding's zero labels and features never win)
    assert p[1].min() > 0.99  # target 2: B is its object in its recent frames
