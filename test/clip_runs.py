"""Running the engine over a synthetic clip while recording each target's status per frame."""

from vos_ros.data.synthetic import SyntheticClip
from vos_ros.inference import TargetStatus
from vos_ros.inference.video import VideoRun, segment_video


def segment_with_statuses(tracker, clip: SyntheticClip) -> tuple[VideoRun, dict[int, list[TargetStatus]]]:
    """The run and, per target id, its status on frames 1..N-1 (statuses[id][i] is frame i + 1)."""
    statuses: dict[int, list[TargetStatus]] = {}

    def record(index, frame, result):
        for t in result.targets:
            statuses.setdefault(t.id, []).append(t.status)

    return segment_video(tracker, clip.frames, clip.labels[0], record), statuses
