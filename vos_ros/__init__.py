"""vos_ros: DTN video object segmentation and tracking for ROS 2.

The algorithm core (``vos_ros.model``, ``vos_ros.inference``) imports no ROS; the
ROS nodes live in ``vos_ros.ros`` and only wrap the engine.
"""

__version__ = "0.1.0"
