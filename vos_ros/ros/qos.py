"""QoS profiles of the vos_ros topics (contract in docs/ros.md)."""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data, qos_profile_system_default)

IMAGE_QOS_CHOICES = ("sensor_data", "reliable", "system_default")

# Outputs: reliable and volatile, so that any subscriber (reliable or best
# effort, volatile) is compatible.
OUTPUT_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

# Init mask: latched (the last mask reaches a tracker that starts later).
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def image_qos(name: str, depth: int) -> QoSProfile:
    """Camera subscription profile. sensor_data (best effort) accepts every
    publisher; reliable only reliable publishers."""
    base = {"sensor_data": qos_profile_sensor_data, "reliable": OUTPUT_QOS,
            "system_default": qos_profile_system_default}[name]
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=base.reliability, durability=DurabilityPolicy.VOLATILE)
