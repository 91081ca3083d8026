#!/usr/bin/env bash
# The main job (README): set up .venv idempotently, then track the embedded
# synthetic clip (no camera, no shared data needed). Extra arguments go to `vos-ros demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/vos-ros" demo "$@"
