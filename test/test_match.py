"""The first-frame appearance match (model/match.py): contracts without any weights."""

import torch
import torch.nn.functional as F

from vos_ros.model.match import appearance_match, match_features


def _two_colour_maps(size: int = 8):
    """Reference: left half colour A (the object), right half colour B; unit features."""
    a, b = F.normalize(torch.tensor([1.0, 0.2, 0.0]), dim=0), F.normalize(torch.tensor([0.0, 0.3, 1.0]), dim=0)
    reference = torch.empty(1, 3, size, size)
    reference[..., : size // 2] = a[:, None, None]
    reference[..., size // 2:] = b[:, None, None]
    mask = torch.zeros(1, size, size)
    mask[..., : size // 2] = 1
    return reference, mask, a, b


def test_pixels_like_the_object_score_high_and_like_the_background_low():
    reference, mask, a, b = _two_colour_maps()
    query = torch.empty(1, 3, 8, 8)
    query[..., :4, :] = a[:, None, None]  # top half looks like the object, bottom like the background
    query[..., 4:, :] = b[:, None, None]
    p = appearance_match(query, reference, mask, top_k=5, temperature=0.05, out_size=8)
    assert p.shape == (1, 1, 8, 8)
    assert p[0, 0, :3].min() > 0.95 and p[0, 0, 5:].max() < 0.05


def test_output_is_upsampled_to_the_mrn_size_and_batched_per_target():
    reference, mask, a, b = _two_colour_maps()
    query = reference.flip(-1).repeat(2, 1, 1, 1)  # object now on the right
    p = appearance_match(query, reference.repeat(2, 1, 1, 1), torch.cat([mask, 1 - mask]), 5, 0.05, out_size=16)
    assert p.shape == (2, 1, 16, 16)
    assert p[0, 0, :, 12:].min() > 0.95 and p[0, 0, :, :4].max() < 0.05
    assert p[1, 0, :, :4].min() > 0.95  # second target's reference mask is the other colour


def test_a_reference_without_background_or_foreground_gives_no_evidence():
    reference, mask, _, _ = _two_colour_maps()
    for m in (torch.ones_like(mask), torch.zeros_like(mask)):
        p = appearance_match(reference, reference, m, 5, 0.05, out_size=8)
        assert torch.allclose(p, torch.full_like(p, 0.5))


def test_match_features_are_unit_length_on_the_res3_grid():
    levels = [torch.rand(3, 24, 56, 56), torch.rand(3, 32, 28, 28), torch.rand(3, 96, 14, 14), torch.rand(3, 320, 7, 7)]
    f = match_features(levels)
    assert f.shape == (3, 56, 28, 28)
    assert torch.allclose(f.norm(dim=1), torch.ones(3, 28, 28), atol=1e-5)
