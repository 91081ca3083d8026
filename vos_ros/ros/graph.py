"""`tracker_graph`: the node graph of launch/tracker.launch.py in one process.

For machines without `ros2 launch` (the PyPI wheels have no launch): the same
nodes, the same YAML (keys are node names), the same arguments:

    tracker_graph [--params-file YAML] [--camera-topic TOPIC] [--no-player]
                  [--fastdds-profile XML|''] [--record VIDEO] [--exit-when-done]
                  [--wait-for-adaptation] [--ros-args ...]

`--record` adds a recorder node on the overlay topic; `--exit-when-done` ends
the run once the player has finished and the tracker has drained its queue
(the README's main job: a finite demo that leaves a video behind), and scores the
published labels against the clip's ground truth when the player's source has it.
`--wait-for-adaptation` has the player hold frame 1 until the tracker's first-frame
adaptation has ended, as a user waits after drawing a mask (the main job).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter

from vos_ros.ros.paths import default_params_file, fastdds_profile
from vos_ros.ros.stream_score import StreamScore


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
    parser.add_argument("--record", default="", metavar="VIDEO", help="record the tracker's overlay to this mp4")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="exit after the player's last frame has been tracked (needs the player, loop off)")
    parser.add_argument("--wait-for-adaptation", action="store_true",
                        help="the player holds frame 1 until the tracker's first-frame adaptation has ended")
    args = parser.parse_args(argv)
    if (args.exit_when_done or args.wait_for_adaptation) and not args.player:
        parser.error("--exit-when-done and --wait-for-adaptation need the player")
    return args, ros_args


def _tracker_settled(tracker, player, seconds: float, state: dict) -> bool:
    """True once the player is done and the tracker's counts stopped moving for `seconds`."""
    if not player.finished:
        return False
    counts = tracker.frame_counts()
    now = time.monotonic()
    if counts != state.get("counts"):
        state.update(counts=counts, since=now)
    return now - state["since"] >= seconds


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
    tracker = player = recorder = scorer = None
    executor = SingleThreadedExecutor()  # the tracker's services await its worker (TrackerNode._wait)
    try:
        tracker = TrackerNode(parameter_overrides=overrides)
        nodes.append(tracker)
        executor.add_node(tracker)
        start(tracker)
        if args.record:
            from vos_ros.ros.recorder_node import RecorderNode

            recorder = RecorderNode(parameter_overrides=[
                Parameter("image_topic", value=tracker.param("overlay_topic")),
                Parameter("filename", value=args.record)])
            nodes.append(recorder)
            executor.add_node(recorder)
        if args.player:
            player = PlayerNode(parameter_overrides=overrides)
            nodes.append(player)
            executor.add_node(player)
            if args.wait_for_adaptation:
                player.hold = tracker.settling_first_targets
            if args.exit_when_done and player.source.ground_truth is not None:
                scoring = rclpy.create_node("stream_score")
                nodes.append(scoring)
                executor.add_node(scoring)
                scorer = StreamScore(scoring, tracker.param("labels_topic"))
        if args.exit_when_done:
            state: dict = {}
            while rclpy.ok() and not _tracker_settled(tracker, player, 2.0, state):
                executor.spin_once(timeout_sec=0.1)
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    if args.exit_when_done and player is not None:
        counts = tracker.frame_counts()
        print(f"player published {player.published} frames; tracker received {counts['frames_received']}, "
              f"published {counts['frames_published']} object arrays, dropped {counts['frames_dropped']}"
              + (f"; {recorder.frames} overlay frames in {args.record}" if recorder is not None else ""))
        if scorer is not None and len(player.stamps) > 1:
            score = scorer.score(player.stamps, player.source.ground_truth)
            objects = ", ".join(f"{i}: {(j + f) / 2:.3f}" for i, (j, f) in sorted(score.per_object.items()))
            print(f"J&F against the clip's ground truth over the {len(player.stamps)} frames: {score.JF:.3f} "
                  f"(J {score.J:.3f}, F {score.F:.3f}; per object {objects})")
    return 0
