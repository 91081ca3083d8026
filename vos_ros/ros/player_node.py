"""The `player` node: a hardware-free camera for demos, tests and benchmarks.

Publishes a video file, an image folder, a DAVIS sequence or one of the embedded
clips (`demo`: the photo scene of data/demo_scene.py; `synthetic`: textured sprites) at a fixed rate, each image stamped with the time it is
published, and publishes frame 0's label mask (when the source has one) on the
latched init-mask topic with frame 0's stamp.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from vos_ros.ros.entry import run_node
from vos_ros.ros.frame_ring import stamp_ns
from vos_ros.ros.image_conv import numpy_to_imgmsg
from vos_ros.ros.parameters import PLAYER
from vos_ros.ros.qos import LATCHED_QOS, image_qos

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
HOLD_LIMIT_S = 120.0



class FrameSource:
    """Frames (RGB uint8) by index, and frame 0's label map when known."""

    def __init__(self, source: str, sequence: str = "", mask: str = "", clip_frames: int = 90,
                 synthetic_objects: int = 2):
        self.initial_labels: np.ndarray | None = None
        self.ground_truth: list[np.ndarray] | None = None  # every frame's labels (the embedded clips)
        self._frames: list[np.ndarray] | None = None
        self._paths: list[Path] | None = None
        self._video: cv2.VideoCapture | None = None
        path = Path(source)
        if source in ("demo", "synthetic"):
            from vos_ros.data.demo_scene import demo_scene
            from vos_ros.data.synthetic import demo_clip

            clip = demo_scene(clip_frames) if source == "demo" else demo_clip(clip_frames, synthetic_objects)
            self._frames, self.initial_labels, self.ground_truth = clip.frames, clip.labels[0], clip.labels
        elif (path / "JPEGImages").is_dir():
            from vos_ros.data import davis

            if not sequence:
                raise ValueError(f"{source} is a DAVIS root: set `sequence` (one of {davis.list_sequences(path)})")
            self._paths = davis.frame_paths(path, sequence)
            annotation = davis.annotation_path(path, sequence, 0)
            if annotation.exists():
                self.initial_labels = davis.read_labels(annotation)
        elif path.is_dir():
            self._paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._paths:
                raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {path}")
        elif path.is_file():
            self._video = cv2.VideoCapture(str(path))
            if not self._video.isOpened():
                raise ValueError(f"cannot open video {path}")
        else:
            raise ValueError(f"source '{source}' is not 'demo', 'synthetic', a DAVIS root, a folder or a video file")
        if mask:
            from vos_ros.data.davis import read_labels

            self.initial_labels = read_labels(mask)

    def __len__(self) -> int:
        if self._frames is not None:
            return len(self._frames)
        if self._paths is not None:
            return len(self._paths)
        return int(self._video.get(cv2.CAP_PROP_FRAME_COUNT))

    def frame(self, index: int) -> np.ndarray:
        if self._frames is not None:
            return self._frames[index]
        if self._paths is not None:
            from vos_ros.data.davis import read_frame

            return read_frame(self._paths[index])
        if index == 0 or self._video.get(cv2.CAP_PROP_POS_FRAMES) != index:
            self._video.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = self._video.read()
        if not ok:
            raise ValueError(f"cannot read frame {index} of the video")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class PlayerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("player", **kwargs)
        p = PLAYER.declare(self)
        self.source = FrameSource(p["source"], p["sequence"], p["mask"], p["clip_frames"], p["synthetic_objects"])
        self.total = len(self.source) if p["num_frames"] <= 0 else min(p["num_frames"], len(self.source))
        self.loop = p["loop"]
        self.frame_id = p["frame_id"]
        self.image_pub = self.create_publisher(Image, p["image_topic"], image_qos(p["image_qos"], 5))
        self.mask_pub = self.create_publisher(Image, p["init_mask_topic"], LATCHED_QOS)
        self.index = 0
        self.published = 0
        self.stamps: list[int] = []  # of each published frame of the first pass
        # Set by tracker_graph --wait-for-adaptation: frame 1 waits while it returns True (at most
        # HOLD_LIMIT_S), so that the demo is tracked with the adapted MRN from its start.
        self.hold: Callable[[], bool] | None = None
        self._hold_since: float | None = None
        self.mask_sent = False
        self.finished = False
        self._wait_until = time.monotonic() + p["wait_for_subscribers_s"]
        self._min_image_subscribers = p["min_image_subscribers"]
        self.timer = self.create_timer(1.0 / p["rate_hz"], self._tick)
        self.get_logger().info(f"playing {self.total} frames of '{p['source']}' {p['sequence']} at {p['rate_hz']} Hz "
                               f"on '{self.image_pub.topic_name}'")

    def _holding(self) -> bool:
        if self.hold is None:
            return False
        now = time.monotonic()
        if self._hold_since is None:
            self._hold_since = now
        held = self.hold() and now - self._hold_since < HOLD_LIMIT_S
        if not held:
            self.hold = None
            self.get_logger().info(f"frame 1 after a {now - self._hold_since:.1f} s hold")
        return held

    def _ready(self) -> bool:
        """Whether frame 0 may go out: someone listens, or the wait is over."""
        listening = self.image_pub.get_subscription_count() >= self._min_image_subscribers and (
            self.source.initial_labels is None or self.mask_pub.get_subscription_count() > 0)
        return listening or time.monotonic() >= self._wait_until

    def _tick(self):
        if self.published == 0 and not self._ready():
            return
        if self.published == 1 and self._holding():
            return
        if self.index >= self.total:
            if not self.loop:
                self.get_logger().info(f"finished: {self.published} frames published")
                self.timer.cancel()
                self.finished = True
                return
            self.index = 0
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        if self.published < self.total:
            self.stamps.append(stamp_ns(header))
        self.image_pub.publish(numpy_to_imgmsg(self.source.frame(self.index), "rgb8", header))
        if self.index == 0 and not self.mask_sent and self.source.initial_labels is not None:
            self.mask_pub.publish(numpy_to_imgmsg(self.source.initial_labels.astype(np.uint16), "mono16", header))
            self.mask_sent = True
        self.index += 1
        self.published += 1


def main(args=None) -> int:
    return run_node(PlayerNode, args)
