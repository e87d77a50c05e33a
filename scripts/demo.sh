#!/usr/bin/env bash
# The main job: until the testbed demo lands, explain a rollout offline from a bundled snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv
exec .venv/bin/swarm-upgrade plan --desired manifests/desired.example.yaml \
  --snapshot tests/data/snapshot-3m2w.json --output text
