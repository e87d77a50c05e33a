"""Refusals on the testbed: nothing is touched (no ARM write, no node changed) and the reason is
a Warning event naming what is wrong."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from controller.snapshot import Snapshot
from testbed.control import TestbedHandle
from testbed.probe import swarm_nodes, wait_for
from tests.e2e.common import arm_writes, declaration, run_once

TESTBED = {"managers": 3, "workers": 2, "reimage_seconds": 0.5}
FIRST = "swarm-manager000000"


def warnings(events: list[dict[str, str]], reason: str) -> list[dict[str, str]]:
    return [e for e in events if e["reason"] == reason and e["type"] == "Warning"]


def nodes_unchanged(testbed: TestbedHandle, before: list[dict[str, object]]) -> bool:
    after = testbed.status()["nodes"]
    return [(n["id"], n["role"], n["availability"]) for n in after] == \
        [(n["id"], n["role"], n["availability"]) for n in before]


def test_snapshot_prints_what_the_planner_reads(testbed: TestbedHandle) -> None:
    env = {k: v for k, v in os.environ.items() if k not in testbed.env}
    proc = subprocess.run(
        ["swarm-upgrade", "snapshot", "--env-file", str(testbed.env_file),
         "--docker-host", testbed.manager_hosts[FIRST]],
        env=env, capture_output=True, timeout=60, check=True)
    raw = json.loads(proc.stdout)
    snapshot = Snapshot.from_dict(raw)
    assert snapshot.self_hostname == FIRST
    assert sorted(n.hostname for n in snapshot.nodes) == sorted(
        [f"swarm-manager00000{i}" for i in range(3)] + [f"swarm-worker00000{i}" for i in range(2)])
    assert [s.name for s in snapshot.scale_sets] == ["swarm-manager-vmss", "swarm-worker-vmss"]
    instance = snapshot.scale_sets[0].instances[0]
    assert instance.image is not None and instance.image.version == "17.06.0"
    assert instance.provisioning_state == "Succeeded" and instance.power_state == "running"
    assert raw["nodes"][0]["engineLabels"]["azure.image.version"] == "17.06.0"
    assert arm_writes(testbed) == []


def test_cross_channel_is_refused(testbed: TestbedHandle, tmp_path: Path) -> None:
    before = testbed.status()["nodes"]
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("edge", "17.07.0-ce-azure1"))
    code, events = run_once(testbed, desired, FIRST)
    refusal = warnings(events, "CrossChannel")[0]  # one per scale set / instance group
    assert "stable" in refusal["message"] and "edge" in refusal["message"]
    assert refusal["object"].startswith("rollout/")
    assert code == 0 and arm_writes(testbed) == []
    assert nodes_unchanged(testbed, before)


def test_version_skip_is_refused(testbed: TestbedHandle, tmp_path: Path) -> None:
    before = testbed.status()["nodes"]
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("stable", "17.06.2-ce-azure1"))
    _, events = run_once(testbed, desired, FIRST)
    refusal = warnings(events, "VersionSkip")[0]
    assert "17.06.0" in refusal["message"]
    assert arm_writes(testbed) == []
    assert nodes_unchanged(testbed, before)


def test_down_nodes_are_refused_and_named(testbed: TestbedHandle, tmp_path: Path) -> None:
    victim = "swarm-worker000001"
    testbed.fault("power-off", victim)

    async def down() -> bool:
        nodes = await swarm_nodes(testbed.manager_hosts[FIRST])
        return any(n["Description"]["Hostname"] == victim and n["Status"]["State"] == "down"
                   for n in nodes)

    asyncio.run(wait_for(down, 30))
    before = testbed.status()["nodes"]
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("stable", "17.06.1-ce-azure1"))
    _, events = run_once(testbed, desired, FIRST)
    refusal = warnings(events, "DownNodes")[0]
    assert victim in refusal["message"]
    assert arm_writes(testbed) == []
    assert nodes_unchanged(testbed, before)
    assert not [e for e in events if e["reason"] in ("NodeDraining", "InstanceReimaging")]
