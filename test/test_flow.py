import numpy as np

from vos_ros.data.synthetic import make_clip
from vos_ros.model.flow import DISFlow, warp_backward


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
