"""The `tracker` lifecycle node: camera images in, tracked objects out.

Threads: executor callbacks only convert and queue; one worker thread
(engine_worker.py) owns the engine and runs the queued add/remove/reset commands
and a step on the newest frame, then publishes here. Service callbacks are
coroutines that await the worker's answer, so one executor thread keeps images
flowing while they wait.

Lifecycle: configure reads the engine configuration and creates the
publishers, subscriptions and services; activate loads the networks and starts
the worker; deactivate stops the worker and releases the networks (targets are
forgotten); cleanup destroys the ROS entities. Topic, QoS and parameter
contract: docs/ros.md, parameters.py and config/tracker.yaml.
"""

from __future__ import annotations

import concurrent.futures
from typing import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped, PolygonStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from vos_ros.config import ConfigError, EngineConfig, load_config
from vos_ros.inference.types import EngineInputError
from vos_ros.ros.camera_inputs import CameraInputs
from vos_ros.ros.diagnostics import RateCounter, tracker_status
from vos_ros.prompts import Clicks, Prompt, build_segmenter
from vos_ros.ros.engine_worker import AddRejected, EngineWorker, labels_as_given, load_tracker, prompt_labels
from vos_ros.ros.entry import await_thread_future, run_node
from vos_ros.ros.frame_ring import Frame, stamp_ns
from vos_ros.ros.image_conv import ImageConversionError, compressed_to_rgb, imgmsg_to_labels, imgmsg_to_rgb
from vos_ros.ros.outputs import TrackerOutputs
from vos_ros.ros.parameters import TRACKER, engine_overrides
from vos_ros.ros.qos import LATCHED_QOS, image_qos, incompatible_qos_events
from vos_ros.srv import AddTargets, RemoveTargets, Reset


class TrackerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("tracker", **kwargs)
        self._engine = None
        self._engine_config: EngineConfig | None = None
        self._worker: EngineWorker | None = None  # owns the engine while active
        self._dropped_before = 0  # frames dropped by earlier workers (activations)
        self._clicks = Clicks()
        self._segmenter = None  # prompt -> mask, loaded on configure
        self._received = RateCounter()
        self._published = RateCounter()
        self._rejected_images = 0
        self._latencies: list[float] = []
        self._last_targets: list = []
        self._last_error = ""
        self._outputs: TrackerOutputs | None = None
        self._camera_inputs: CameraInputs | None = None
        self._configured_theta_c = float("nan")
        self._lifecycle_publishers: list = []
        self._ros_entities: list = []
        self.add_on_set_parameters_callback(self._on_set_parameters)
        TRACKER.declare(self)

    # -- parameters ---------------------------------------------------------------
    def param(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            reason = TRACKER.problem(p.name, p.value)
            if reason:
                self.get_logger().warning(f"rejected parameter: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        for p in params:
            if p.name == "theta_c" and self._engine is not None:
                self._engine.set_theta_c(float(p.value) if p.value != -1.0 else self._configured_theta_c)
        return SetParametersResult(successful=True)

    # -- lifecycle ----------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configured_theta_c = load_config(self.param("configuration")).decision.theta_c
            self._engine_config = load_config(self.param("configuration"), overrides=engine_overrides(self.param))
        except ConfigError as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        self._segmenter = self._load_segmenter()
        inputs = MutuallyExclusiveCallbackGroup()  # image callback: never waits
        requests = MutuallyExclusiveCallbackGroup()  # services and prompts: may wait for the worker
        pub_events, sub_events = incompatible_qos_events(self.get_logger(), self.param("image_topic"),
                                                         self.param("image_qos"))
        self._camera_inputs = CameraInputs(bool(self.param("depth_topic")), self.param("ring_buffer_length"),
                                           int(self.param("depth_slop_s") * 1e9))
        self._outputs = TrackerOutputs(self, self.param, pub_events, self._camera_inputs, self._warn)
        # A plain publisher: diagnostics also report an inactive tracker.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._lifecycle_publishers = list(self._outputs.publishers)
        camera_qos = image_qos(self.param("image_qos"), self.param("image_qos_depth"))
        if self.param("image_transport") == "compressed":  # image_transport's topic naming
            images = self.create_subscription(CompressedImage, self.param("image_topic") + "/compressed",
                                              self._on_compressed_image, camera_qos, callback_group=inputs,
                                              event_callbacks=sub_events)
        else:
            images = self.create_subscription(Image, self.param("image_topic"), self._on_image, camera_qos,
                                              callback_group=inputs, event_callbacks=sub_events)
        self._ros_entities = [
            self._diagnostics_pub,
            images,
            self.create_subscription(CameraInfo, self.param("camera_info_topic"), self._camera_inputs.put_camera_info,
                                     camera_qos, callback_group=inputs),
            self.create_subscription(Image, self.param("init_mask_topic"), self._on_init_mask, LATCHED_QOS,
                                     callback_group=requests),
            self.create_subscription(Point, self.param("point_topic"), self._on_point, 10, callback_group=requests),
            self.create_subscription(PointStamped, self.param("point_stamped_topic"), self._on_point_stamped, 10,
                                     callback_group=requests),
            self.create_subscription(PolygonStamped, self.param("polygon_topic"), self._on_polygon, 10,
                                     callback_group=requests),
            self.create_service(AddTargets, "vos/add_targets", self._on_add_targets, callback_group=requests),
            self.create_service(RemoveTargets, "vos/remove_targets", self._on_remove_targets, callback_group=requests),
            self.create_service(Reset, "vos/reset", self._on_reset, callback_group=requests),
            self.create_timer(self.param("diagnostics_period_s"), self._publish_diagnostics),
        ]
        if self._camera_inputs.has_depth:
            self._ros_entities.append(self.create_subscription(
                Image, self.param("depth_topic"), self._camera_inputs.put_depth, camera_qos, callback_group=inputs))
        self.get_logger().info(
            f"configured: images on '{self.resolve_topic_name(images.topic_name)}' "
            f"({self.param('image_qos')}), configuration '{self._engine_config.name}'")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._engine = self._load_engine()
            self._engine.warm_up()  # so that frames arriving right after activation are not dropped
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            self.get_logger().error(f"activate failed: could not load the networks: {e}")
            self._last_error = str(e)
            return TransitionCallbackReturn.FAILURE
        self._worker = EngineWorker(self._engine, self.param("ring_buffer_length"), self._publish,
                                    self.get_logger().info, self._warn)
        steps = self._engine_config.adaptation.iterations
        adaptation = (f"{steps} steps per add" if self._engine.adaptation is not None
                      else "off" if steps == 0 else "unavailable on this backend (needs torch)")
        self.get_logger().info(f"active: backend {self._engine.backend.label}, device {self._engine.device}, "
                               f"first-frame adaptation {adaptation}")
        return super().on_activate(state)

    def _load_engine(self):
        tracker, fallback_reason = load_tracker(self._engine_config, self.param)
        if fallback_reason:
            self._last_error = fallback_reason
            self.get_logger().warning(fallback_reason)
        return tracker

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self._engine = None  # releases the networks (and the GPU memory)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_ros_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self._engine = None
        self._destroy_ros_entities()
        return TransitionCallbackReturn.SUCCESS

    def _destroy_ros_entities(self):
        for publisher in self._lifecycle_publishers:
            self.destroy_lifecycle_publisher(publisher)
        destroyers = {"Subscription": self.destroy_subscription, "Service": self.destroy_service,
                      "Timer": self.destroy_timer, "Publisher": self.destroy_publisher}
        for entity in self._ros_entities:
            destroyers[type(entity).__name__](entity)
        self._lifecycle_publishers, self._ros_entities = [], []

    def destroy_node(self):
        self.stop_worker()  # the worker publishes with this node's publishers
        super().destroy_node()

    def stop_worker(self):
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            self._dropped_before += worker.dropped

    def _warn(self, message: str):
        self._last_error = message
        self.get_logger().warning(message, throttle_duration_sec=5.0)

    # -- inputs (executor threads; they never wait for the engine) -----------------
    def _on_image(self, msg: Image):
        self._offer_image(msg.header, lambda: imgmsg_to_rgb(msg))

    def _on_compressed_image(self, msg: CompressedImage):
        self._offer_image(msg.header, lambda: compressed_to_rgb(msg))

    def _offer_image(self, header: Header, decode: Callable[[], np.ndarray]):
        self._received.total += 1
        worker = self._worker
        if worker is None:  # inactive: nothing will process it
            return
        try:
            rgb = decode()
        except ImageConversionError as e:
            self._rejected_images += 1
            self._last_error = f"image rejected: {e}"
            self.get_logger().warning(f"image rejected: {e}", throttle_duration_sec=5.0)
            return
        worker.offer(Frame(header, rgb))

    def _submit(self, command: Callable[[EngineWorker], concurrent.futures.Future]) -> concurrent.futures.Future:
        """`command` queued on the active worker, or a future already failed when inactive."""
        worker = self._worker
        if worker is None:
            rejected = concurrent.futures.Future()
            rejected.set_exception(AddRejected("the tracker is not active"))
            return rejected
        return command(worker)

    def _submit_add(self, stamp: int, make_labels, names: dict[int, str], source: str) -> concurrent.futures.Future:
        wait_s = self.param("init_mask_wait_s")
        return self._submit(lambda worker: worker.add(stamp, make_labels, names, source, wait_s))

    async def _wait(self, future: concurrent.futures.Future):
        """(result, None) or (None, error message) of a worker command; the executor keeps
        delivering images meanwhile."""
        timeout = self.param("service_timeout_s")
        if not await await_thread_future(self, future, timeout):
            return None, f"the tracker did not answer within service_timeout_s={timeout}"
        try:
            return future.result(), None
        except (AddRejected, EngineInputError) as e:
            return None, str(e)

    def _log_outcome(self, future: concurrent.futures.Future, source: str):
        def done(f):
            if f.exception() is not None:
                self.get_logger().error(f"{source} rejected: {f.exception()}")
        future.add_done_callback(done)

    def _on_init_mask(self, msg: Image):
        try:
            labels = imgmsg_to_labels(msg)
        except ImageConversionError as e:
            self.get_logger().error(f"init mask rejected: {e}")
            return
        self._log_outcome(self._submit_add(stamp_ns(msg.header), labels_as_given(labels), {}, "init mask"),
                          "init mask")

    async def _on_add_targets(self, request: AddTargets.Request, response: AddTargets.Response):
        try:
            labels = imgmsg_to_labels(request.labels)
            if len(request.named_ids) != len(request.names):
                raise ImageConversionError(
                    f"named_ids has {len(request.named_ids)} entries but names has {len(request.names)}")
        except ImageConversionError as e:
            response.success, response.message = False, str(e)
            return response
        names = dict(zip((int(i) for i in request.named_ids), request.names))
        result, error = await self._wait(self._submit_add(
            stamp_ns(request.labels.header), labels_as_given(labels), names, "add_targets"))
        response.success = error is None
        response.message = error or f"added {result}"
        response.added_ids = result or []
        response.tracked_ids = self._tracked_ids()
        return response

    async def _on_remove_targets(self, request: RemoveTargets.Request, response: RemoveTargets.Response):
        ids = [int(i) for i in request.ids]
        result, error = await self._wait(self._submit(lambda worker: worker.remove(ids)))
        response.success, response.message = error is None, error or result
        response.tracked_ids = self._tracked_ids()
        return response

    async def _on_reset(self, request: Reset.Request, response: Reset.Response):
        result, error = await self._wait(self._submit(lambda worker: worker.reset()))
        response.success, response.message = error is None, error or result
        return response

    def settling_first_targets(self) -> bool:
        """Active, and either no target added yet or a first-frame adaptation still fitting."""
        engine = self._engine
        return engine is not None and (not engine.target_ids or engine.adaptation_fitting)

    def _tracked_ids(self) -> list[int]:
        engine = self._engine
        return list(engine.target_ids) if engine is not None else []

    # Prompts: the mask is computed by the worker on the frame the prompt belongs to.
    def _load_segmenter(self):
        name = self.param("prompt_segmenter")
        try:
            return build_segmenter(name)
        except (FileNotFoundError, ValueError) as e:
            self.get_logger().warning(f"prompt segmenter '{name}' unavailable ({e}); prompts use grabcut")
            return build_segmenter("grabcut")

    def _add_prompt(self, stamp: int, prompt: Prompt, source: str):
        segmenter = self._segmenter
        self._log_outcome(self._submit_add(stamp, prompt_labels(lambda rgb: segmenter.segment(rgb, prompt)), {},
                                           source), source)

    def _on_click(self, x: float, y: float, stamp: int, source: str):
        prompt, description = self._clicks.click(x, y, self.param("click_mode"))
        if prompt is None:
            self.get_logger().info(description)
        else:
            self._add_prompt(stamp, prompt, f"{source} {description}")

    def _on_point(self, msg: Point):
        self._on_click(msg.x, msg.y, 0, "click")

    def _on_point_stamped(self, msg: PointStamped):
        self._on_click(msg.point.x, msg.point.y, stamp_ns(msg.header), "click")

    def _on_polygon(self, msg: PolygonStamped):
        points = tuple((p.x, p.y) for p in msg.polygon.points)
        prompt = Prompt(box=(*points[0], *points[1])) if len(points) == 2 else Prompt(polygon=points)
        self._add_prompt(stamp_ns(msg.header), prompt, f"polygon of {len(points)} points")

    # -- outputs (worker thread) --------------------------------------------------------
    def _publish(self, frame: Frame, result, names: dict[int, str]):
        self._outputs.publish(frame, result, names)
        self._published.total += 1
        now_ns = self.get_clock().now().nanoseconds
        self._latencies.append((now_ns - frame.stamp_ns) * 1e-9)
        previous = {t.id: t.status for t in self._last_targets}
        for t in result.targets:  # status changes are what an operator wants in the log
            if previous.get(t.id, t.status) != t.status:
                self.get_logger().info(f"target {t.id}: {previous[t.id].name.lower()} -> {t.status.name.lower()}")
        self._last_targets = result.targets

    # -- diagnostics --------------------------------------------------------------
    def frame_counts(self) -> dict[str, int]:
        """Totals since start (diagnostics, and the graph's end-of-run summary)."""
        return {"frames_received": self._received.total, "frames_published": self._published.total,
                "frames_dropped": self._dropped_before + (self._worker.dropped if self._worker else 0),
                "images_rejected": self._rejected_images}

    def _publish_diagnostics(self):
        latencies, self._latencies = self._latencies, []
        status = tracker_status(self.get_name(), self._engine, self._received, self._published, latencies,
                                self.frame_counts(), self._engine_config.name if self._engine_config else "",
                                self.param("backend"), self._last_error, self._last_targets)
        self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                      status=[status]))


def start(node: TrackerNode) -> None:
    """Configure and activate when the autostart parameter says so."""
    if node.param("autostart"):
        if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            node.trigger_activate()


def _autostarted() -> TrackerNode:
    node = TrackerNode()
    start(node)
    return node


def main(args=None) -> int:
    # rclpy.spin's single-threaded executor: services await the worker (see TrackerNode._wait).
    return run_node(_autostarted, args)
