"""`tracker_graph`: the node graph of launch/tracker.launch.py in one process.

For machines without `ros2 launch` (the PyPI wheels have no launch): the same
nodes, the same YAML (keys are node names), the same arguments:

    tracker_graph [--params-file YAML] [--camera-topic TOPIC] [--no-player]
                  [--fastdds-profile XML|''] [--ros-args ...]
"""

from __future__ import annotations

import argparse
import os
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.parameter import Parameter

from vos_ros.ros.paths import default_params_file, fastdds_profile


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ros_args = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    parser = argparse.ArgumentParser(prog="tracker_graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params-file", default=str(default_params_file()), help="node parameters (YAML)")
    parser.add_argument("--camera-topic", default="", help="image topic of the tracker (and the player)")
    parser.add_argument("--no-player", dest="player", action="store_false", help="track an existing camera instead")
    parser.add_argument("--fastdds-profile", default=str(fastdds_profile()),
                        help="Fast DDS XML for full-size images on one host; '' to keep the DDS defaults")
    return parser.parse_args(argv), ros_args


def main(argv: list[str] | None = None) -> int:
    args, ros_args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.fastdds_profile:
        # Read by Fast DDS when the participant is created, i.e. in rclpy.init.
        os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", args.fastdds_profile)
    rclpy.init(args=["graph", "--ros-args", "--params-file", args.params_file, *ros_args[1:]])
    from vos_ros.ros.player_node import PlayerNode
    from vos_ros.ros.tracker_node import TrackerNode, start

    overrides = [Parameter("image_topic", value=args.camera_topic)] if args.camera_topic else []
    nodes = []
    executor = MultiThreadedExecutor(num_threads=4)
    try:
        tracker = TrackerNode(parameter_overrides=overrides)
        nodes.append(tracker)
        executor.add_node(tracker)
        start(tracker)
        if args.player:
            player = PlayerNode(parameter_overrides=overrides)
            nodes.append(player)
            executor.add_node(player)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            if isinstance(node, TrackerNode):
                node.stop_worker()
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
