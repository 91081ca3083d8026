#!/usr/bin/env bash
# The main job (README): set up .venv idempotently, then run the node graph of
# launch/tracker.launch.py in one process (player on the embedded synthetic clip
# -> tracker -> overlay recorder), no camera and no shared data needed. It exits
# when the clip has been tracked. Extra arguments go to `tracker_graph`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# 2 Hz: on 2 CPU cores the tracker steps three 854x480 targets at about 2.5 fps (docs/experiments.md,
# "Demo scene"); a camera rate it cannot keep drops frames (newest-frame policy).
exec "$ROOT/.venv/bin/tracker_graph" --exit-when-done --wait-for-adaptation --record demo_out/overlay.mp4 \
  --ros-args -p rate_hz:=2.0 "$@"
