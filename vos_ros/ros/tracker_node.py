"""The `tracker` lifecycle node: camera images in, tracked objects out.

Threads: executor callbacks only convert and queue (the image callback keeps
the newest frame and counts the one it overwrote as dropped); one worker thread
owns the engine and runs, in order, the queued add/remove/reset commands and a
step on the newest frame. Service callbacks are coroutines that await the
worker's answer, so one executor thread keeps images flowing while they wait.

Lifecycle: configure reads the engine configuration and creates the
publishers, subscriptions and services; activate loads the networks and starts
the worker; deactivate stops the worker and releases the networks (targets are
forgotten); cleanup destroys the ROS entities. Topic, QoS and parameter
contract: docs/ros.md and config/tracker.yaml.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import threading
import time
from typing import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped, PolygonStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.task import Future as RosFuture
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from vos_ros.backends import BACKENDS, PRECISIONS, BackendUnavailable
from vos_ros.config import ConfigError, EngineConfig, load_config
from vos_ros.inference.types import EngineInputError
from vos_ros.msg import TrackedObjectArray
from vos_ros.ros import prompts
from vos_ros.ros.entry import run_node
from vos_ros.ros.frame_ring import Frame, FrameNotBuffered, FrameRing, stamp_ns
from vos_ros.ros.image_conv import ImageConversionError, imgmsg_to_labels, imgmsg_to_rgb, numpy_to_imgmsg
from vos_ros.ros.messages import MASK_FORMATS, overlay, tracked_object_array
from vos_ros.ros.qos import IMAGE_QOS_CHOICES, LATCHED_QOS, OUTPUT_QOS, image_qos
from vos_ros.srv import AddTargets, RemoveTargets, Reset

FALLBACKS = ("none",) + BACKENDS
FLOW_PRESETS = ("", "ultrafast", "fast", "medium")
CLICK_MODES = ("point", "box")

# name -> (default, description, can change while running)
PARAMETERS: dict[str, tuple[object, str, bool]] = {
    "image_topic": ("image", "camera image topic (rgb8, bgr8, rgba8, bgra8 or mono8)", False),
    "image_qos": ("sensor_data", f"image subscription QoS: {'|'.join(IMAGE_QOS_CHOICES)}", False),
    # 5 as in rclpy's sensor-data profile: the callback only queues, so a deeper reader history
    # costs nothing and rides out scheduler stalls that lost frames at 2.
    "image_qos_depth": (5, "image subscription queue depth", False),
    "init_mask_topic": ("vos/init_mask", "latched label image (mono8/mono16) that adds targets", False),
    "objects_topic": ("vos/objects", "vos_ros/TrackedObjectArray output", False),
    "labels_topic": ("vos/labels", "mono16 label image output (pixel = target id)", False),
    "overlay_topic": ("vos/overlay", "rgb8 overlay for rviz (computed only while subscribed)", False),
    "point_topic": ("vos/prompt/point", "geometry_msgs/Point pixel click (rqt_image_view style)", False),
    "point_stamped_topic": ("vos/prompt/point_stamped", "geometry_msgs/PointStamped pixel click", False),
    "polygon_topic": ("vos/prompt/polygon", "geometry_msgs/PolygonStamped in pixels (2 points = box)", False),
    "configuration": ("cpu", "engine configuration: cpu, gpu or a YAML path", False),
    "backend": ("torch", f"inference backend: {'|'.join(BACKENDS)}", False),
    "backend_fallback": ("torch", f"backend used when `backend` cannot run here (no TensorRT, no GPU, no cached "
                                  f"int8 engine), on the CPU when there is no GPU: {'|'.join(FALLBACKS)}", False),
    "precision": ("", f"{'|'.join(PRECISIONS)}; empty = the backend's default (torch: fp16 on CUDA; tensorrt: fp16)",
                  False),
    "engine_cache": ("", "folder for ONNX graphs and TensorRT engines; empty = $VOS_ROS_CACHE or ~/.cache/vos_ros",
                     False),
    "device": ("", "cpu, cuda, cuda:N; empty = the configuration's", False),
    "weights": ("", "weights file; empty = the configuration's", False),
    "flow_preset": ("", "DIS preset ultrafast|fast|medium; empty = the configuration's", False),
    "max_objects": (0, "most targets tracked at once; 0 = the configuration's", False),
    "adaptation_iterations": (0, "first-frame adaptation steps per add (torch backend only), fitted in the "
                                 "background while tracking goes on with the MRN in use (cpu configuration's 50: "
                                 "11-20 s on 2 cores, during which the stream runs slower); 0 = off; -1 = the "
                                 "configuration's", False),
    "cpu_threads": (-1, "torch intra-op threads: -1 = all cores but one (left to the camera driver, DDS and "
                        "the executor), 0 = the configuration's", False),
    "ring_buffer_length": (30, "received frames kept for masks drawn on a past frame", False),
    "init_mask_wait_s": (2.0, "how long a mask stamped after the newest frame waits for its frame", False),
    "service_timeout_s": (60.0, "how long a service call waits for the worker (a reset waits for a running "
                                "first-frame adaptation)", False),
    "diagnostics_period_s": (1.0, "period of /diagnostics", False),
    "autostart": (True, "configure and activate on start (no lifecycle manager needed)", False),
    "theta_c": (-1.0, "decision threshold in [0, 1]: BP when confidence > theta_c; -1 = the configuration's", True),
    "publish_overlay": (True, "compute and publish the overlay while someone subscribes", True),
    "mask_format": ("cropped", f"mask in TrackedObject: {'|'.join(MASK_FORMATS)}", True),
    "click_mode": ("point", "point: each click is a target; box: two clicks are a box", True),
}


def validate_parameter(name: str, value) -> str | None:
    """Why ``value`` is invalid for ``name``, or None (types are enforced by rclpy)."""
    checks: dict[str, tuple[Callable[[], bool], str]] = {
        "image_qos": (lambda: value in IMAGE_QOS_CHOICES, f"must be one of {IMAGE_QOS_CHOICES}"),
        "image_qos_depth": (lambda: value >= 1, "must be >= 1"),
        "backend": (lambda: value in BACKENDS, f"must be one of {BACKENDS}"),
        "backend_fallback": (lambda: value in FALLBACKS, f"must be one of {FALLBACKS}"),
        "precision": (lambda: value in ("",) + PRECISIONS, f"must be one of {PRECISIONS} or empty"),
        "device": (lambda: value in ("", "cpu", "cuda") or value.startswith("cuda:"), "must be cpu, cuda, cuda:N or empty"),
        "flow_preset": (lambda: value in FLOW_PRESETS, f"must be one of {FLOW_PRESETS}"),
        "max_objects": (lambda: value >= 0, "must be >= 0"),
        "adaptation_iterations": (lambda: value >= -1, "must be >= -1"),
        "cpu_threads": (lambda: value >= -1, "must be >= -1"),
        "ring_buffer_length": (lambda: value >= 1, "must be >= 1"),
        "init_mask_wait_s": (lambda: value >= 0, "must be >= 0"),
        "service_timeout_s": (lambda: value > 0, "must be > 0"),
        "diagnostics_period_s": (lambda: value > 0, "must be > 0"),
        "theta_c": (lambda: value == -1.0 or 0.0 <= value <= 1.0, "must be in [0, 1] (or -1 for the configuration's)"),
        "mask_format": (lambda: value in MASK_FORMATS, f"must be one of {MASK_FORMATS}"),
        "click_mode": (lambda: value in CLICK_MODES, f"must be one of {CLICK_MODES}"),
    }
    if name not in checks:
        return None
    default = PARAMETERS[name][0]
    if type(value) is not type(default):  # e.g. a string from a YAML typo
        return f"{name}={value!r} must be a {type(default).__name__}"
    ok, reason = checks[name]
    return None if ok() else f"{name}={value!r} {reason}"


def node_threads(cpu_threads: int) -> int:
    """Torch threads for the node. Next to a player and a subscriber on 2 cores, one thread gave
    72 ms mean latency and both cores 85 ms (bench-ros, car-shadow at 10 Hz): the other processes
    and the node's own threads (DDS, executor, OpenCV) need a core."""
    return cpu_threads if cpu_threads > 0 else max(1, len(os.sched_getaffinity(0)) - 1)


