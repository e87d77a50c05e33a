"""Lease and progress in the swarm's raft store, against a real swarm."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from controller.adapters.swarm import SwarmClient
from controller.runtime.store import LeaseLost, StateStore, new_replica_id
from tests.runtime.localswarm import LocalSwarm


@pytest.fixture
async def store(swarm1: LocalSwarm, request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    async with SwarmClient(swarm1.daemons[0].docker_host, timeout=5) as client:
        store = StateStore(client, name=f"state-{request.node.name[:40]}")
        yield store
        for config in await client.configs(name=store.name):
            await client.remove_config(config["ID"])


async def test_first_read_creates_the_state_object(store: StateStore) -> None:
    state = await store.read()
    again = await store.read()
    assert state.config_id == again.config_id and state.progress is None
    assert state.lease.holder == ""


async def test_only_one_replica_holds_the_lease(store: StateStore) -> None:
    now = time.time()
    a, b = new_replica_id("m0"), new_replica_id("m1")
    _, got_a = await store.acquire(a, "m0", now, 15)
    state, got_b = await store.acquire(b, "m1", now, 15)
    assert got_a and not got_b
    assert state.lease.holder == a and state.lease.node == "m0"
    _, again = await store.acquire(a, "m0", now + 1, 15)  # the holder keeps it
    assert again


async def test_an_expired_lease_is_taken_and_fences_the_old_holder(store: StateStore) -> None:
    now = time.time()
    a, b = new_replica_id("m0"), new_replica_id("m1")
    assert (await store.acquire(a, "m0", now, 5))[1]
    await store.save_progress(a, {"rolloutId": "r1", "step": 1}, now + 1, 5)
    state, got_b = await store.acquire(b, "m1", now + 7, 5)  # a's lease ran out at now+6
    assert got_b and state.progress == {"rolloutId": "r1", "step": 1}
    with pytest.raises(LeaseLost):
        await store.save_progress(a, {"rolloutId": "r1", "step": 2}, now + 7, 5)
    with pytest.raises(LeaseLost):
        await store.renew(a, now + 7, 5)
    assert (await store.read()).progress == {"rolloutId": "r1", "step": 1}


async def test_a_stale_write_loses_the_compare_and_swap(store: StateStore) -> None:
    now = time.time()
    a, b = new_replica_id("m0"), new_replica_id("m1")
    before = await store.read()
    assert (await store.acquire(a, "m0", now, 15))[1]
    # b decided from the old read; its write against the old version is refused
    from controller.adapters.swarm import Conflict
    from controller.runtime.store import Lease

    with pytest.raises(Conflict, match="update out of sequence"):
        await store.write(before, Lease(holder=b, node="m1", expires=now + 15), None)
    assert (await store.read()).lease.holder == a


async def test_renewal_extends_the_lease(store: StateStore) -> None:
    now = time.time()
    a = new_replica_id("m0")
    assert (await store.acquire(a, "m0", now, 5))[1]
    state = await store.renew(a, now + 4, 5)
    assert state.lease.expires == pytest.approx(now + 9)
    _, got = await store.acquire(new_replica_id("m1"), "m1", now + 7, 5)
    assert not got


async def test_hand_over_lets_another_manager_continue(store: StateStore) -> None:
    now = time.time()
    a, a2, b = new_replica_id("m0"), new_replica_id("m0"), new_replica_id("m1")
    assert (await store.acquire(a, "m0", now, 15))[1]
    await store.save_progress(a, {"next": "m0"}, now, 15)
    state = await store.hand_over(a, "m0", now + 1)
    assert state.lease.holder == "" and state.lease.avoid_node == "m0"
    assert not (await store.acquire(a2, "m0", now + 2, 15))[1]  # nobody on m0 takes it back
    state, got = await store.acquire(b, "m1", now + 2, 15)
    assert got and state.lease.avoid_node == "" and state.progress == {"next": "m0"}


async def test_release_frees_the_lease_at_once(store: StateStore) -> None:
    now = time.time()
    a, b = new_replica_id("m0"), new_replica_id("m0")
    assert (await store.acquire(a, "m0", now, 15))[1]
    await store.release(a, now + 1)
    assert (await store.acquire(b, "m0", now + 1, 15))[1]


async def test_a_late_answer_does_not_make_an_expired_lease_look_held(store: StateStore) -> None:
    """Found by the campaign (swarm-hang, quorum-lost): a pass read its clock, then the swarm
    answered seconds later; judged by the stale time, an expired lease looked held (and a new
    one was written already expired, so another replica took it at once: two holders). With
    the store's clock the lease is judged after the read; losing our own expired lease says so
    instead of 'lease held by <this replica>'."""
    clock = [time.time()]
    late = StateStore(store.client, name=store.name, clock=lambda: clock[0])
    a, b = new_replica_id("m0"), new_replica_id("m1")
    start = clock[0]
    assert (await late.acquire(a, "m0", start, 5))[1]
    clock[0] = start + 6  # the answer came 6 s after the pass read its clock
    with pytest.raises(LeaseLost, match="our lease expired"):
        await late.save_progress(a, {"step": 1}, start + 1, 5)
    state, got = await late.acquire(b, "m1", start + 1, 5)  # b's stale time: judged at +6
    assert got and state.lease.expires == pytest.approx(start + 11)
    with pytest.raises(LeaseLost, match="lease held by " + b):
        await late.renew(a, start + 1, 5)
