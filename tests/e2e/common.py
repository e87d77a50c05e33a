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
