"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from testbed.control import TestbedHandle

WRITES = ("VirtualMachineScaleSets_Update", "VirtualMachineScaleSets_UpdateInstances")


def declaration(channel: str, version: str, extra: str = "") -> str:
    return (
        "apiVersion: swarm-upgrade.io/v1alpha1\nkind: SwarmUpgrade\nmetadata:\n  name: e2e\n"
        f"spec:\n  channel: {channel}\n  version: {version}\n"
        "  strategy:\n    drainTimeout: 2m\n    nodeReadyTimeout: 3m\n" + extra
    )


def run_once(testbed: TestbedHandle, desired: Path, host: str) -> tuple[int, list[dict[str, Any]]]:
    """`swarm-upgrade run --once` against the manager `host`; (exit code, events)."""
    proc = subprocess.run(
        ["swarm-upgrade", "run", "--once", "--desired-file", str(desired),
         "--docker-host", testbed.manager_hosts[host], "--polling-interval", "0.2"],
        env=testbed.subprocess_env(), capture_output=True, timeout=120, check=False)
    events = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    return proc.returncode, events


def arm_writes(testbed: TestbedHandle) -> list[dict[str, Any]]:
    """Every ARM request that could have changed a scale set or an instance."""
    return [r for r in testbed.arm_requests()
            if r["kind"] == "write" and not r["operation"].startswith("Identity_")]


def assert_self_last(events: list[dict[str, Any]], hostnames: set[str]) -> None:
    """The seed's "the manager the upgrade runs from goes last", for replicated controllers.

    No replica drains, demotes or reimages the node it runs on; a replica hands the lease over
    only once every other node is upgraded, and to a replica on another manager. Which node is
    upgraded last depends on who holds the lease then: if the holder crashed (or, on a stalled
    machine, its lease expired) and a replica on an already-upgraded node took over, nobody's own
    node is left and the rollout simply ends with the order's last node — a worker.
    """
    for e in events:
        if e.get("reason") in ("NodeDraining", "NodeDemoted", "InstanceReimaging"):
            # `replica` is "<hostname>-<generation or container id>"
            assert not e["replica"].startswith(e["object"].removeprefix("node/") + "-"), e
    for at, handover in enumerate(events):
        if handover.get("reason") != "LeaseHandedOver":
            continue
        own = handover["object"].removeprefix("node/")
        done = {e["object"].removeprefix("node/") for e in events[:at]
                if e.get("reason") == "NodeUpgraded"}
        assert done >= hostnames - {own}, (handover, sorted(done))
        taken = [e for e in events[at:] if e.get("reason") == "LeaseAcquired"]
        assert taken and taken[0]["object"] != handover["object"], handover
