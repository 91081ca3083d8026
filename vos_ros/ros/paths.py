"""Installed share files of vos_ros (config/, launch/)."""

from __future__ import annotations

import sys
from pathlib import Path

from ament_index_python.packages import get_package_share_directory


def share_dir() -> Path:
    """share/vos_ros of the install: the ament index when AMENT_PREFIX_PATH is set
    (colcon, ROS), else the prefix pip installed the data files into."""
    try:
        return Path(get_package_share_directory("vos_ros"))
    except (LookupError, EnvironmentError):  # PackageNotFoundError is a LookupError; unset AMENT_PREFIX_PATH
        return Path(sys.prefix) / "share" / "vos_ros"


def default_params_file() -> Path:
    return share_dir() / "config" / "tracker.yaml"


def fastdds_profile() -> Path:
    return share_dir() / "config" / "fastdds_large_images.xml"
