"""Engine results -> vos_ros messages (conventions in msg/TrackedObject.msg)."""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from vos_ros.depth import Target3D
from vos_ros.inference.types import FrameResult, TargetResult, TargetStatus
from vos_ros.model.geometry import mask_box
from vos_ros.msg import TrackedObject, TrackedObjectArray
from vos_ros.ros.image_conv import numpy_to_imgmsg

MASK_FORMATS = ("cropped", "full_frame")
_NAN_POINT = dict(x=math.nan, y=math.nan, z=math.nan)


def point_msg(v) -> Point:
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def tracked_object(target: TargetResult, header: Header, label: str, mask_format: str,
                   geometry: Target3D | None = None) -> TrackedObject:
    obj = TrackedObject(header=header, id=int(target.id), label=label, score=float(target.score),
                        status=int(target.status), stream=int(target.stream),
                        dm_confidence=0.0 if math.isnan(target.dm_confidence) else float(target.dm_confidence))
    if geometry is None:
        obj.position, obj.box_3d_center, obj.box_3d_size = Point(**_NAN_POINT), Point(**_NAN_POINT), Vector3(**_NAN_POINT)
    else:
        obj.has_3d, obj.position, obj.box_3d_center = True, point_msg(geometry.centroid), point_msg(geometry.box_center)
        obj.box_3d_size = Vector3(**{k: float(v) for k, v in zip("xyz", geometry.box_size)})
    centroid = target.centroid
    if target.status == TargetStatus.LOST or target.area == 0 or centroid is None:
        obj.centroid = Point(x=math.nan, y=math.nan, z=0.0)
        return obj
    x1, y1, x2, y2 = (int(v) for v in mask_box(target.mask))
    obj.box = RegionOfInterest(x_offset=x1, y_offset=y1, width=x2 - x1, height=y2 - y1)
    obj.centroid = Point(x=centroid[0], y=centroid[1], z=0.0)
    if mask_format == "full_frame":
        crop = target.mask
    else:
        crop = target.mask[y1:y2, x1:x2]
        obj.mask_x_offset, obj.mask_y_offset = x1, y1
    obj.mask = numpy_to_imgmsg(crop.astype(np.uint8) * 255, "mono8", header)
    return obj


def tracked_object_array(result: FrameResult, header: Header, names: dict[int, str], mask_format: str,
                         geometry: dict[int, Target3D | None] | None = None) -> TrackedObjectArray:
    """`geometry`: each target's 3D (depth.py), None without depth."""
    h, w = result.labels.shape
    geometry = geometry or {}
    return TrackedObjectArray(
        header=header, image_width=w, image_height=h,
        objects=[tracked_object(t, header, names.get(t.id, ""), mask_format, geometry.get(t.id))
                 for t in sorted(result.targets, key=lambda t: t.id)],
    )


def labels_from_array(msg: TrackedObjectArray) -> np.ndarray:
    """(H, W) uint16 label map rebuilt from the masks in an array message (later ids win overlaps)."""
    labels = np.zeros((msg.image_height, msg.image_width), np.uint16)
    for obj in msg.objects:
        if obj.mask.width == 0:
            continue
        mask = np.frombuffer(obj.mask.data, np.uint8).reshape(obj.mask.height, obj.mask.step)[:, : obj.mask.width] > 0
        region = labels[obj.mask_y_offset: obj.mask_y_offset + obj.mask.height,
                        obj.mask_x_offset: obj.mask_x_offset + obj.mask.width]
        region[mask] = obj.id
    return labels
