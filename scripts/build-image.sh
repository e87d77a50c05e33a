#!/usr/bin/env bash
# Builds the controller image into a Docker daemon with no registry and no network in the build:
# a debootstrap base (cached in .cache/), wheels downloaded on the host, the legacy builder.
# Usage: scripts/build-image.sh [--docker-host unix:///path/to/sock] [--tag NAME:TAG] [--cache-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_system_packages
ensure_venv
exec .venv/bin/python -m testbed.image "$@"
