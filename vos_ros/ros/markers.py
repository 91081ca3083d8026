"""rviz markers of the targets' 3D: a translucent box, a centroid sphere and a name label per target,
in the target's overlay colour (config/tracker.rviz shows them with the overlay and the points).

Each array starts with DELETEALL, so a target that is lost or removed leaves no stale marker.
"""

from __future__ import annotations

from geometry_msgs.msg import Vector3
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from vos_ros.data.visualize import id_colour
from vos_ros.depth import Target3D
from vos_ros.ros.messages import point_msg

NAMESPACE = "vos"
_SPHERE_M = 0.03
_TEXT_M = 0.05


def target_markers(header: Header, names: dict[int, str], geometry: dict[int, Target3D | None]) -> MarkerArray:
    markers = [Marker(header=header, ns=NAMESPACE, action=Marker.DELETEALL)]
    for target_id, g in sorted(geometry.items()):
        if g is None:
            continue
        r, gr, b = (c / 255 for c in id_colour(target_id))

        def marker(kind: int, slot: int, alpha: float) -> Marker:
            m = Marker(header=header, ns=NAMESPACE, id=3 * target_id + slot, type=kind, action=Marker.ADD,
                       color=ColorRGBA(r=r, g=gr, b=b, a=alpha))
            m.pose.orientation.w = 1.0
            return m

        box = marker(Marker.CUBE, 0, 0.35)
        box.pose.position = point_msg(g.box_center)
        size = g.box_size
        box.scale = Vector3(x=max(float(size[0]), 0.005), y=max(float(size[1]), 0.005), z=max(float(size[2]), 0.005))
        centroid = marker(Marker.SPHERE, 1, 1.0)
        centroid.pose.position = point_msg(g.centroid)
        centroid.scale = Vector3(x=_SPHERE_M, y=_SPHERE_M, z=_SPHERE_M)
        label = marker(Marker.TEXT_VIEW_FACING, 2, 1.0)
        label.pose.position = point_msg((g.centroid[0], g.box_min[1] - _TEXT_M, g.centroid[2]))  # above (y down)
        label.scale.z = _TEXT_M
        label.text = f"{target_id} {names.get(target_id, '')}".strip()
        markers += [box, centroid, label]
    return MarkerArray(markers=markers)
