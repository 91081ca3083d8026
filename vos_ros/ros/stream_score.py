"""J&F of a streamed run against the player's ground truth (the main job's closing line).

The labels the tracker published are matched to the player's frames by stamp; a frame the
tracker skipped scores the last labels published before it, which is what a subscriber
holds at that moment.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from vos_ros.eval.metrics import SequenceScore, evaluate_sequence
from vos_ros.ros.frame_ring import stamp_ns
from vos_ros.ros.image_conv import imgmsg_to_labels
from vos_ros.ros.qos import OUTPUT_QOS


class StreamScore:
    def __init__(self, node, labels_topic: str):
        self._labels: dict[int, np.ndarray] = {}
        node.create_subscription(Image, labels_topic, self._on_labels, OUTPUT_QOS)

    def _on_labels(self, msg: Image) -> None:
        self._labels[stamp_ns(msg.header)] = imgmsg_to_labels(msg)

    def score(self, stamps: list[int], ground_truth: list[np.ndarray]) -> SequenceScore:
        """`stamps[i]`: the stamp the player gave frame i, whose labels are `ground_truth[i]`."""
        predictions, held = [ground_truth[0]], np.zeros_like(ground_truth[0])
        for stamp in stamps[1:]:
            held = self._labels.get(stamp, held)
            predictions.append(held)
        return evaluate_sequence(predictions, ground_truth[:len(stamps)])
