"""launch/tracker.launch.py: with recording stubs here, for real where `launch` imports."""

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "tracker.launch.py"
PARAMS = yaml.safe_load((REPO / "config" / "tracker.yaml").read_text())


class Recorder:
    """Stands in for every launch class: remembers its arguments."""

    created: list = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        Recorder.created.append(self)


def _stub_module(name):
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: type(attr, (Recorder,), {})
    return module


def _load_launch_file():
    spec = importlib.util.spec_from_file_location("tracker_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_file_with_stubs(monkeypatch):
    for name in ("launch", "launch.actions", "launch.conditions", "launch.substitutions",
                 "launch_ros", "launch_ros.actions"):
        monkeypatch.setitem(sys.modules, name, _stub_module(name))
    monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)
    Recorder.created = []
    _load_launch_file()
    nodes = [r for r in Recorder.created if type(r).__name__ == "Node"]
    arguments = {r.args[0] for r in Recorder.created if type(r).__name__ == "DeclareLaunchArgument"}
    assert {"camera_topic", "params_file", "player", "fastdds_profile"} <= arguments
    assert {n.kwargs["name"] for n in nodes} == {"tracker", "player"}
    for node in nodes:
        assert node.kwargs["package"] == "vos_ros"
        assert node.kwargs["name"] in PARAMS, "the YAML keys are the node names"
        exe = node.kwargs["executable"]
        assert (Path(sys.prefix) / "lib" / "vos_ros" / exe).exists() or shutil.which(exe), f"{exe} not installed"


def test_parameters_in_yaml_are_declared_by_the_nodes():
    from vos_ros.ros.player_node import PARAMETERS as PLAYER
    from vos_ros.ros.tracker_node import PARAMETERS as TRACKER

    assert set(PARAMS["tracker"]["ros__parameters"]) == set(TRACKER)
    assert set(PARAMS["player"]["ros__parameters"]) == set(PLAYER)


def test_launch_file_for_real():
    pytest.importorskip("launch_ros", reason="ROS 2 launch is not installed (not on PyPI)")
    launch = pytest.importorskip("launch")
    description = _load_launch_file()
    assert isinstance(description, launch.LaunchDescription)
