"""Engine results -> vision_msgs detections and a PointCloud2 of the targets' surface points.

vision_msgs comes with every ROS 2 install (and is built into .venv by scripts/setup.sh);
where it does not import, `AVAILABLE` is False and the tracker publishes only its own
messages. Detection ids are the target ids as strings, class_id the name the target was
added with ("" when none), score its mask score, as yolo_ros and Isaac ROS consumers read
them. Lost targets are not detections.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from vos_ros.depth import Target3D
from vos_ros.inference.types import FrameResult, TargetResult, TargetStatus
from vos_ros.model.geometry import mask_box
from vos_ros.ros.messages import point_msg

try:
    from vision_msgs.msg import (BoundingBox2D, BoundingBox3D, Detection2D, Detection2DArray, Detection3D,
                                 Detection3DArray, ObjectHypothesis, ObjectHypothesisWithPose)
    AVAILABLE = True
except ImportError:
    AVAILABLE = False


def _visible(result: FrameResult) -> list[TargetResult]:
    return sorted((t for t in result.targets if t.status != TargetStatus.LOST and t.area > 0), key=lambda t: t.id)


def _hypothesis(target: TargetResult, names: dict[int, str], position: Point | None = None):
    result = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=names.get(target.id, ""),
                                                                  score=float(target.score)))
    if position is not None:
        result.pose.pose.position = position
    return result


def detection_2d_array(result: FrameResult, header: Header, names: dict[int, str]):
    """Detection2DArray: each visible target's tight box (centre and size in pixels)."""
    detections = []
    for t in _visible(result):
        x1, y1, x2, y2 = mask_box(t.mask)
        bbox = BoundingBox2D(size_x=float(x2 - x1), size_y=float(y2 - y1))
        bbox.center.position.x, bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
        detections.append(Detection2D(header=header, id=str(t.id), bbox=bbox, results=[_hypothesis(t, names)]))
    return Detection2DArray(header=header, detections=detections)


def detection_3d_array(result: FrameResult, header: Header, names: dict[int, str], geometry: dict[int, Target3D]):
    """Detection3DArray in the camera's optical frame: the axis-aligned box of each visible target with
    3D, and its centroid as the hypothesis pose."""
    detections = []
    for t in _visible(result):
        g = geometry.get(t.id)
        if g is None:
            continue
        size = g.box_size
        bbox = BoundingBox3D(center=Pose(position=point_msg(g.box_center), orientation=Quaternion(w=1.0)),
                             size=Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2])))
        detections.append(Detection3D(header=header, id=str(t.id), bbox=bbox,
                                      results=[_hypothesis(t, names, point_msg(g.centroid))]))
    return Detection3DArray(header=header, detections=detections)


POINT_FIELDS = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
                PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
                PointField(name="id", offset=12, datatype=PointField.UINT32, count=1)]
_POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("id", "<u4")])


def target_points(header: Header, geometry: dict[int, Target3D]) -> PointCloud2:
    """One unorganised cloud of every target's kept surface points, each with its target id."""
    parts = []
    for target_id, g in sorted(geometry.items()):
        if g is None:
            continue
        rows = np.empty(len(g.points), _POINT_DTYPE)
        rows["x"], rows["y"], rows["z"], rows["id"] = g.points[:, 0], g.points[:, 1], g.points[:, 2], target_id
        parts.append(rows)
    cloud = np.concatenate(parts) if parts else np.empty(0, _POINT_DTYPE)
    return PointCloud2(header=header, height=1, width=len(cloud), fields=POINT_FIELDS, is_bigendian=False,
                       point_step=_POINT_DTYPE.itemsize, row_step=_POINT_DTYPE.itemsize * len(cloud),
                       data=cloud.tobytes(), is_dense=True)
