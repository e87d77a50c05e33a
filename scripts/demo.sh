#!/usr/bin/env bash
# The demo, end to end on this machine: a local Docker for Azure (3 managers, 2 workers and a
# 4-replica sample service, behind a local HTTPS ARM endpoint), the controller (one replica per
# manager, as the global stack service runs it), `swarm-upgrade set-version` to the next release,
# the reconcile events until RolloutSucceeded, the final `swarm-upgrade status` — then everything
# is torn down, also on Ctrl-C or failure.
#
# Environment: DEMO_FROM (17.06.0-ce-azure1), DEMO_TO (17.06.1-ce-azure1), DEMO_TIMEOUT (seconds
# for the rollout, 240), DEMO_KEEP=1 keeps the work dir (events, testbed logs) for a look after.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_system_packages
ensure_venv

FROM=${DEMO_FROM:-17.06.0-ce-azure1}
TO=${DEMO_TO:-17.06.1-ce-azure1}
TIMEOUT=${DEMO_TIMEOUT:-240}
BIN=$PWD/.venv/bin
started=$SECONDS
work=$(mktemp -d /tmp/sud.XXXXXX)   # short: unix socket paths live below it
tb=$work/tb
log=$work/events.log
ip_base="127.$((RANDOM % 100 + 100)).$((RANDOM % 250 + 1))"  # a loopback /24 of our own
replica_pids=()

step() { printf '\n\033[1m== %s\033[0m (%ss)\n' "$*" "$((SECONDS - started))"; }

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  step "tearing down"
  # each supervisor forwards the TERM to its replica (which gives the lease up); 10 s at most
  for pid in "${replica_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0
    for pid in "${replica_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${replica_pids[@]}"; do
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -d "$tb" ]; then "$BIN/swarm-testbed" down --dir "$tb" || code=1; fi
  if [ "${DEMO_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  echo "demo finished in $((SECONDS - started))s (exit $code)"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "1. a local Docker for Azure: 3 managers, 2 workers on $FROM, a 4-replica service 'sample'"
"$BIN/swarm-testbed" up --dir "$tb" --ip-base "$ip_base" --managers 3 --workers 2 \
  --channel stable --version "$FROM" --sample-service 4 >/dev/null
set -a; . "$tb/testbed.env"; set +a     # DOCKER_HOST, AZURE_* (a service principal), the CA

step "2. the controller: one replica per manager, watching the labelled config objects"
# Like the global, manager-only stack service: a replica runs on each manager while it is one (a
# reimage kills it with its node; swarm would start a new task on the rejoined node, so do we).
supervise() {
  local host=$1 sock=$2 gen=0 child=""
  trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait; exit 0' TERM
  while :; do
    if [ "$(docker -H "$sock" info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)" = true ]
    then
      "$BIN/swarm-upgrade" run --docker-host "$sock" --replica-id "$host-r$gen" \
        --desired-config-label swarm-upgrade.desired=true --log-format text --metrics-port -1 \
        --lease-duration 10 --resync 5 --polling-interval 0.2 --swarm-timeout 5 &
      child=$!
      code=0
      { wait "$child"; } 2>/dev/null || code=$?
      child=""
      [ "$code" = 137 ] && echo "$(date -u +%FT%T.000Z) -       replica $host-r$gen went \
down with its node (reimaged); a new one starts once $host is a manager again"
      gen=$((gen + 1))
    fi
    sleep 1
  done
}
: >"$log"
for var in $(grep -o '^DOCKER_HOST_[A-Z0-9_]*' "$tb/testbed.env"); do
  host=$(echo "${var#DOCKER_HOST_}" | tr 'A-Z_' 'a-z-')
  supervise "$host" "${!var}" >>"$log" 2>&1 &
  replica_pids+=($!)
  echo "replica of $host on ${!var}"
done
step "3. the declaration in force: $FROM, a labelled config object (as \`docker stack deploy\` makes it)"
sed "s/^  version: .*/  version: $FROM/" manifests/desired.example.yaml |
  docker config create --label swarm-upgrade.desired=true swarm-upgrade-desired-1 - >/dev/null
echo "swarm-upgrade-desired-1: $FROM"

step "4. swarm-upgrade set-version $TO"
"$BIN/swarm-upgrade" set-version "$TO"

step "5. the reconcile events, until RolloutSucceeded (at most ${TIMEOUT}s)"
shown=0  # from the replicas' first event
deadline=$((SECONDS + TIMEOUT))
while :; do
  total=$(wc -l <"$log")
  if [ "$total" -gt "$shown" ]; then sed -n "$((shown + 1)),${total}p" "$log"; shown=$total; fi
  if grep -q " RolloutSucceeded " "$log"; then break; fi
  if grep -qE " (ControllerHalted|NodeTimeout|NodeLost) " "$log"; then
    echo "FAILED: the rollout halted (see the Warning events above)"; exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "FAILED: no RolloutSucceeded within ${TIMEOUT}s"; exit 1
  fi
  sleep 0.5
done

step "6. swarm-upgrade status"
"$BIN/swarm-upgrade" status --events 8
