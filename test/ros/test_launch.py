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
    assert {"camera_topic", "params_file", "player", "prompt_ui", "fastdds_profile"} <= arguments
    assert {n.kwargs["name"] for n in nodes} == {"tracker", "player", "prompt_ui"}
    for node in nodes:
        assert node.kwargs["package"] == "vos_ros"
        assert node.kwargs["name"] in PARAMS, "the YAML keys are the node names"
        exe = node.kwargs["executable"]
        assert (Path(sys.prefix) / "lib" / "vos_ros" / exe).exists() or shutil.which(exe), f"{exe} not installed"


def test_yaml_and_docs_follow_the_parameter_schemas():
    """config/tracker.yaml sets every declared parameter to a valid value, its default (the file
    documents the defaults), and docs/ros.md's tables are the schemas'."""
    from vos_ros.ros.parameters import PLAYER, PROMPT_UI, TRACKER

    sys.path.insert(0, str(REPO / "tools"))
    from parameter_tables import render

    docs = (REPO / "docs" / "ros.md").read_text()
    assert render(docs) == docs, "docs/ros.md's tables are stale: run tools/parameter_tables.py"
    for node, schema in (("tracker", TRACKER), ("player", PLAYER), ("prompt_ui", PROMPT_UI)):
        values = PARAMS[node]["ros__parameters"]
        assert set(values) == schema.names(), node
        for name, value in values.items():
            assert schema.problem(name, value) is None, (node, name)
            assert value == schema[name].default, (node, name)
    assert TRACKER.problem("theta_c", 1.5) and TRACKER.problem("theta_c", "0.5") and not TRACKER.problem("theta_c", -1.0)
    assert TRACKER.problem("use_sim_time", True) is None  # rclpy's own parameters are not the schema's


def test_rviz_config_shows_the_tracker_outputs_and_is_installed():
    from vos_ros.ros.parameters import TRACKER

    rviz = yaml.safe_load((REPO / "config" / "tracker.rviz").read_text())
    displays = {d["Class"]: d for d in rviz["Visualization Manager"]["Displays"]}
    for display, parameter in (("Image", "overlay_topic"), ("MarkerArray", "markers_topic"),
                               ("PointCloud2", "points_topic")):
        assert displays[f"rviz_default_plugins/{display}"]["Topic"]["Value"] == "/" + TRACKER[parameter].default
    assert (Path(sys.prefix) / "share" / "vos_ros" / "config" / "tracker.rviz").exists()


def test_launch_file_for_real():
    pytest.importorskip("launch_ros", reason="ROS 2 launch is not installed (not on PyPI)")
    launch = pytest.importorskip("launch")
    description = _load_launch_file()
    assert isinstance(description, launch.LaunchDescription)


def test_graph_entry_point_runs_the_demo_to_the_end_and_records(tmp_path, weights_file):
    """The README's main job: one process, player -> tracker -> recorder, exits by itself and
    scores what it published."""
    import os
    import subprocess

    import cv2

    video = tmp_path / "overlay.mp4"
    # A short fit (10 steps) is enough to exercise the hold.
    ros_args = ["--ros-args", "-p", "source:=synthetic", "-p", "clip_frames:=12", "-p", "rate_hz:=5.0",
                "-p", "adaptation_iterations:=10"]
    if weights_file:
        ros_args += ["-p", f"weights:={weights_file}"]
    exe = shutil.which("tracker_graph") or str(Path(sys.prefix) / "bin" / "tracker_graph")
    done = subprocess.run([exe, "--exit-when-done", "--wait-for-adaptation", "--record", str(video), *ros_args],
                          capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    summary = [line for line in done.stdout.splitlines() if line.startswith("player published")]
    assert summary and summary[0].startswith("player published 12 frames"), done.stdout
    assert "tracking [1, 2]" in done.stderr, "the init mask reached the tracker"
    # Frame 1 waited for the first-frame adaptation, so every later frame was tracked with it.
    assert "frame 1 after a" in done.stderr and "MRN adapted to [1, 2]" in done.stderr, done.stderr[-2000:]
    assert any(line.startswith("J&F against the clip's ground truth over the 12 frames: ")
               for line in done.stdout.splitlines()), done.stdout
    capture, frames = cv2.VideoCapture(str(video)), 0
    while capture.read()[0]:
        frames += 1
    # How many frames the tracker keeps up with depends on the host's load; that
    # every tracked frame's overlay is recorded does not.
    published = int(summary[0].split("published ")[2].split(" object arrays")[0])
    assert frames >= 1 and frames == published, summary[0]
