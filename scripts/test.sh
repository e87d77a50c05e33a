#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: installs the system packages the testbed
# needs (Debian's docker.io, busybox-static, ...), a virtualenv with the project and its test
# extra, then ruff, mypy (strict on controller/), the import contract of the pure core, and pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k planner`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_system_packages
ensure_venv
# Tests start the console scripts (swarm-upgrade, swarm-testbed) as subprocesses, as a user would.
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy (strict on controller/)"
.venv/bin/mypy
echo "== import contracts"
.venv/bin/lint-imports
echo "== pytest"
# The e2e tests start `swarm-upgrade` (and `swarm-testbed`) as subprocesses: the venv's.
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/pytest "$@"
