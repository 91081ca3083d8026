"""The `recorder` node: writes an image topic to a video file (like image_view's video_recorder).

The README's main job records the tracker's overlay with it, so the demo leaves
something to look at. Subscribing is what makes the tracker draw the overlay
(it is only computed while someone listens).
"""

from __future__ import annotations

from pathlib import Path

import cv2
from rclpy.node import Node
from sensor_msgs.msg import Image

from vos_ros.ros.entry import run_node
from vos_ros.ros.parameters import RECORDER
from vos_ros.ros.image_conv import ImageConversionError, imgmsg_to_rgb



class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("recorder", **kwargs)
        p = RECORDER.declare(self)
        self.path, self.fps, self.topic = Path(p["filename"]), p["fps"], p["image_topic"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        # Reliable depth 10: a recording should not lose frames to a momentary stall.
        self.create_subscription(Image, self.topic, self._on_image, 10)

    def _on_image(self, msg: Image):
        try:
            rgb = imgmsg_to_rgb(msg)
        except ImageConversionError as e:
            self.get_logger().warning(f"not recorded: {e}", throttle_duration_sec=5.0)
            return
        size = (rgb.shape[1], rgb.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            self._size = size
            self.get_logger().info(f"recording '{self.topic}' to {self.path}")
        if size != self._size:
            self.get_logger().warning(f"not recorded: frame is {size}, the video is {self._size}",
                                      throttle_duration_sec=5.0)
            return
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def destroy_node(self) -> None:
        """Finishes the video file too, however the node is shut down (alone or in a graph)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        super().destroy_node()


def main(args=None) -> int:
    return run_node(RecorderNode, args)
