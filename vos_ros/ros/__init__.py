"""ROS 2 wrapper of the engine: nodes, message conversion, launch entry points.

Everything ROS-specific lives here; ``vos_ros.model`` / ``vos_ros.inference``
import no ROS.
"""
