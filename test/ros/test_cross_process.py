"""The tracker node in its own process (installed console script), driven from this one; the graph entry point."""

import os
import subprocess

import numpy as np
import torch
from ros_test_helpers import spin_until

from vos_ros.ros.bench import node_command, stop
from vos_ros.ros.paths import fastdds_profile

SEQUENCE = "car-shadow"  # 40 frames of 854x480
ANSWER_S = 120.0  # per frame: only a hung tracker takes this long


def test_davis_sequence_across_processes_matches_the_engine(ctx, davis_root, weights_file):
    """Lock-step, so that nothing depends on the machine's speed: each frame is published once the
    tracker has answered the previous one, the targets are added by the service on frame 0. Every
    output is stamped with its image's stamp and its masks are the engine's, frame for frame;
    malformed images between frames are rejected and change nothing."""
    import rclpy
    from sensor_msgs.msg import Image

    from vos_ros.config import load_config
    from vos_ros.data import davis
    from vos_ros.inference.engine import Tracker
    from vos_ros.inference.video import segment_video
    from vos_ros.msg import TrackedObjectArray
    from vos_ros.ros.image_conv import numpy_to_imgmsg
    from vos_ros.ros.messages import labels_from_array
    from vos_ros.srv import AddTargets

    frames = [davis.read_frame(p) for p in davis.frame_paths(davis_root, SEQUENCE)]
    gt = davis.read_ground_truth(davis_root, SEQUENCE)
    env = {**os.environ, "FASTRTPS_DEFAULT_PROFILES_FILE": str(fastdds_profile())}  # full-size images
    args = ["--ros-args", "-p", "image_qos:=reliable", "-p", "adaptation_iterations:=0", "-p", "cpu_threads:=1",
            "-p", "publish_overlay:=false"] + (["-p", f"weights:={weights_file}"] if weights_file else [])
    tracker = subprocess.Popen(node_command("tracker_node") + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    node = rclpy.create_node("lockstep_probe", context=ctx)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    images = node.create_publisher(Image, "image", 10)
    arrays: dict[int, TrackedObjectArray] = {}
    node.create_subscription(TrackedObjectArray, "vos/objects",
                             lambda m: arrays.__setitem__(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, m), 10)
    add = node.create_client(AddTargets, "vos/add_targets")
    stamps = []
    try:
        assert spin_until(executor, lambda: add.service_is_ready() and images.get_subscription_count() > 0, 60)
        for index, frame in enumerate(frames):
            if index == 20:  # bad input between two frames: a wrong encoding, a wrong size
                images.publish(Image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64)))
                images.publish(numpy_to_imgmsg(frame[:100, :100].copy(), "rgb8"))
            msg = numpy_to_imgmsg(frame, "rgb8")
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + index, 0
            stamps.append((1000 + index) * 10**9)
            images.publish(msg)
            assert spin_until(executor, lambda: stamps[-1] in arrays, ANSWER_S), f"no answer to frame {index}"
            if index == 0:
                request = AddTargets.Request(labels=numpy_to_imgmsg(gt[0].astype(np.uint16), "mono16", msg.header))
                reply = add.call_async(request)
                assert spin_until(executor, reply.done, ANSWER_S) and reply.result().success, reply.result()
        assert tracker.poll() is None
    finally:
        log = stop(tracker)
        executor.shutdown()
        node.destroy_node()
    assert set(arrays) == set(stamps), "one output per image, stamped with the image's stamp"
    assert "frame skipped" in log and "image rejected" in log, log[-3000:]

    threads = torch.get_num_threads()
    try:  # the node's threads, so that the arithmetic is the same
        config = load_config("cpu", {"adaptation.iterations": 0, "threads": 1})
        direct = segment_video(Tracker.from_config(config, weights=weights_file or None), frames, gt[0]).labels
    finally:
        torch.set_num_threads(threads)
    received = [labels_from_array(arrays[s]) for s in stamps[1:]]
    differing = [i for i, (a, b) in enumerate(zip(received, direct[1:]), 1) if not np.array_equal(a, b)]
    assert differing == [], f"frames whose masks differ from the engine's: {differing}"


def test_tracker_graph_runs_player_and_tracker_in_one_process(ctx, weights_file):
    import rclpy

    from vos_ros.msg import TrackedObjectArray

    args = ["--ros-args", "-p", "source:=synthetic", "-p", "clip_frames:=20", "-p", "publish_overlay:=false"]
    if weights_file:
        args += ["-p", f"weights:={weights_file}"]
    proc = subprocess.Popen(node_command("tracker_graph") + args, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    node = rclpy.create_node("graph_probe", context=ctx)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    arrays = []
    node.create_subscription(TrackedObjectArray, "vos/objects", arrays.append, 50)
    try:
        # A liveness bound, not a speed check: a cold start right after setup took over 60 s once.
        assert spin_until(executor, lambda: any(len(a.objects) == 2 for a in arrays) or proc.poll() is not None, 150)
        assert proc.poll() is None
    finally:
        log = stop(proc)
        executor.shutdown()
        node.destroy_node()
    assert any(len(a.objects) == 2 for a in arrays), log[-3000:]
