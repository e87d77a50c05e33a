"""The runtime asks the demote rule again right before the call, on a real 3-manager swarm.

swarm-hang (reliability campaign): a manager demoted while another one hung left the swarm
without a leader. The planner waits `managerSettle` between two healthy observations; the
executor looks once more at a fresh node list right before it demotes (a manager that went out
after the pass's observation) and does not demote while another manager is out.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from types import SimpleNamespace
from typing import Any

from controller import decision as d
from controller.adapters.swarm import SwarmClient
from controller.decision import Action
from controller.runtime.events import EventSink
from controller.runtime.executor import Executor
from controller.runtime.health import Metrics
from tests.runtime.localswarm import LocalSwarm


async def _reachability(client: SwarmClient, node_id: str, wanted: str, wait_s: float) -> float:
    """Seconds until the leader reports `node_id` with `wanted` reachability (and Ready when
    reachable); AssertionError after `wait_s`."""
    start = time.monotonic()
    while time.monotonic() - start < wait_s:
        node = await client.node(node_id)
        reach = (node.get("ManagerStatus") or {}).get("Reachability")
        state = (node.get("Status") or {}).get("State")
        if reach == wanted and (wanted != "reachable" or state == "ready"):
            return time.monotonic() - start
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node_id} not {wanted} within {wait_s:g}s")


async def test_no_demote_while_another_manager_is_hung_right_before_the_call(
    swarm3: LocalSwarm,
) -> None:
    by_host = {dm.hostname: dm for dm in swarm3.daemons}
    probe = SwarmClient(swarm3.daemons[0].docker_host, timeout=5)
    try:
        nodes = await probe.nodes()
    finally:
        await probe.close()
    leader = next(n for n in nodes if (n.get("ManagerStatus") or {}).get("Leader"))
    followers = sorted((n for n in nodes if n is not leader),
                       key=lambda n: n["Description"]["Hostname"])
    target, hung = followers
    client = SwarmClient(by_host[leader["Description"]["Hostname"]].docker_host, timeout=5)
    out = io.StringIO()
    azure: Any = SimpleNamespace()  # a demote does not touch ARM
    executor = Executor(client, azure, EventSink(out), Metrics(), lambda: None)
    demote = Action(d.DEMOTE, target["Description"]["Hostname"], node_id=target["ID"])
    frozen = by_host[hung["Description"]["Hostname"]].proc
    assert frozen is not None
    try:
        os.killpg(frozen.pid, signal.SIGSTOP)
        try:
            await _reachability(client, hung["ID"], "unreachable", 30)
            await executor.run(demote)
            assert (await client.node(target["ID"]))["Spec"]["Role"] == "manager"
            events = [json.loads(line) for line in out.getvalue().splitlines()]
            assert [e["reason"] for e in events] == [d.MANAGER_UNREACHABLE], events
            assert hung["Description"]["Hostname"] in events[0]["message"]
        finally:
            os.killpg(frozen.pid, signal.SIGCONT)
        await _reachability(client, hung["ID"], "reachable", 60)
        await executor.run(demote)  # everybody back: it demotes
        assert (await client.node(target["ID"]))["Spec"]["Role"] == "worker"
        assert "NodeDemoted" in out.getvalue()
    finally:
        await client.close()
