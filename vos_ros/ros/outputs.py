"""The tracker's output topics for one processed frame (worker thread).

Every output carries the input image's header. The 3D outputs (detections, points, rviz markers)
need an aligned depth image and its CameraInfo (camera_inputs.py); without them `has_3d` is false
and no 3D topic is published.
"""

from __future__ import annotations

from typing import Callable

from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from vos_ros.depth import DepthError, DepthSettings, Target3D, target_3d
from vos_ros.inference.types import FrameResult, TargetStatus
from vos_ros.msg import TrackedObjectArray
from vos_ros.ros import vision
from vos_ros.ros.camera_inputs import CameraInputs
from vos_ros.ros.frame_ring import Frame
from vos_ros.ros.image_conv import numpy_to_imgmsg
from vos_ros.ros.markers import target_markers
from vos_ros.ros.messages import tracked_object_array
from vos_ros.ros.overlay import overlay
from vos_ros.ros.qos import OUTPUT_QOS


class TrackerOutputs:
    def __init__(self, node, param: Callable[[str], object], events, inputs: CameraInputs,
                 warn: Callable[[str], None]):
        self._param, self._inputs, self._warn = param, inputs, warn
        self._settings = DepthSettings(erosion_px=param("depth_erosion_px"))

        def publisher(msg_type, name):
            return node.create_lifecycle_publisher(msg_type, param(name), OUTPUT_QOS, event_callbacks=events)

        self._objects = publisher(TrackedObjectArray, "objects_topic")
        self._labels = publisher(Image, "labels_topic")
        self._overlay = publisher(Image, "overlay_topic")
        self._camera_info = publisher(CameraInfo, "camera_info_out_topic")
        self._detections = publisher(vision.Detection2DArray, "detections_topic") if vision.AVAILABLE else None
        self._detections_3d = self._points = self._markers = None
        if inputs.has_depth:
            self._points = publisher(PointCloud2, "points_topic")
            self._markers = publisher(MarkerArray, "markers_topic")
            if vision.AVAILABLE:
                self._detections_3d = publisher(vision.Detection3DArray, "detections_3d_topic")
        self.publishers = [p for p in (self._objects, self._labels, self._overlay, self._camera_info,
                                       self._detections, self._detections_3d, self._points, self._markers)
                           if p is not None]

    def publish(self, frame: Frame, result: FrameResult, names: dict[int, str]) -> None:
        header = frame.header
        geometry = self._geometry(frame, result)
        self._objects.publish(tracked_object_array(result, header, names, self._param("mask_format"), geometry))
        self._labels.publish(numpy_to_imgmsg(result.labels, "mono16", header))
        if self._param("publish_overlay") and self._overlay.get_subscription_count() > 0:
            self._overlay.publish(numpy_to_imgmsg(overlay(frame.rgb, result), "rgb8", header))
        if self._detections is not None:
            self._detections.publish(vision.detection_2d_array(result, header, names))
        if geometry is not None:
            if self._detections_3d is not None:
                self._detections_3d.publish(vision.detection_3d_array(result, header, names, geometry))
            if self._param("publish_points"):
                self._points.publish(vision.target_points(header, geometry))
            if self._markers.get_subscription_count() > 0:
                self._markers.publish(target_markers(header, names, geometry))
        info = self._inputs.camera_info
        if info is not None:
            fields = {name: getattr(info, name) for name in info.get_fields_and_field_types()}
            self._camera_info.publish(CameraInfo(**{**fields, "header": header}))

    def _geometry(self, frame: Frame, result: FrameResult) -> dict[int, Target3D | None] | None:
        """Each visible target's 3D (None for a target without enough depth), or None without depth."""
        if not self._inputs.has_depth:
            return None
        try:
            depth_m, camera = self._inputs.lookup(frame.stamp_ns)
            return {t.id: target_3d(t.mask, depth_m, camera, self._settings) for t in result.targets
                    if t.status != TargetStatus.LOST and t.area > 0}
        except DepthError as e:
            self._warn(f"no 3D for this frame: {e}")
            return None
