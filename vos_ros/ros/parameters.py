"""Node parameters declared once: name, default, description, whether it may change at run time,
and the rule a value must meet. Nodes declare and validate from these schemas; a test checks
config/tracker.yaml and docs/ros.md against them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from rcl_interfaces.msg import ParameterDescriptor

from vos_ros.prompts import SEGMENTERS


@dataclass(frozen=True)
class Parameter:
    name: str
    default: object
    description: str
    live: bool = False  # may be set while running (ros2 param set); read-only otherwise
    check: Callable[[object], bool] | None = None
    rule: str = ""  # what `check` requires, for the rejection message

    def problem(self, value) -> str | None:
        """Why `value` is invalid, or None."""
        if type(value) is not type(self.default):  # e.g. a string from a YAML typo
            return f"{self.name}={value!r} must be a {type(self.default).__name__}"
        if self.check is not None and not self.check(value):
            return f"{self.name}={value!r} {self.rule}"
        return None


def one_of(choices: tuple, what: str = "") -> dict:
    """`check` and `rule` for a value from `choices`."""
    return {"check": lambda v: v in choices, "rule": f"must be one of {choices}{what}"}


def at_least(bound, exclusive: bool = False) -> dict:
    return {"check": (lambda v: v > bound) if exclusive else (lambda v: v >= bound),
            "rule": f"must be {'>' if exclusive else '>='} {bound}"}


class Schema:
    def __init__(self, *parameters: Parameter):
        self.parameters = {p.name: p for p in parameters}

    def __iter__(self):
        return iter(self.parameters.values())

    def __getitem__(self, name: str) -> Parameter:
        return self.parameters[name]

    def names(self) -> set[str]:
        return set(self.parameters)

    def problem(self, name: str, value) -> str | None:
        """Why `value` is invalid for parameter `name`, or None (also for parameters that are not
        the schema's, such as rclpy's own use_sim_time)."""
        return self.parameters[name].problem(value) if name in self.parameters else None

    def declare(self, node) -> dict:
        """Declare every parameter on `node` and return the values it starts with; raises ValueError
        naming each invalid one."""
        for p in self:
            node.declare_parameter(p.name, p.default, ParameterDescriptor(description=p.description,
                                                                          read_only=not p.live))
        values = {p.name: node.get_parameter(p.name).value for p in self}
        problems = [reason for name, value in values.items() if (reason := self.problem(name, value))]
        if problems:
            raise ValueError("invalid parameters: " + "; ".join(problems))
        return values


# ---------------------------------------------------------------------------- the nodes' schemas
def _tracker_schema() -> Schema:
    from vos_ros.backends import BACKENDS, PRECISIONS
    from vos_ros.config import METHOD_NAMES
    from vos_ros.ros.messages import MASK_FORMATS
    from vos_ros.ros.qos import IMAGE_QOS_CHOICES

    fallbacks = ("none",) + BACKENDS
    topic = "topic (relative names resolve in the node's namespace)"
    return Schema(
        Parameter("image_topic", "image", f"camera image {topic}: rgb8, bgr8, rgba8, bgra8 or mono8"),
        Parameter("image_qos", "sensor_data", f"image subscription QoS: {'|'.join(IMAGE_QOS_CHOICES)}",
                  **one_of(IMAGE_QOS_CHOICES)),
        Parameter("image_transport", "raw", "raw: sensor_msgs/Image on image_topic; compressed: "
                  "sensor_msgs/CompressedImage (jpeg, png) on image_topic/compressed", **one_of(("raw", "compressed"))),
        Parameter("camera_info_topic", "camera_info", f"sensor_msgs/CameraInfo of the images {topic}: the "
                  "camera model for depth, republished with each output"),
        Parameter("depth_topic", "", "aligned depth image (16UC1 millimetres or 32FC1 metres, the colour "
                  "camera's model); empty = no 3D"),
        Parameter("depth_slop_s", 0.03, "most stamp difference between a frame and its depth image",
                  **at_least(0.0)),
        Parameter("depth_erosion_px", 3, "mask erosion before sampling depth (edge pixels see the background)",
                  **at_least(0)),
        # 5 as in rclpy's sensor-data profile: the callback only queues, so a deeper reader history
        # costs nothing and rides out scheduler stalls that lost frames at 2.
        Parameter("image_qos_depth", 5, "image subscription queue depth", **at_least(1)),
        Parameter("init_mask_topic", "vos/init_mask", "latched label image (mono8/mono16) that adds targets"),
        Parameter("objects_topic", "vos/objects", "vos_ros/TrackedObjectArray output"),
        Parameter("labels_topic", "vos/labels", "mono16 label image output (pixel = target id)"),
        Parameter("overlay_topic", "vos/overlay", "rgb8 overlay for rviz (computed only while subscribed)"),
        Parameter("detections_topic", "vos/detections", "vision_msgs/Detection2DArray output (when vision_msgs "
                  "is installed)"),
        Parameter("detections_3d_topic", "vos/detections_3d", "vision_msgs/Detection3DArray output (with "
                  "depth_topic)"),
        Parameter("points_topic", "vos/points", "sensor_msgs/PointCloud2 of the targets' surface points, field id "
                  "(with depth_topic and publish_points)"),
        Parameter("markers_topic", "vos/markers", "visualization_msgs/MarkerArray for rviz: 3D boxes, centroids, "
                  "labels (with depth_topic; computed only while subscribed)"),
        Parameter("camera_info_out_topic", "vos/camera_info", "the latest CameraInfo, stamped as each output"),
        Parameter("point_topic", "vos/prompt/point", "geometry_msgs/Point pixel click (rqt_image_view style)"),
        Parameter("point_stamped_topic", "vos/prompt/point_stamped", "geometry_msgs/PointStamped pixel click"),
        Parameter("polygon_topic", "vos/prompt/polygon", "geometry_msgs/PolygonStamped in pixels (2 points = box)"),
        Parameter("configuration", "cpu", "engine configuration: cpu, gpu or a YAML path"),
        Parameter("method", "", f"per-frame segmenter: {'|'.join(METHOD_NAMES)}; empty = the configuration's "
                  "(dtn in cpu and gpu)", **one_of(("",) + METHOD_NAMES)),
        Parameter("backend", "torch", f"inference backend: {'|'.join(BACKENDS)}", **one_of(BACKENDS)),
        Parameter("backend_fallback", "torch", "backend used when `backend` cannot run here (no TensorRT, no GPU, "
                  f"no cached int8 engine), on the CPU when there is no GPU: {'|'.join(fallbacks)}",
                  **one_of(fallbacks)),
        Parameter("precision", "", f"{'|'.join(PRECISIONS)}; empty = the backend's default (torch: fp16 on CUDA; "
                  "tensorrt: fp16)", **one_of(("",) + PRECISIONS)),
        Parameter("engine_cache", "", "folder for ONNX graphs and TensorRT engines; empty = $VOS_ROS_CACHE or "
                  "~/.cache/vos_ros"),
        Parameter("device", "", "cpu, cuda, cuda:N; empty = the configuration's",
                  check=lambda v: v in ("", "cpu", "cuda") or v.startswith("cuda:"),
                  rule="must be cpu, cuda, cuda:N or empty"),
        Parameter("weights", "", "weights file; empty = the configuration's"),
        Parameter("flow_preset", "", "DIS preset ultrafast|fast|medium; empty = the configuration's",
                  **one_of(("", "ultrafast", "fast", "medium"))),
        Parameter("max_objects", 0, "most targets tracked at once; 0 = the configuration's", **at_least(0)),
        Parameter("adaptation_iterations", -1, "first-frame adaptation steps per add (every backend), fitted "
                  "in the background while tracking goes on with the MRN in use (cpu configuration's 50: 11-20 s "
                  "on 2 cores, during which the stream runs slower); -1 = the configuration's; 0 = off",
                  **at_least(-1)),
        Parameter("cpu_threads", -1, "torch intra-op threads: -1 = all cores but one (left to the camera driver, "
                  "DDS and the executor), 0 = the configuration's", **at_least(-1)),
        Parameter("ring_buffer_length", 30, "received frames kept for masks drawn on a past frame", **at_least(1)),
        Parameter("init_mask_wait_s", 2.0, "how long a mask stamped after the newest frame waits for its frame",
                  **at_least(0.0)),
        Parameter("service_timeout_s", 60.0, "how long a service call waits for the worker (a reset waits for a "
                  "running first-frame adaptation)", **at_least(0.0, exclusive=True)),
        Parameter("diagnostics_period_s", 1.0, "period of /diagnostics", **at_least(0.0, exclusive=True)),
        Parameter("autostart", True, "configure and activate on start (no lifecycle manager needed)"),
        Parameter("theta_c", -1.0, "decision threshold in [0, 1]: BP when confidence > theta_c; -1 = the "
                  "configuration's", live=True, check=lambda v: v == -1.0 or 0.0 <= v <= 1.0,
                  rule="must be in [0, 1] (or -1 for the configuration's)"),
        Parameter("publish_overlay", True, "compute and publish the overlay while someone subscribes", live=True),
        Parameter("publish_points", False, "publish the targets' point cloud (with depth_topic)", live=True),
        Parameter("mask_format", "cropped", f"mask in TrackedObject: {'|'.join(MASK_FORMATS)}", live=True,
                  **one_of(MASK_FORMATS)),
        Parameter("prompt_segmenter", "learnt", "how clicks and polygons become a mask: learnt (the prompt network) "
                  "or grabcut; learnt falls back to grabcut when its weights are missing", **one_of(SEGMENTERS)),
        Parameter("click_mode", "point", "point: each click is a target; box: two clicks are a box", live=True,
                  **one_of(("point", "box"))),
    )


def _player_schema() -> Schema:
    from vos_ros.ros.qos import IMAGE_QOS_CHOICES

    return Schema(
        Parameter("source", "demo", "demo (photo scene, 3 objects) | synthetic (sprites) | video file | image folder "
                  "| DAVIS root (with `sequence`)"),
        Parameter("sequence", "", "DAVIS sequence name when `source` is a DAVIS root"),
        Parameter("mask", "", "label image for frame 0 (video/folder sources); DAVIS uses its frame-0 annotation"),
        Parameter("rate_hz", 10.0, "publish rate", **at_least(0.0, exclusive=True)),
        Parameter("num_frames", 0, "publish at most this many frames; 0 = all", **at_least(0)),
        Parameter("loop", False, "start again after the last frame (the mask is sent once)"),
        Parameter("image_topic", "image", "output images (rgb8)"),
        Parameter("init_mask_topic", "vos/init_mask", "latched frame-0 label mask (mono16)"),
        Parameter("image_qos", "reliable", f"image publisher QoS: {'|'.join(IMAGE_QOS_CHOICES)}",
                  **one_of(IMAGE_QOS_CHOICES)),
        Parameter("frame_id", "camera", "header.frame_id of the images"),
        Parameter("wait_for_subscribers_s", 10.0, "wait this long for image and mask subscribers before frame 0",
                  **at_least(0.0)),
        Parameter("min_image_subscribers", 1, "image subscribers to wait for (a tracker and a recording probe: 2)",
                  **at_least(0)),
        Parameter("synthetic_objects", 2, "objects in the synthetic clip", **at_least(1)),
        Parameter("clip_frames", 90, "frames of the demo or synthetic clip", **at_least(2)),
    )


def _recorder_schema() -> Schema:
    return Schema(
        Parameter("image_topic", "vos/overlay", "images to record (any encoding the tracker accepts)"),
        Parameter("filename", "overlay.mp4", "output video (mp4v); its folder is created"),
        Parameter("fps", 10.0, "frame rate written into the file", **at_least(0.0, exclusive=True)),
    )


def _prompt_ui_schema() -> Schema:
    from vos_ros.ros.qos import IMAGE_QOS_CHOICES

    return Schema(
        Parameter("host", "127.0.0.1", "address the page is served on (0.0.0.0: every interface, no authentication)"),
        Parameter("port", 8765, "TCP port of the page (0: any free port, logged)", **at_least(0)),
        Parameter("image_topic", "image", "the tracker's input images"),
        Parameter("image_qos", "sensor_data", f"image subscriber QoS: {'|'.join(IMAGE_QOS_CHOICES)}",
                  **one_of(IMAGE_QOS_CHOICES)),
        Parameter("objects_topic", "vos/objects", "the tracker's TrackedObjectArray (the page's target list)"),
        Parameter("add_service", "vos/add_targets", "the tracker's AddTargets service"),
        Parameter("remove_service", "vos/remove_targets", "the tracker's RemoveTargets service"),
        Parameter("reset_service", "vos/reset", "the tracker's Reset service"),
        Parameter("segmenter", "learnt", f"prompt -> mask: {'|'.join(SEGMENTERS)} (learnt falls back to grabcut when "
                  "its weights are missing)", **one_of(SEGMENTERS)),
        Parameter("kept_frames", 16, "frames last shown on the page that prompts may still refer to", **at_least(1)),
        Parameter("service_timeout_s", 30.0, "how long a page request waits for the tracker's answer",
                  **at_least(0.0, exclusive=True)),
    )


TRACKER, PLAYER, RECORDER, PROMPT_UI = _tracker_schema(), _player_schema(), _recorder_schema(), _prompt_ui_schema()


def markdown_table(schema: Schema) -> str:
    """The schema as docs/ros.md shows it (tools/parameter_tables.py writes it there)."""
    rows = ["| parameter | default | live | description |", "|---|---|---|---|"]
    for p in schema:
        default = "''" if p.default == "" else str(p.default).lower() if isinstance(p.default, bool) else p.default
        description = p.description.replace("|", "\\|")  # a bar would end the cell
        rows.append(f"| `{p.name}` | {default} | {'yes' if p.live else ''} | {description} |")
    return "\n".join(rows)


def node_threads(cpu_threads: int) -> int:
    """Torch threads for the node. Next to a player and a subscriber on 2 cores, one thread gave
    72 ms mean latency and both cores 85 ms (bench-ros, car-shadow at 10 Hz): the other processes
    and the node's own threads (DDS, executor, OpenCV) need a core."""
    return cpu_threads if cpu_threads > 0 else max(1, len(os.sched_getaffinity(0)) - 1)


def engine_overrides(param: Callable[[str], object]) -> dict:
    """The engine configuration overrides that the tracker's parameters (`param(name)`) ask for."""
    overrides = {}
    if param("method"):
        overrides["method"] = param("method")
    if param("theta_c") != -1.0:
        overrides["decision.theta_c"] = float(param("theta_c"))
    if param("flow_preset"):
        overrides["flow.preset"] = param("flow_preset")
    if param("max_objects"):
        overrides["tracking.max_objects"] = int(param("max_objects"))
    if param("adaptation_iterations") != -1:
        overrides["adaptation.iterations"] = int(param("adaptation_iterations"))
    overrides["adaptation.background"] = True  # an add must not hold the stream for seconds
    if param("device"):
        overrides["device"] = param("device")
    if param("cpu_threads"):
        overrides["threads"] = node_threads(param("cpu_threads"))
    return overrides
