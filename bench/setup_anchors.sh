#!/usr/bin/env bash
# Create bench/.venv-anchors and bench/.venv-pandas with the pinned anchor tools.
# Never installs into Conveyor's own venv. Writes status.json in each venv, naming any anchor
# that could not be installed and why; bench/run.py reports those rows instead of failing.
# Options: --force (recreate), --relock (resolve afresh, rewrite anchors/lock*.txt),
#          --python PATH (a Python 3.11 to build the venvs with).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${BENCH_ANCHOR_PYTHON:-$(command -v python3.11 || command -v python3)}"
exec "$py" "$here/setup_anchors.py" --python "$py" "$@"
