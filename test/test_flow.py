import numpy as np

from vos_ros.data.synthetic import make_clip
from vos_ros.model.flow import DISFlow, MaskWarp, warp_backward


def test_warp_with_known_flow_moves_the_mask():
    prev = np.zeros((60, 80), np.float32)
    prev[10:20, 10:30] = 1
    flow = np.zeros((60, 80, 2), np.float32)
    flow[..., 0], flow[..., 1] = -5, 3  # current pixel (x, y) came from (x - 5, y + 3)
    warped = warp_backward(prev, flow)
    expected = np.zeros_like(prev)
    expected[7:17, 15:35] = 1
    assert np.array_equal(warped > 0.5, expected > 0.5)


def test_dis_backward_flow_recovers_a_translation():
    frame = make_clip(1, (320, 240), 0, seed=3).frames[0]
    shifted = np.roll(frame, (4, 6), axis=(0, 1))  # content moves right 6, down 4
    dis = DISFlow("medium", 1.0)
    flow = dis.backward(dis.prepare(frame), dis.prepare(shifted))
    centre = flow[60:180, 80:240].reshape(-1, 2)
    assert np.allclose(np.median(centre, axis=0), [-6, -4], atol=0.5)


class _KnownFlow:
    """A flow estimator with the exact flows of a square moving 12 px right over a still background."""

    scale = 1.0

    def __init__(self):
        self.b, self.f = np.zeros((60, 80, 2), np.float32), np.zeros((60, 80, 2), np.float32)
        self.b[20:40, 32:52, 0] = -12  # the square's pixels now came from 12 px left
        self.f[20:40, 20:40, 0] = 12  # ... and its old pixels went 12 px right

    def backward(self, prev, cur):
        return self.b

    def forward(self, prev, cur):
        return self.f


def test_ghost_removal_drops_the_uncovered_background_and_keeps_the_object():
    """Backward warping leaves the square's old mask on the strip it uncovered (the background
    there does not move, so it samples itself); with ghosts removed only the moved square stays."""
    prev_mask = np.zeros((60, 80), np.float32)
    prev_mask[20:40, 20:40] = 1
    moved = np.zeros_like(prev_mask)
    moved[20:40, 32:52] = 1
    plain = MaskWarp.between(_KnownFlow(), None, None, remove_ghosts=False)(prev_mask)
    assert np.array_equal(plain, warp_backward(prev_mask, _KnownFlow().b))
    assert plain[20:40, 20:32].min() == 1  # the ghost
    cleaned = MaskWarp.between(_KnownFlow(), None, None, remove_ghosts=True)(prev_mask)
    assert np.array_equal(cleaned > 0.5, moved > 0.5)
