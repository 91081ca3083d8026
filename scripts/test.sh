#!/usr/bin/env bash
# The test command (README): set up .venv idempotently, then run the whole suite.
# pytest exits non-zero when it collects no test, so an empty run fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider -q --durations=15 test "$@"
