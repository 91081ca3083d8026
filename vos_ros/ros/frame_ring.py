"""Short history of received camera frames, for masks drawn on a past frame."""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
from std_msgs.msg import Header


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


@dataclass
class Frame:
    header: Header
    rgb: np.ndarray
    processed: bool = False  # the engine stepped on this frame

    @property
    def stamp_ns(self) -> int:
        return stamp_ns(self.header)


class FrameNotBuffered(LookupError):
    """No buffered frame has the stamp; ``too_new`` tells whether it may still arrive."""

    def __init__(self, message: str, too_new: bool):
        super().__init__(message)
        self.too_new = too_new


class FrameRing:
    """The last ``length`` received frames, oldest first (not thread-safe: worker only)."""

    def __init__(self, length: int, tolerance_ns: int = 1_000_000):
        self.frames: collections.deque[Frame] = collections.deque(maxlen=length)
        self.tolerance_ns = tolerance_ns

    def append(self, frame: Frame) -> None:
        self.frames.append(frame)

    def find(self, stamp: int) -> int:
        """Index of the frame with this stamp (within the tolerance)."""
        if not self.frames:
            raise FrameNotBuffered("no camera frame received yet", too_new=True)
        for i, frame in enumerate(self.frames):
            if abs(frame.stamp_ns - stamp) <= self.tolerance_ns:
                return i
        oldest, newest = self.frames[0].stamp_ns, self.frames[-1].stamp_ns
        if stamp > newest:
            raise FrameNotBuffered(f"stamp {stamp * 1e-9:.3f} s is newer than the newest frame {newest * 1e-9:.3f} s", True)
        if stamp < oldest:
            raise FrameNotBuffered(
                f"stamp {stamp * 1e-9:.3f} s is older than the oldest buffered frame {oldest * 1e-9:.3f} s "
                f"({len(self.frames)} frames kept; raise ring_buffer_length or send masks sooner)",
                False,
            )
        raise FrameNotBuffered(f"no received frame has stamp {stamp * 1e-9:.3f} s", False)

    def processed_after(self, index: int) -> list[Frame]:
        """Frames after ``index`` that the engine stepped on, oldest first."""
        return [f for f in list(self.frames)[index + 1:] if f.processed]
