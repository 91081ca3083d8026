#!/usr/bin/env bash
# The main job (README): set up .venv idempotently, then run the node graph of
# launch/tracker.launch.py in one process (player on the embedded synthetic clip
# -> tracker -> overlay recorder), no camera and no shared data needed. It exits
# when the clip has been tracked. Extra arguments go to `tracker_graph`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/tracker_graph" --exit-when-done --wait-for-adaptation --record demo_out/overlay.mp4 "$@"
