"""End-to-end benchmark across processes: player -> tracker -> probe.

The player and the tracker run as separate processes (the installed
`player_node` and `tracker_node`); the probe runs here. Latency is the probe's
receive time minus the image stamp (set by the player when it publishes), so it
covers image transport, queueing, the engine step and the result transport.

    vos-ros bench-ros [--rates 10 30] [--frames 60] [--source synthetic|DAVIS_ROOT --sequence SEQ]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from vos_ros.msg import TrackedObjectArray
from vos_ros.ros.frame_ring import stamp_ns
from vos_ros.ros.messages import labels_from_array
from vos_ros.ros.paths import fastdds_profile

# After the last image, how long the probe waits for the tracker's answer to it.
DRAIN_S = 5.0
# The probe keeps every message (it only records), so its queues hold a whole run.
PROBE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class PipelineRun:
    rate_hz: float
    image_stamps: list[int] = field(default_factory=list)  # every image the probe saw, in order
    arrays: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)  # stamp -> (latency s, labels)
    frames_published: int = 0
    tracker_counts: dict[str, int] = field(default_factory=dict)  # its last /diagnostics: received, dropped, ...
    wall_s: float = 0.0
    tracker_log: str = ""
    player_log: str = ""

    @property
    def received_fraction(self) -> float:
        return len(self.arrays) / self.frames_published if self.frames_published else 0.0

    def summary(self) -> dict:
        lat = np.array([v[0] for v in self.arrays.values()]) * 1e3
        stamps = sorted(self.arrays)
        span = (stamps[-1] - stamps[0]) * 1e-9 if len(stamps) > 1 else float("nan")
        pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: float("nan"))
        return {
            "input_hz": self.rate_hz, "frames_published": self.frames_published, "arrays_received": len(self.arrays),
            "received_pct": 100.0 * self.received_fraction,
            "throughput_hz": (len(stamps) - 1) / span if len(stamps) > 1 else float("nan"),
            "latency_ms_mean": float(lat.mean()) if lat.size else float("nan"),
            "latency_ms_p50": pct(50), "latency_ms_p95": pct(95), "latency_ms_max": float(lat.max()) if lat.size else float("nan"),
            # Where missing frames went: never reached the tracker, or skipped by it while busy.
            "tracker_received": self.tracker_counts.get("frames_received", -1),
            "tracker_dropped": self.tracker_counts.get("frames_dropped", -1),
        }


def node_command(executable: str) -> list[str]:
    """The installed console script, or the module when scripts are not on PATH."""
    path = shutil.which(executable) or os.path.join(os.path.dirname(sys.executable), executable)
    if os.path.exists(path):
        return [path]
    module = {"tracker_node": "vos_ros.ros.tracker_node", "player_node": "vos_ros.ros.player_node",
              "tracker_graph": "vos_ros.ros.graph", "prompt_ui": "vos_ros.ros.prompt_ui_node"}[executable]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


def run_pipeline(rate_hz: float, frames: int = 60, source: str = "synthetic", sequence: str = "",
                 weights: str = "", configuration: str = "cpu", timeout_s: float = 120.0) -> PipelineRun:
    """Start tracker and player processes and record what arrives (the probe has its own rclpy Context)."""
    # Full-size images need the large shared-memory segments in every process
    # that publishes them (see config/fastdds_large_images.xml).
    env = dict(os.environ)
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(fastdds_profile()))
    os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = env["FASTRTPS_DEFAULT_PROFILES_FILE"]
    run = PipelineRun(rate_hz)
    tracker_args = ["--ros-args", "-p", f"configuration:={configuration}", "-p", "publish_overlay:=false"]
    if weights:
        tracker_args += ["-p", f"weights:={weights}"]
    tracker = subprocess.Popen(node_command("tracker_node") + tracker_args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    player = None
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("vos_bench_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def on_array(msg: TrackedObjectArray):
        latency = (time.time_ns() - stamp_ns(msg.header)) * 1e-9
        run.arrays[stamp_ns(msg.header)] = (latency, labels_from_array(msg))

    diagnostics_seen = [0]  # reports from the active tracker (it names its device only once configured)

    def on_diagnostics(msg: DiagnosticArray):
        for status in msg.status:
            if status.name.startswith("tracker") and status.hardware_id:
                run.tracker_counts = {kv.key: int(kv.value) for kv in status.values if kv.key.startswith("frames_")}
                diagnostics_seen[0] += 1

    node.create_subscription(TrackedObjectArray, "vos/objects", on_array, PROBE_QOS)
    last_image = [0.0]

    def on_image(msg: Image):
        run.image_stamps.append(stamp_ns(msg.header))
        last_image[0] = time.monotonic()

    node.create_subscription(Image, "image", on_image, PROBE_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    try:
        deadline = time.monotonic() + timeout_s
        while not diagnostics_seen[0] and time.monotonic() < deadline and tracker.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        if not diagnostics_seen[0]:
            raise RuntimeError(f"the tracker did not become active:\n{stop(tracker)}")
        player_args = ["--ros-args", "-p", f"source:={source}", "-p", f"rate_hz:={float(rate_hz)}",
                       "-p", f"num_frames:={frames}", "-p", f"clip_frames:={frames}",
                       "-p", "min_image_subscribers:=2"]  # the tracker and this probe see every frame
        if sequence:
            player_args += ["-p", f"sequence:={sequence}"]
        player = subprocess.Popen(node_command("player_node") + player_args, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        start = time.monotonic()
        # Until the player is done and the tracker has answered the last frame (or had DRAIN_S to).
        while time.monotonic() < deadline and tracker.poll() is None and player.poll() is None:
            executor.spin_once(timeout_sec=0.05)
            if run.image_stamps and (time.monotonic() - last_image[0] > DRAIN_S or (
                    len(run.image_stamps) >= frames and run.image_stamps[-1] in run.arrays)):
                break
        run.wall_s = time.monotonic() - start
        run.frames_published = len(run.image_stamps)
        seen = diagnostics_seen[0]  # one more report, so the counts include the last frame
        spin_deadline = time.monotonic() + 3.0
        while diagnostics_seen[0] == seen and time.monotonic() < spin_deadline:
            executor.spin_once(timeout_sec=0.05)
    finally:
        if player is not None:
            run.player_log = stop(player)
        run.tracker_log = stop(tracker)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vos-ros bench-ros", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[10.0, 30.0], help="input rates in Hz")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--source", default="synthetic", help="synthetic (854x480) or a DAVIS root")
    parser.add_argument("--sequence", default="")
    parser.add_argument("--weights", default="")
    parser.add_argument("--configuration", default="cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    results = []
    for rate in args.rates:
        run = run_pipeline(rate, args.frames, args.source, args.sequence, args.weights, args.configuration)
        results.append(run.summary())
    print(f"{'input Hz':>8} {'published':>9} {'received':>8} {'%':>6} {'out Hz':>7} "
          f"{'lat mean':>9} {'p50':>7} {'p95':>7} {'max':>7}  (ms) {'tracker in':>10} {'dropped':>7}")
    for r in results:
        print(f"{r['input_hz']:8.1f} {r['frames_published']:9d} {r['arrays_received']:8d} {r['received_pct']:6.1f} "
              f"{r['throughput_hz']:7.2f} {r['latency_ms_mean']:9.1f} {r['latency_ms_p50']:7.1f} "
              f"{r['latency_ms_p95']:7.1f} {r['latency_ms_max']:7.1f}       {r['tracker_received']:10d} "
              f"{r['tracker_dropped']:7d}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
