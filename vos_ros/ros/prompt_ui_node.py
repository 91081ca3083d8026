"""prompt_ui: the prompt page (prompts/web.py) for a running tracker.

Serves http://HOST:PORT/ (127.0.0.1 by default: only this machine; tunnel with `ssh -L` to
reach it from a laptop). It subscribes to the tracker's input images and its object arrays,
segments the prompts drawn on the page (`segmenter`: the learnt prompt network, or grabcut)
and calls the tracker's services: `vos/add_targets` with the mask stamped with the frame it
was drawn on (the tracker initialises on that frame from its ring buffer and catches up),
`vos/remove_targets`, `vos/reset`.
"""

from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from vos_ros.msg import TrackedObject, TrackedObjectArray
from vos_ros.prompts import build_segmenter
from vos_ros.prompts.web import PromptPage, Reply
from vos_ros.ros.entry import run_node
from vos_ros.ros.frame_ring import stamp_ns
from vos_ros.ros.image_conv import imgmsg_to_rgb, numpy_to_imgmsg
from vos_ros.ros.parameters import PROMPT_UI
from vos_ros.ros.qos import OUTPUT_QOS, image_qos
from vos_ros.srv import AddTargets, RemoveTargets, Reset

STATUS_NAMES = {TrackedObject.STATUS_TRACKING: "tracking", TrackedObject.STATUS_OCCLUDED: "occluded",
                TrackedObject.STATUS_LOST: "lost", TrackedObject.STATUS_REIDENTIFIED: "reidentified"}


class PromptUiNode(Node):
    def __init__(self, **kwargs):
        super().__init__("prompt_ui", **kwargs)
        p = PROMPT_UI.declare(self)
        self._timeout_s = p["service_timeout_s"]
        self._lock = threading.Lock()
        self._latest: tuple[int, Image] | None = None  # decoded only when the page asks for it
        self._targets: list[dict] = []
        self.create_subscription(Image, p["image_topic"], self._on_image, image_qos(p["image_qos"], 2))
        self.create_subscription(TrackedObjectArray, p["objects_topic"], self._on_objects, OUTPUT_QOS)
        self._add = self.create_client(AddTargets, p["add_service"])
        self._remove = self.create_client(RemoveTargets, p["remove_service"])
        self._reset = self.create_client(Reset, p["reset_service"])
        try:
            segmenter = build_segmenter(p["segmenter"])
        except (FileNotFoundError, ValueError) as e:
            self.get_logger().warning(f"segmenter '{p['segmenter']}' unavailable ({e}); using grabcut")
            segmenter = build_segmenter("grabcut")
        self.page = PromptPage(self, segmenter, p["host"], p["port"], p["kept_frames"])
        self.page.start()
        self.get_logger().info(f"prompt page on http://{p['host']}:{self.page.port}/ ({segmenter.name} segmenter)")

    def destroy_node(self):
        self.page.stop()
        super().destroy_node()

    # -- topics (executor thread) --------------------------------------------------
    def _on_image(self, msg: Image):
        with self._lock:
            self._latest = (stamp_ns(msg.header), msg)

    def _on_objects(self, msg: TrackedObjectArray):
        targets = [{"id": int(o.id), "name": o.label, "status": STATUS_NAMES.get(o.status, str(o.status)),
                    "score": round(float(o.score), 3)} for o in msg.objects]
        with self._lock:
            self._targets = targets

    # -- PromptBackend (the page's threads) -------------------------------------------
    def latest_frame(self) -> tuple[int, np.ndarray] | None:
        with self._lock:
            latest = self._latest
        if latest is None:
            return None
        try:
            return latest[0], imgmsg_to_rgb(latest[1])
        except ValueError as e:
            self.get_logger().warning(f"image not shown: {e}", throttle_duration_sec=5.0)
            return None

    def targets(self) -> list[dict]:
        with self._lock:
            return list(self._targets)

    def add_target(self, stamp: int, mask: np.ndarray, target_id: int, name: str) -> Reply:
        labels = numpy_to_imgmsg(mask.astype(np.uint16) * target_id, "mono16")
        labels.header.stamp.sec, labels.header.stamp.nanosec = divmod(stamp, 10**9)
        request = AddTargets.Request(labels=labels, named_ids=[target_id] if name else [], names=[name] if name else [])
        result = self._call(self._add, request)
        if result is None:
            return Reply(False, f"the tracker's {self._add.srv_name} service did not answer")
        self.get_logger().info(f"add target {target_id} '{name}': {result.message}")
        return Reply(result.success, result.message, tuple(result.added_ids))

    def remove_targets(self, ids: list[int]) -> Reply:
        if not all(0 < i <= 65535 for i in ids):
            return Reply(False, f"target ids must be within 1..65535, got {ids}")
        result = self._call(self._remove, RemoveTargets.Request(ids=ids))
        return Reply(False, "the tracker did not answer") if result is None else Reply(result.success, result.message)

    def reset(self) -> Reply:
        result = self._call(self._reset, Reset.Request())
        return Reply(False, "the tracker did not answer") if result is None else Reply(result.success, result.message)

    def _call(self, client, request):
        """The service's response, or None when it is not there or does not answer in time (the
        executor thread delivers it; this thread waits)."""
        if not client.wait_for_service(timeout_sec=min(self._timeout_s, 2.0)):
            return None
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self._timeout_s):
            client.remove_pending_request(future)
            return None
        return future.result()


def main(args=None) -> int:
    return run_node(PromptUiNode, args)
