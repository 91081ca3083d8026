"""QoS profiles of the vos_ros topics (contract in docs/ros.md)."""

try:
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble: the event callbacks lived in rclpy.qos_event until Iron
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks
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


def incompatible_qos_events(logger, image_topic: str, image_qos_name: str
                            ) -> tuple[PublisherEventCallbacks, SubscriptionEventCallbacks]:
    """Event callbacks for the tracker's outputs and its image subscription that log an incompatible
    peer (no message would ever flow) with what to change."""
    def offered(event):
        logger.error(f"INCOMPATIBLE QoS: a subscriber of a tracker output requests more than reliable/volatile "
                     f"(policy {event.last_policy_kind}); it will receive nothing.")

    def requested(event):
        logger.error(f"INCOMPATIBLE QoS: a publisher on '{image_topic}' cannot serve this subscription (policy "
                     f"{event.last_policy_kind}); no images will arrive. image_qos is '{image_qos_name}': use "
                     "sensor_data (best effort), which accepts any publisher.")

    return PublisherEventCallbacks(incompatible_qos=offered), SubscriptionEventCallbacks(incompatible_qos=requested)
