"""The whole rollout on the testbed: 3 managers + 2 workers, 17.06.0 → 17.06.1, three controller
replicas (one per manager, each on its own manager's socket, supervised like a global service),
a 4-replica sample service, the referee watching — and the active replica killed with SIGKILL
right after it asked ARM for a reimage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from testbed.control import TestbedHandle
from testbed.probe import docker_get, wait_for
from testbed.referee import Referee
from tests.e2e.common import assert_self_last, declaration
from tests.e2e.replicas import Replicas
from tests.reliability import invariants

TESTBED = {"managers": 3, "workers": 2, "reimage_seconds": 0.5}
TARGET = "17.06.1"
ROLLOUT_TIMEOUT = 300


def reasons(events: list[dict[str, Any]], reason: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("reason") == reason]


def holder(events: list[dict[str, Any]]) -> str:
    """Hostname of the replica that acquired the lease last (and has not given it up)."""
    last = ""
    for e in events:
        if e.get("reason") == "LeaseAcquired":
            last = e["object"].removeprefix("node/")
        elif e.get("reason") in ("LeaseHandedOver", "LeaseLost"):
            last = ""
    return last


async def running_tasks(docker_host: str, service: str) -> int:
    tasks = await docker_get(docker_host, f'/tasks?filters={{"service":["{service}"]}}')
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


async def test_rolling_upgrade_with_three_replicas_and_a_crash(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    hosts = testbed.manager_hosts
    first = hosts["swarm-manager000000"]
    testbed.create_service("sample", 4)
    await wait_for(lambda: _four(first), 60)
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("stable", "17.06.0-ce-azure1"))  # what runs: nothing to do
    env = {k: v for k, v in os.environ.items() if k not in testbed.env}
    replicas = Replicas(hosts, env, [
        "--env-file", str(testbed.env_file), "--desired-file", str(desired),
        "--metrics-port", "-1", "--lease-duration", "5", "--resync", "5",
        "--polling-interval", "0.2", "--swarm-timeout", "5", "--halt-confirm", "20",
    ], tmp_path)
    referee = Referee(hosts)
    await referee.start()
    killed = ""
    try:
        replicas.start()
        await replicas.wait_for(lambda ev: bool(reasons(ev, "UpToDate")), 60, "UpToDate")
        # The operator edits the declaration: the replicas pick it up without a restart.
        desired.write_text(declaration("stable", f"{TARGET}-ce-azure1"))
        events = await replicas.wait_for(
            lambda ev: bool(reasons(ev, "InstanceReimaging")), 120, "the first reimage")
        killed = holder(events)
        assert killed, "somebody holds the lease while reimaging"
        replicas.kill9(killed)  # the in-flight reimage is tracked only in that process
        events = await replicas.wait_for(
            lambda ev: bool(reasons(ev, "RolloutSucceeded")), ROLLOUT_TIMEOUT,
            "RolloutSucceeded")
    finally:
        replicas.stop()
        await referee.stop()
        report = referee.report()
        (tmp_path / "referee.json").write_text(json.dumps(report, indent=2))
        print("referee:", json.dumps({k: report[k] for k in
                                      ("maxManagersOut", "leaderless", "services")}))

    assert report["services"]["sample"]["minRunning"] >= 1

    # Every instance runs the target, every node entry is the new one, nothing left over.
    status = testbed.status()
    assert sorted(i["image"]["version"] for i in status["instances"]) == [TARGET] * 5
    nodes = status["nodes"]
    assert len(nodes) == 5 and len({n["hostname"] for n in nodes}) == 5
    assert all(n["state"] == "ready" and n["version"] == TARGET for n in nodes)
    assert sorted(n["role"] for n in nodes) == ["manager"] * 3 + ["worker"] * 2
    assert all(n["availability"] == "active" for n in nodes)

    # ARM: exactly one manual upgrade per instance (5 requests for 5 distinct instances).
    upgrades = [r for r in testbed.arm_requests()
                if r["operation"] == "VirtualMachineScaleSets_UpdateInstances"
                and r["status"] < 300]
    assert len(upgrades) == 5, upgrades

    # The events tell the whole story.
    upgraded = [e["object"].removeprefix("node/") for e in reasons(events, "NodeUpgraded")]
    assert sorted(upgraded) == sorted(n["hostname"] for n in nodes)
    for step in ("NodeDrained", "InstanceReimaging", "InstanceReimaged", "NodeRejoined",
                 "OldNodeRemoved"):
        assert len({e["object"] for e in reasons(events, step)}) == 5, step
    assert len({e["object"] for e in reasons(events, "NodeDemoted")}) == 3
    assert not reasons(events[:events.index(reasons(events, "RolloutStarted")[0])],
                       "NodeDraining")  # nothing was touched while the declaration said 17.06.0
    started = reasons(events, "RolloutStarted")
    assert len(started) == 1
    for scale_set in ("swarm-manager-vmss", "swarm-worker-vmss"):
        assert (f"https://portal.azure.com/#resource/subscriptions/"
                f"{testbed.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/"
                f"{testbed.env['AZURE_RESOURCE_GROUP']}/providers/Microsoft.Compute/"
                f"virtualMachineScaleSets/{scale_set}/instances") in started[0]["message"]
    # Nobody touches the node its own replica runs on; the self node goes last (a handover only
    # once every other node is upgraded, to another manager).
    assert_self_last(events, {n["hostname"] for n in nodes})
    succeeded = reasons(events, "RolloutSucceeded")[0]
    assert "known_hosts" in succeeded["message"]
    for manager in hosts:
        assert manager in succeeded["message"]
    # The crash: the killed replica's reimage was not asked again by whoever resumed (above: one
    # UpdateInstances per instance).
    assert killed
    for e in events:
        assert set(e) >= {"time", "type", "reason", "object", "message", "rollout", "version"}, e
    # The referee: never more than one manager out, never leaderless — except for the measured
    # artefacts of moving leadership (docs/architecture.md, "What the referee sees"), judged by
    # the same code as the reliability campaign.
    verdict = invariants.referee(report, events)
    assert not verdict.violations, verdict.violations


async def _four(docker_host: str) -> bool:
    return await running_tasks(docker_host, "sample") == 4
