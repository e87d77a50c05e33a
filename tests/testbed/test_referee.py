"""The referee sees what happens to the swarm: quorum loss, managers out, tasks, versions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from testbed.control import TestbedHandle
from testbed.probe import wait_for
from testbed.referee import Referee

TESTBED = {"managers": 3, "workers": 1, "with_arm": False}


async def test_referee_samples_at_5hz_and_counts_running_tasks(testbed: TestbedHandle) -> None:
    testbed.create_service("web", replicas=2)
    async with Referee(testbed.manager_hosts) as referee:
        await wait_for(lambda: referee.services.get("web", {}).get("converged"), wait_s=30)
        await asyncio.sleep(2)
    report = referee.report()
    assert report["samples"]["nodesHz"] / len(testbed.manager_hosts) >= 5
    assert report["maxManagersOut"] == 0
    assert report["leaderless"] == []
    web = report["services"]["web"]
    assert web["desired"] == 2 and web["lastRunning"] == 2 and web["minRunningAfterConverged"] == 2
    timeline = report["versions"]["swarm-manager000000"]
    assert timeline[0]["versions"] == ["17.06.0"]


async def test_stopping_2_of_3_managers_is_reported_leaderless(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    async with Referee(testbed.manager_hosts) as referee:
        await asyncio.sleep(0.5)
        await asyncio.gather(
            testbed.afault("power-off", "swarm-manager000001"),
            testbed.afault("power-off", "swarm-manager000002"),
        )
        await wait_for(lambda: referee.leaderless, wait_s=40, every=0.5)
        report = referee.write(tmp_path / "referee.json")
    assert report["maxManagersOut"] == 2
    kinds = {e["kind"] for e in report["leaderless"]}
    assert kinds <= {"no-leader", "deadline", "timeout"} and kinds
    assert all(e["manager"] == "swarm-manager000000" for e in report["leaderless"])
    assert json.loads((tmp_path / "referee.json").read_text())["maxManagersOut"] == 2
