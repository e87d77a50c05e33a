"""The swarm adapter against a real dockerd swarm: shapes, CAS conflicts, timeouts, events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator

import pytest

from controller.adapters.swarm import (
    Conflict,
    NotFound,
    SwarmClient,
    SwarmUnavailable,
    observe_nodes,
)
from tests.runtime.localswarm import LocalSwarm


@pytest.fixture
async def client(swarm1: LocalSwarm) -> AsyncIterator[SwarmClient]:
    async with SwarmClient(swarm1.daemons[0].docker_host, timeout=5) as c:
        yield c


async def test_info_names_self_and_manager(client: SwarmClient, swarm1: LocalSwarm) -> None:
    info = await client.info()
    assert info.hostname == swarm1.daemons[0].hostname
    assert info.is_manager and info.node_id


async def test_nodes_in_snapshot_shape(client: SwarmClient, swarm1: LocalSwarm) -> None:
    nodes = await observe_nodes(client)
    assert len(nodes) == 1
    node = nodes[0]
    assert node["hostname"] == swarm1.daemons[0].hostname
    assert node["role"] == "manager" and node["leader"] is True
    assert node["state"] == "ready" and node["availability"] == "active"
    assert node["reachability"] == "reachable"
    assert abs(node["createdAt"] - time.time()) < 600
    assert node["runningTasks"] == 0


async def test_node_patch_drains_and_reactivates(client: SwarmClient) -> None:
    node_id = (await client.info()).node_id
    assert await client.patch_node(node_id, Availability="drain") is True
    assert (await client.node(node_id))["Spec"]["Availability"] == "drain"
    assert await client.patch_node(node_id, Availability="drain") is False  # idempotent
    assert await client.patch_node(node_id, Availability="active") is True


async def test_stale_node_version_is_a_conflict(client: SwarmClient) -> None:
    node = await client.node((await client.info()).node_id)
    version = int(node["Version"]["Index"])
    await client.update_node(node["ID"], version, node["Spec"])
    with pytest.raises(Conflict, match="update out of sequence"):
        await client.update_node(node["ID"], version, node["Spec"])


async def test_config_label_update_is_compare_and_swap(client: SwarmClient) -> None:
    config_id = await client.create_config("cas-probe", b"x", {"a": "1"})
    try:
        config = await client.config(config_id)
        version = int(config["Version"]["Index"])
        await client.update_config_labels(config_id, version, config["Spec"], {"a": "2"})
        with pytest.raises(Conflict, match="update out of sequence"):
            await client.update_config_labels(config_id, version, config["Spec"], {"a": "3"})
        assert (await client.config(config_id))["Spec"]["Labels"] == {"a": "2"}
        with pytest.raises(Conflict):
            await client.create_config("cas-probe", b"y", {})
    finally:
        await client.remove_config(config_id)
    with pytest.raises(NotFound):
        await client.config(config_id)


async def test_config_events_arrive(client: SwarmClient) -> None:
    seen: list[dict[str, object]] = []

    async def watch() -> None:
        async for event in client.events({"type": ["config"]}):
            seen.append(event)
            return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    config_id = await client.create_config("event-probe", b"x", {})
    await asyncio.wait_for(watcher, 10)
    await client.remove_config(config_id)
    assert seen[0]["Type"] == "config" and seen[0]["Action"] == "create"


async def test_a_daemon_that_never_answers_times_out() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = os.path.join(tmp, "hang.sock")
        held: list[asyncio.StreamWriter] = []

        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            held.append(w)  # read nothing, answer nothing

        server = await asyncio.start_unix_server(accept, path)
        try:
            async with SwarmClient(f"unix://{path}", timeout=0.5) as hung:
                started = time.monotonic()
                with pytest.raises(SwarmUnavailable, match="no answer"):
                    await hung.nodes()
                assert time.monotonic() - started < 3
        finally:
            for w in held:
                w.close()
            server.close()


async def test_unreachable_daemon_is_unavailable() -> None:
    async with SwarmClient("unix:///tmp/does-not-exist.sock", timeout=1) as gone:
        with pytest.raises(SwarmUnavailable):
            await gone.info()


async def test_leaderless_swarm_is_unavailable_not_hanging(swarm3: LocalSwarm) -> None:
    survivor = swarm3.daemons[0]
    for d in swarm3.daemons[1:]:
        with contextlib.suppress(ProcessLookupError):
            swarm3.stop_daemon(d, signal.SIGKILL)
    async with SwarmClient(survivor.docker_host, timeout=2) as c:
        refused = 0
        deadline = time.monotonic() + 30
        while refused < 2 and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                await c.nodes()  # the leader notices the lost quorum after an election timeout
            except SwarmUnavailable:
                refused += 1
            assert time.monotonic() - started < 4
            await asyncio.sleep(0.2)
        assert refused == 2
        started = time.monotonic()
        with contextlib.suppress(SwarmUnavailable):  # /info may block during the election
            assert (await c.info()).hostname == survivor.hostname
        assert time.monotonic() - started < 4
