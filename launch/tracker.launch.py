"""Launch the vos_ros tracker (and, optionally, the player as camera).

    ros2 launch vos_ros tracker.launch.py [camera_topic:=image] [params_file:=<share>/config/tracker.yaml]
                                          [player:=true|false] [prompt_ui:=true|false] [fastdds_profile:=<share>/config/fastdds_large_images.xml|'']

Without `ros2 launch` (PyPI ROS), `tracker_graph` runs the same nodes from the same YAML.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("vos_ros")
    camera_topic = LaunchConfiguration("camera_topic")
    params_file = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="image", description="camera image topic"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "tracker.yaml"),
                              description="node parameters (YAML, keys are node names)"),
        DeclareLaunchArgument("player", default_value="true",
                              description="publish the embedded demo input instead of using a camera"),
        DeclareLaunchArgument("prompt_ui", default_value="true",
                              description="serve the prompt page (http://127.0.0.1:8765/) to choose what to track"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(share, "config", "fastdds_large_images.xml"),
                              description="Fast DDS XML for full-size images on one host; '' for DDS defaults"),
        # Fast DDS reads it when each node process starts.
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile")),
        Node(package="vos_ros", executable="tracker_node", name="tracker", output="screen",
             parameters=[params_file, {"image_topic": camera_topic}]),
        Node(package="vos_ros", executable="player_node", name="player", output="screen",
             parameters=[params_file, {"image_topic": camera_topic}],
             condition=IfCondition(LaunchConfiguration("player"))),
        Node(package="vos_ros", executable="prompt_ui", name="prompt_ui", output="screen",
             parameters=[params_file, {"image_topic": camera_topic}],
             condition=IfCondition(LaunchConfiguration("prompt_ui"))),
    ])
