import numpy as np
import pytest
from std_msgs.msg import Header

from vos_ros.ros.frame_ring import Frame, FrameNotBuffered, FrameRing


def _frame(sec):
    header = Header()
    header.stamp.sec = sec
    return Frame(header, np.zeros((2, 2, 3), np.uint8))


def test_frame_ring_lookup():
    ring = FrameRing(3)
    for sec in range(1, 6):
        ring.append(_frame(sec))
    assert ring.find(4 * 10**9) == 1
    ring.frames[1].processed = True
    assert [f.stamp_ns for f in ring.processed_after(0)] == [4 * 10**9]
    with pytest.raises(FrameNotBuffered, match="older than the oldest") as old:
        ring.find(1 * 10**9)
    assert not old.value.too_new
    with pytest.raises(FrameNotBuffered) as new:
        ring.find(9 * 10**9)
    assert new.value.too_new
