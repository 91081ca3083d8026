"""The camera model and depth images that go with the camera frames.

Executor callbacks store the received messages; the worker republishes the latest CameraInfo
and, for the targets' 3D, looks up the depth image whose stamp is nearest a processed frame's,
within `slop_ns` (drivers stamp aligned depth and colour up to half a frame period apart). A
depth image that arrives after its frame was published gives that frame no 3D.
"""

from __future__ import annotations

import collections
import threading

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from vos_ros.depth import DEPTH_ENCODINGS, DepthError, Pinhole, depth_in_metres
from vos_ros.ros.frame_ring import stamp_ns
from vos_ros.ros.image_conv import ImageConversionError, imgmsg_to_numpy


class CameraInputs:
    def __init__(self, has_depth: bool, length: int, slop_ns: int):
        self.has_depth = has_depth  # a depth topic is subscribed
        self._depths: collections.deque[Image] = collections.deque(maxlen=length)
        self._camera: CameraInfo | None = None
        self._slop_ns = slop_ns
        self._lock = threading.Lock()

    def put_depth(self, msg: Image) -> None:
        with self._lock:
            self._depths.append(msg)

    def put_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera = msg

    @property
    def camera_info(self) -> CameraInfo | None:
        return self._camera

    def lookup(self, stamp: int) -> tuple[np.ndarray, Pinhole]:
        """(depth in metres, camera model) for the frame stamped `stamp`; DepthError says why not."""
        with self._lock:
            depths, camera = list(self._depths), self._camera
        if camera is None:
            raise DepthError("no CameraInfo received yet")
        if not depths:
            raise DepthError("no depth image received yet")
        best = min(depths, key=lambda m: abs(stamp_ns(m.header) - stamp))
        gap = abs(stamp_ns(best.header) - stamp)
        if gap > self._slop_ns:
            raise DepthError(f"no depth image within {self._slop_ns * 1e-9:.3f} s of the frame "
                             f"(nearest {gap * 1e-9:.3f} s away)")
        if best.encoding not in DEPTH_ENCODINGS:
            raise DepthError(f"depth encoding '{best.encoding}' is not one of {', '.join(DEPTH_ENCODINGS)}")
        try:
            depth = imgmsg_to_numpy(best)
        except ImageConversionError as e:
            raise DepthError(f"depth image rejected: {e}") from e
        model = Pinhole.from_k(camera.k, camera.width, camera.height)
        return depth_in_metres(depth, best.encoding), model
