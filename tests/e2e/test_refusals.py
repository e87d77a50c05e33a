"""Refusals on the testbed: nothing is touched (no ARM write, no node changed) and the reason is
a Warning event naming what is wrong."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import urllib.request
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


def test_a_running_replica_serves_health_and_metrics_and_stops_cleanly(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("edge", "17.07.0-ce-azure1"))
    out = tmp_path / "events.jsonl"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            ["swarm-upgrade", "run", "--desired-file", str(desired), "--metrics-port", "0",
             "--metrics-host", "127.0.0.1", "--docker-host", testbed.manager_hosts[FIRST],
             "--log-format", "text"],
            env=testbed.subprocess_env(), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "CrossChannel" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        text = out.read_text()
        assert "CrossChannel" in text, text
        port = int(re.search(r"/metrics on port (\d+)", text).group(1))  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            health = json.loads(r.read())
        assert health["healthy"] is True and health["leaseHeld"] is True
        assert health["verdict"] == "refused"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'swarm_upgrade_rollout_phase{verdict="refused"} 1.0' in metrics
        assert "swarm_upgrade_nodes_total 5.0" in metrics
        assert 'swarm_upgrade_arm_calls_total{operation="VirtualMachineScaleSetVMs_List"}' \
            in metrics
        assert 'swarm_upgrade_swarm_calls_total{operation="GET /nodes"}' in metrics
        # text format: one readable line per event
        assert all(line[:4].isdigit() for line in text.splitlines() if line.strip())
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code == 0
    lease = asyncio.run(_lease(testbed))
    assert lease["holder"] == ""  # released on SIGTERM: another replica may take it at once
    assert arm_writes(testbed) == []


async def _lease(testbed: TestbedHandle) -> dict[str, object]:
    from controller.adapters.swarm import SwarmClient
    from controller.runtime.store import StateStore

    async with SwarmClient(testbed.manager_hosts[FIRST]) as client:
        return (await StateStore(client).read()).lease.to_dict()