class AddRejected(Exception):
    """A mask/prompt could not be applied; nothing changed."""


@dataclasses.dataclass
class AddCommand:
    stamp_ns: int  # frame the mask/prompt belongs to; 0 = the newest frame
    make_labels: Callable[[np.ndarray, list[int]], np.ndarray]  # (frame rgb, tracked ids) -> uint16 labels
    names: dict[int, str]
    source: str  # for log lines
    reply: concurrent.futures.Future
    expires: float  # monotonic time after which a frame that has not arrived is given up


@dataclasses.dataclass
class EngineCommand:  # remove / reset
    run: Callable[[], str]
    reply: concurrent.futures.Future


class RateCounter:
    """Events per second over the last diagnostics period."""

    def __init__(self):
        self.total = 0
        self._last_total = 0
        self._last_time = time.monotonic()

    def rate(self) -> float:
        now = time.monotonic()
        rate = (self.total - self._last_total) / max(now - self._last_time, 1e-6)
        self._last_total, self._last_time = self.total, now
        return rate


class TrackerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("tracker", **kwargs)
        self._engine = None
        self._engine_config: EngineConfig | None = None
        self._names: dict[int, str] = {}
        self._lock = threading.Condition()  # guards the fields below it
        # Frames waiting for the worker. Two, not one: on a loaded host DDS and the
        # scheduler deliver frames in pairs now and then, and a 1-deep slot dropped one
        # of each pair although the tracker keeps up on average. Beyond two the oldest
        # is dropped (counted): when behind, the tracker works on the newest frames.
        self._pending: collections.deque[Frame] = collections.deque(maxlen=2)
        self._ring = FrameRing(1)  # sized on configure
        self._commands: collections.deque = collections.deque()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._click_corner: tuple[float, float] | None = None
        self._received = RateCounter()
        self._published = RateCounter()
        self._dropped = 0
        self._rejected_images = 0
        self._latencies: list[float] = []
        self._last_targets: list = []
        self._last_error = ""
        self._configured_theta_c = float("nan")
        self._lifecycle_publishers: list = []
        self._ros_entities: list = []
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for name, (default, description, live) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=not live))

    # -- parameters ---------------------------------------------------------------
    def param(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            reason = validate_parameter(p.name, p.value)
            if reason:
                self.get_logger().warning(f"rejected parameter: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        for p in params:
            if p.name == "theta_c" and self._engine is not None:
                self._engine.config.decision.theta_c = float(p.value) if p.value != -1.0 else self._configured_theta_c
        return SetParametersResult(successful=True)

    def _config_overrides(self) -> dict:
        overrides = {}
        if self.param("theta_c") != -1.0:
            overrides["decision.theta_c"] = float(self.param("theta_c"))
        if self.param("flow_preset"):
            overrides["flow.preset"] = self.param("flow_preset")
        if self.param("max_objects"):
            overrides["tracking.max_objects"] = int(self.param("max_objects"))
        if self.param("adaptation_iterations") != -1:
            overrides["adaptation.iterations"] = int(self.param("adaptation_iterations"))
        overrides["adaptation.background"] = True  # an add must not hold the stream for seconds
        if self.param("device"):
            overrides["device"] = self.param("device")
        if self.param("cpu_threads"):
            overrides["threads"] = node_threads(self.param("cpu_threads"))
        return overrides

    # -- lifecycle ----------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configured_theta_c = load_config(self.param("configuration")).decision.theta_c
            self._engine_config = load_config(self.param("configuration"), overrides=self._config_overrides())
        except ConfigError as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        self._ring = FrameRing(self.param("ring_buffer_length"))
        inputs = MutuallyExclusiveCallbackGroup()  # image callback: never waits
        requests = MutuallyExclusiveCallbackGroup()  # services and prompts: may wait for the worker
        pub_events = PublisherEventCallbacks(incompatible_qos=self._on_offered_incompatible_qos)
        self._objects_pub = self.create_lifecycle_publisher(
            TrackedObjectArray, self.param("objects_topic"), OUTPUT_QOS, event_callbacks=pub_events)
        self._labels_pub = self.create_lifecycle_publisher(
            Image, self.param("labels_topic"), OUTPUT_QOS, event_callbacks=pub_events)
        self._overlay_pub = self.create_lifecycle_publisher(
            Image, self.param("overlay_topic"), OUTPUT_QOS, event_callbacks=pub_events)
        # A plain publisher: diagnostics also report an inactive tracker.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._lifecycle_publishers = [self._objects_pub, self._labels_pub, self._overlay_pub]
        self._ros_entities = [
            self._diagnostics_pub,
            self.create_subscription(
                Image, self.param("image_topic"), self._on_image,
                image_qos(self.param("image_qos"), self.param("image_qos_depth")), callback_group=inputs,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_requested_incompatible_qos)),
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
        self.get_logger().info(
            f"configured: images on '{self.resolve_topic_name(self.param('image_topic'))}' "
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
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="vos_tracker_worker", daemon=True)
        self._worker.start()
        steps = self._engine_config.adaptation.iterations
        adaptation = (f"{steps} steps per add" if self._engine.adapter is not None
                      else "off" if steps == 0 else "unavailable on this backend (needs torch)")
        self.get_logger().info(f"active: backend {self._engine.backend.label}, device {self._engine.device}, "
                               f"first-frame adaptation {adaptation}")
        return super().on_activate(state)

    def _load_engine(self):
        """The tracker on `backend`; on `backend_fallback` when that backend cannot run here."""
        import torch  # only when the networks are needed

        from vos_ros.inference.engine import Tracker

        backend, fallback = self.param("backend"), self.param("backend_fallback")
        common = {"weights": self.param("weights") or None, "cache_dir": self.param("engine_cache") or None}
        try:
            return Tracker.from_config(self._engine_config, device=self.param("device") or None, backend=backend,
                                       precision=self.param("precision") or None, **common)
        except BackendUnavailable as e:
            if fallback == "none":
                raise
            device = (self.param("device") or None) if torch.cuda.is_available() else "cpu"
            self._last_error = f"backend {backend} unavailable ({e}); running backend_fallback {fallback}"
            self.get_logger().warning(self._last_error)
            return Tracker.from_config(self._engine_config, device=device, backend=fallback, **common)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self._engine = None  # releases the networks (and the GPU memory)
        self._names.clear()
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
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        with self._lock:
            pending, self._commands = list(self._commands), collections.deque()
        for cmd in pending:
            cmd.reply.set_exception(AddRejected("the tracker was deactivated"))

    # -- QoS events ---------------------------------------------------------------
    def _on_requested_incompatible_qos(self, event):
        self.get_logger().error(
            f"INCOMPATIBLE QoS: a publisher on '{self.param('image_topic')}' cannot serve this subscription "
            f"(policy {event.last_policy_kind}); no images will arrive. image_qos is '{self.param('image_qos')}': "
            "use sensor_data (best effort), which accepts any publisher.")

    def _on_offered_incompatible_qos(self, event):
        self.get_logger().error(
            f"INCOMPATIBLE QoS: a subscriber of a tracker output requests more than reliable/volatile "
            f"(policy {event.last_policy_kind}); it will receive nothing.")

    # -- inputs (executor threads; they never wait for the engine) -----------------
    def _on_image(self, msg: Image):
        self._received.total += 1
        if self._worker is None:  # inactive: nothing will process it
            return
        try:
            rgb = imgmsg_to_rgb(msg)
        except ImageConversionError as e:
            self._rejected_images += 1
            self._last_error = f"image rejected: {e}"
            self.get_logger().warning(f"image rejected: {e}", throttle_duration_sec=5.0)
            return
        frame = Frame(msg.header, rgb)
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self._dropped += 1
            self._pending.append(frame)
            self._ring.append(frame)
            self._lock.notify()

    def _submit(self, cmd) -> concurrent.futures.Future:
        with self._lock:
            if self._worker is None:
                cmd.reply.set_exception(AddRejected("the tracker is not active"))
            else:
                self._commands.append(cmd)
                self._lock.notify()
        return cmd.reply

    def _submit_add(self, stamp: int, make_labels, names: dict[int, str], source: str) -> concurrent.futures.Future:
        return self._submit(AddCommand(stamp, make_labels, names, source, concurrent.futures.Future(),
                                       time.monotonic() + self.param("init_mask_wait_s")))

    async def _wait(self, future: concurrent.futures.Future):
        """(result, None) or (None, error message) of a worker command, awaited so that the executor
        keeps delivering images meanwhile. A blocking wait needed a multi-threaded executor, whose
        threads contended with the worker for the GIL: engine steps stalled for 150-570 ms now and
        then and frames were dropped (car-shadow at 10 Hz across processes)."""
        woken = RosFuture(executor=self.executor)
        # A done callback makes set_result (worker thread or timer) schedule it, which wakes the executor.
        woken.add_done_callback(lambda _: None)

        def wake(*_):
            if not woken.done():
                woken.set_result(None)

        future.add_done_callback(wake)
        timer = self.create_timer(self.param("service_timeout_s"), wake)
        try:
            await woken
        finally:
            self.destroy_timer(timer)
        if not future.done():
            return None, f"the tracker did not answer within service_timeout_s={self.param('service_timeout_s')}"
        try:
            return future.result(), None
        except (AddRejected, EngineInputError) as e:
            return None, str(e)

    def _log_outcome(self, future: concurrent.futures.Future, source: str):
        def done(f):
            if f.exception() is not None:
                self.get_logger().error(f"{source} rejected: {f.exception()}")
        future.add_done_callback(done)

    @staticmethod
    def _labels_as_given(labels: np.ndarray) -> Callable[[np.ndarray, list[int]], np.ndarray]:
        return lambda rgb, tracked: labels

    def _on_init_mask(self, msg: Image):
        try:
            labels = imgmsg_to_labels(msg)
        except ImageConversionError as e:
            self.get_logger().error(f"init mask rejected: {e}")
            return
        self._log_outcome(self._submit_add(stamp_ns(msg.header), self._labels_as_given(labels), {}, "init mask"),
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
            stamp_ns(request.labels.header), self._labels_as_given(labels), names, "add_targets"))
        response.success = error is None
        response.message = error or f"added {result}"
        response.added_ids = result or []
        response.tracked_ids = self._tracked_ids()
        return response

    async def _on_remove_targets(self, request: RemoveTargets.Request, response: RemoveTargets.Response):
        ids = [int(i) for i in request.ids]

        def remove() -> str:
            removed = self._engine.remove_targets(ids)
            for i in removed:
                self._names.pop(i, None)
            return f"removed {removed}"

        result, error = await self._wait(self._submit(EngineCommand(remove, concurrent.futures.Future())))
        response.success, response.message = error is None, error or result
        response.tracked_ids = self._tracked_ids()
        return response

    async def _on_reset(self, request: Reset.Request, response: Reset.Response):
        def reset() -> str:
            self._engine.reset()
            self._names.clear()
            return "all targets removed"

        result, error = await self._wait(self._submit(EngineCommand(reset, concurrent.futures.Future())))
        response.success, response.message = error is None, error or result
        return response

    def _tracked_ids(self) -> list[int]:
        engine = self._engine
        return list(engine.target_ids) if engine is not None else []

    # Prompts: the mask is computed by the worker on the frame the prompt belongs to.
    def _add_prompt(self, stamp: int, mask_fn: Callable[[np.ndarray], np.ndarray], source: str):
        def make_labels(rgb: np.ndarray, tracked: list[int]) -> np.ndarray:
            try:
                mask = mask_fn(rgb)
            except ValueError as e:
                raise AddRejected(str(e)) from e
            return mask.astype(np.uint16) * (max(tracked, default=0) + 1)

        self._log_outcome(self._submit_add(stamp, make_labels, {}, source), source)

    def _on_click(self, x: float, y: float, stamp: int, source: str):
        if self.param("click_mode") == "point":
            self._add_prompt(stamp, lambda rgb: prompts.mask_from_point(rgb, x, y), f"{source} point ({x:.0f}, {y:.0f})")
        elif self._click_corner is None:
            self._click_corner = (x, y)
            self.get_logger().info(f"box corner 1 at ({x:.0f}, {y:.0f}); click the opposite corner")
        else:
            (x0, y0), self._click_corner = self._click_corner, None
            self._add_prompt(stamp, lambda rgb: prompts.mask_from_box(rgb, (x0, y0, x, y)),
                             f"{source} box ({x0:.0f}, {y0:.0f})-({x:.0f}, {y:.0f})")

    def _on_point(self, msg: Point):
        self._on_click(msg.x, msg.y, 0, "click")

    def _on_point_stamped(self, msg: PointStamped):
        self._on_click(msg.point.x, msg.point.y, stamp_ns(msg.header), "click")

    def _on_polygon(self, msg: PolygonStamped):
        points = np.array([[p.x, p.y] for p in msg.polygon.points])
        self._add_prompt(stamp_ns(msg.header), lambda rgb: prompts.mask_from_polygon(rgb, points),
                         f"polygon of {len(points)} points")

    # -- worker (the only thread that touches the engine) ----------------------------
    def _work(self):
        waiting: list[AddCommand] = []  # adds whose frame has not arrived or not been stepped yet
        while not self._stop.is_set():
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._commands or self._stop.is_set(),
                                    timeout=0.1)
                frame = self._pending.popleft() if self._pending else None
                commands = list(self._commands)
                self._commands.clear()
            if frame is not None:  # first, so that an add for this frame finds it stepped
                self._process(frame)
            for cmd in waiting + commands:
                if isinstance(cmd, AddCommand):
                    if not self._try_add(cmd):
                        continue
                else:
                    self._run(cmd.reply, cmd.run)
            waiting = [c for c in waiting + commands if isinstance(c, AddCommand) and not c.reply.done()]

    @staticmethod
    def _run(reply: concurrent.futures.Future, fn: Callable):
        try:
            reply.set_result(fn())
        except (EngineInputError, AddRejected) as e:
            reply.set_exception(e)

    def _try_add(self, cmd: AddCommand) -> bool:
        """Apply ``cmd``; False when its frame has not arrived or been stepped yet (try again later)."""
        with self._lock:
            try:
                index = len(self._ring.frames) - 1 if cmd.stamp_ns == 0 and self._ring.frames else self._ring.find(cmd.stamp_ns)
            except FrameNotBuffered as e:
                if e.too_new and time.monotonic() < cmd.expires:
                    return False
                cmd.reply.set_exception(AddRejected(f"{cmd.source}: {e}; nothing changed"))
                return True
            frame = self._ring.frames[index]
            later = [f.rgb for f in self._ring.processed_after(index)]
            # The engine has not reached this frame: step it first, or the add would put the engine
            # on this frame and the frame's own step would then track it onto itself (an extra
            # refinement pass that cost 2.3 J&F points on car-shadow).
            if not frame.processed and not later and time.monotonic() < cmd.expires:
                return False

        def add() -> list[int]:
            labels = cmd.make_labels(frame.rgb, self._engine.target_ids)
            if labels.shape != frame.rgb.shape[:2]:
                raise AddRejected(f"{cmd.source}: mask is {labels.shape[1]}x{labels.shape[0]} but the frame is "
                                  f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}; nothing changed")
            added = self._engine.add_targets(frame.rgb, labels, later_frames=later)
            for i in added:
                self._names[i] = cmd.names.get(i, self._names.get(i, ""))
            adaptation = "; adapting the MRN to them in the background" if self._engine.adaptation_pending else ""
            self.get_logger().info(f"{cmd.source}: tracking {added} from the frame at "
                                   f"{frame.stamp_ns * 1e-9:.3f} s, caught up over {len(later)} frames{adaptation}")
            return added

        self._run(cmd.reply, add)
        return True

    def _process(self, frame: Frame):
        adapted = self._engine.last_adaptation
        try:
            result = self._engine.step(frame.rgb)
        except EngineInputError as e:
            self._last_error = f"frame skipped: {e}"
            self.get_logger().warning(self._last_error, throttle_duration_sec=5.0)
            return
        if self._engine.last_adaptation is not adapted:  # this step swapped a background fit in
            report = self._engine.last_adaptation
            self.get_logger().info(f"MRN adapted to {report.target_ids} in {report.seconds:.1f} s (loss on "
                                   f"{report.pairs} first-frame pairs {report.loss_before:.3f} -> "
                                   f"{report.loss_after:.3f}), in use from the frame at {frame.stamp_ns * 1e-9:.3f} s")
        frame.processed = True
        header: Header = frame.header
        self._objects_pub.publish(tracked_object_array(result, header, self._names, self.param("mask_format")))
        self._labels_pub.publish(numpy_to_imgmsg(result.labels, "mono16", header))
        if self.param("publish_overlay") and self._overlay_pub.get_subscription_count() > 0:
            self._overlay_pub.publish(numpy_to_imgmsg(overlay(frame.rgb, result), "rgb8", header))
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
                "frames_dropped": self._dropped, "images_rejected": self._rejected_images}

    def _publish_diagnostics(self):
        latencies, self._latencies = self._latencies, []
        engine = self._engine
        status = DiagnosticStatus(name=f"{self.get_name()}: tracking", hardware_id=str(engine.device) if engine else "")
        values = {
            "input_rate_hz": f"{self._received.rate():.2f}",
            "output_rate_hz": f"{self._published.rate():.2f}",
            "latency_mean_ms": f"{1e3 * float(np.mean(latencies)):.1f}" if latencies else "nan",
            "latency_max_ms": f"{1e3 * max(latencies):.1f}" if latencies else "nan",
            **{k: str(v) for k, v in self.frame_counts().items()},
            "backend": engine.backend.label if engine else self.param("backend"),
            "device": str(engine.device) if engine else "",
            "configuration": self._engine_config.name if self._engine_config else "",
            "theta_c": f"{engine.config.decision.theta_c:.3f}" if engine else "",
            "last_error": self._last_error,
        }
        for t in self._last_targets:
            values[f"target_{t.id}"] = f"{t.status.name.lower()} score={t.score:.2f} stream={t.stream.name}"
        if engine is None:
            status.level, status.message = DiagnosticStatus.ERROR, "networks not loaded"
        elif self._received.total == 0:
            status.level, status.message = DiagnosticStatus.WARN, "no images received"
        elif latencies and float(np.mean(latencies)) > 0.5:
            status.level, status.message = DiagnosticStatus.WARN, "falling behind (latency > 0.5 s)"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"tracking {len(self._last_targets)} targets"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
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
