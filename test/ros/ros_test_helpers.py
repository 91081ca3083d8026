"""Helpers shared by the ROS tests."""

import threading
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PolygonStamped
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from vos_ros.data.synthetic import make_clip
from vos_ros.msg import TrackedObjectArray
from vos_ros.ros.image_conv import numpy_to_imgmsg
from vos_ros.ros.qos import OUTPUT_QOS
from vos_ros.ros.tracker_node import TrackerNode, start
from vos_ros.srv import AddTargets, RemoveTargets, Reset


def spin_until(executor, condition, timeout: float = 10.0) -> bool:
    """Spin until ``condition()`` holds or the deadline passes; returns the condition."""
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    return bool(condition())


CLIP = make_clip(num_frames=40, size=(320, 240), num_objects=2, seed=1)


class Harness:
    """A running tracker (background executor thread) and a test node driving it, in a namespace of
    their own: harnesses alive at once (the module's and a test's) share the process's DDS domain
    and would otherwise both take each other's images and service calls."""

    instances = 0

    def __init__(self, weights: str, parameters: tuple[Parameter, ...] = ()):
        Harness.instances += 1
        namespace = f"harness{Harness.instances}"
        self.context = Context()
        rclpy.init(context=self.context)
        overrides = [Parameter("image_qos", value="reliable"), Parameter("ring_buffer_length", value=6),
                     Parameter("adaptation_iterations", value=0),
                     Parameter("init_mask_wait_s", value=0.5), Parameter("image_qos_depth", value=20), *parameters]
        if weights:
            overrides.append(Parameter("weights", value=weights))
        self.tracker = TrackerNode(context=self.context, namespace=namespace, parameter_overrides=overrides)
        start(self.tracker)
        self.tracker_executor = SingleThreadedExecutor(context=self.context)  # as tracker_node.main
        self.tracker_executor.add_node(self.tracker)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin_tracker)
        self._thread.start()
        self.node = rclpy.create_node("tracker_test_driver", context=self.context, namespace=namespace)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.images = self.node.create_publisher(Image, "image", OUTPUT_QOS)
        self.arrays: list[TrackedObjectArray] = []
        self.node.create_subscription(TrackedObjectArray, "vos/objects", self.arrays.append, 50)
        self.add = self.node.create_client(AddTargets, "vos/add_targets")
        self.remove = self.node.create_client(RemoveTargets, "vos/remove_targets")
        self.reset = self.node.create_client(Reset, "vos/reset")
        self.set_params = self.node.create_client(SetParameters, "tracker/set_parameters")
        self.polygons = self.node.create_publisher(PolygonStamped, "vos/prompt/polygon", 10)
        self.sent = 0

    def _spin_tracker(self):
        while not self._stop.is_set() and self.context.ok():
            self.tracker_executor.spin_once(timeout_sec=0.05)

    def close(self):
        self._stop.set()
        self._thread.join()
        self.tracker.stop_worker()
        self.tracker_executor.shutdown()
        self.executor.shutdown()
        self.tracker.destroy_node()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def publish(self, index: int, raw: Image | None = None) -> Image:
        msg = raw or numpy_to_imgmsg(CLIP.frames[index], "rgb8")
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.images.publish(msg)
        self.sent += 1
        return msg

    def publish_and_wait(self, index: int) -> TrackedObjectArray:
        msg = self.publish(index)
        assert spin_until(self.executor, lambda: any(a.header.stamp == msg.header.stamp for a in self.arrays), 20)
        return next(a for a in self.arrays if a.header.stamp == msg.header.stamp)

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(request)
        assert spin_until(self.executor, future.done, 40)
        return future.result()


def labels_request(labels: np.ndarray, stamp, names=None) -> AddTargets.Request:
    request = AddTargets.Request(labels=numpy_to_imgmsg(labels.astype(np.uint16), "mono16"))
    request.labels.header.stamp = stamp
    for target_id, name in (names or {}).items():
        request.named_ids.append(target_id)
        request.names.append(name)
    return request
