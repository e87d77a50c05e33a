"""The controller's state in the swarm's raft store: the lease and the rollout progress.

One Docker config object `swarm-upgrade-state`; its data is a fixed description, its labels
`swarm-upgrade.lease` and `swarm-upgrade.progress` hold JSON. Every write is a compare-and-swap
on the object's Version.Index (a stale write is refused with "update out of sequence"), so
acquiring the lease is a CAS, and a progress write made with the version at which we were seen
holding the lease is fenced: a replica that lost the lease fails its next write.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from controller.adapters.swarm import Conflict, NotFound
from controller.runtime.ports import SwarmPort

STATE_NAME = "swarm-upgrade-state"
LEASE_LABEL = "swarm-upgrade.lease"
PROGRESS_LABEL = "swarm-upgrade.progress"
STATE_DATA = b"State of swarm-upgrade-controller: lease and progress live in the labels.\n"


def new_replica_id(hostname: str | None = None) -> str:
    """hostname + pid + random: unique per controller process."""
    return f"{hostname or socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Lease:
    """Who may act. `holder` empty means free; `avoid_node` is a hand-over: its replicas wait."""

    holder: str = ""
    node: str = ""
    acquired: float = 0.0
    renewed: float = 0.0
    expires: float = 0.0
    avoid_node: str = ""

    def free_for(self, hostname: str, now: float) -> bool:
        """True if a replica on `hostname` may take the lease now."""
        if hostname and hostname == self.avoid_node and self.holder == "":
            return False
        return self.holder == "" or self.expires <= now

    def held_by(self, replica: str, now: float) -> bool:
        return self.holder == replica and self.expires > now

    def to_dict(self) -> dict[str, Any]:
        return {
            "holder": self.holder, "node": self.node, "acquired": self.acquired,
            "renewed": self.renewed, "expires": self.expires, "avoidNode": self.avoid_node,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Lease:
        return cls(
            holder=str(raw.get("holder", "")), node=str(raw.get("node", "")),
            acquired=float(raw.get("acquired", 0.0)), renewed=float(raw.get("renewed", 0.0)),
            expires=float(raw.get("expires", 0.0)), avoid_node=str(raw.get("avoidNode", "")),
        )


@dataclass(frozen=True)
class State:
    """One read of the state object: its id, version index, spec, lease and progress."""

    config_id: str
    version: int
    spec: dict[str, Any]
    lease: Lease
    progress: dict[str, Any] | None


class LeaseLost(Exception):
    """The lease is no longer ours (expired, taken or handed over); stop acting."""


def _parse(config: dict[str, Any]) -> State:
    labels = (config.get("Spec") or {}).get("Labels") or {}
    try:
        lease = Lease.from_dict(json.loads(labels.get(LEASE_LABEL) or "{}"))
    except (ValueError, TypeError):
        lease = Lease()
    raw_progress = labels.get(PROGRESS_LABEL)
    progress = json.loads(raw_progress) if raw_progress else None
    return State(
        config_id=str(config["ID"]), version=int(config["Version"]["Index"]),
        spec=dict(config["Spec"]), lease=lease, progress=progress,
    )


class StateStore:
    """Reads and compare-and-swaps the state object through the swarm adapter."""

    def __init__(self, client: SwarmPort, name: str = STATE_NAME,
                 clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.name = name
        self.clock = clock

    def _now(self, passed: float) -> float:
        """The time to judge a lease by, taken AFTER the read: a read that blocked (a busy or
        leaderless swarm answers after seconds) must not make an expired lease look held, nor
        write an expiry that is already past when it lands."""
        return max(passed, self.clock()) if self.clock is not None else passed

    @staticmethod
    def _not_ours(lease: Lease, replica: str) -> LeaseLost:
        if lease.holder == replica:
            return LeaseLost("our lease expired before it was renewed (the swarm answered late)")
        return LeaseLost(f"lease held by {lease.holder or 'nobody'}")

    async def read(self) -> State:
        """The current state, creating the object if it does not exist yet."""
        for _ in range(3):
            found = [c for c in await self.client.configs(name=self.name)
                     if (c.get("Spec") or {}).get("Name") == self.name]
            if found:
                return _parse(found[0])
            try:
                await self.client.create_config(self.name, STATE_DATA, {})
            except Conflict:
                pass  # another replica created it first
        raise NotFound(404, f"config {self.name} neither found nor created")

    async def peek(self) -> State | None:
        """The current state without creating anything (read-only commands); None if absent."""
        found = [c for c in await self.client.configs(name=self.name)
                 if (c.get("Spec") or {}).get("Name") == self.name]
        return _parse(found[0]) if found else None

    async def write(self, state: State, lease: Lease, progress: dict[str, Any] | None) -> State:
        """CAS the labels against `state.version`; returns the re-read state. Raises Conflict."""
        labels = dict(state.spec.get("Labels") or {})
        labels[LEASE_LABEL] = json.dumps(lease.to_dict(), sort_keys=True)
        if progress is None:
            labels.pop(PROGRESS_LABEL, None)
        else:
            labels[PROGRESS_LABEL] = json.dumps(progress, sort_keys=True)
        await self.client.update_config_labels(state.config_id, state.version, state.spec, labels)
        return _parse(await self.client.config(state.config_id))

    async def acquire(
        self, replica: str, hostname: str, now: float, duration: float
    ) -> tuple[State, bool]:
        """Take the lease if it is ours, free or expired. Returns (state, we hold it)."""
        state = await self.read()
        now = self._now(now)
        lease = state.lease
        if lease.held_by(replica, now):
            return state, True
        if not lease.free_for(hostname, now):
            return state, False
        new = Lease(holder=replica, node=hostname, acquired=now, renewed=now,
                    expires=now + duration)
        try:
            state = await self.write(state, new, state.progress)
        except Conflict:
            return await self.read(), False
        return state, state.lease.holder == replica

    async def renew(self, replica: str, now: float, duration: float) -> State:
        """Extend our lease; LeaseLost if it is not ours any more."""
        state = await self.read()
        now = self._now(now)
        if not state.lease.held_by(replica, now):
            raise self._not_ours(state.lease, replica)
        lease = replace(state.lease, renewed=now, expires=now + duration)
        try:
            return await self.write(state, lease, state.progress)
        except Conflict as err:
            raise LeaseLost("lease changed while renewing") from err

    async def save_progress(
        self, replica: str, progress: dict[str, Any] | None, now: float, duration: float
    ) -> State:
        """Write progress fenced by the lease (and renew it). LeaseLost if not ours."""
        for _ in range(3):
            state = await self.read()
            now = self._now(now)
            if not state.lease.held_by(replica, now):
                raise self._not_ours(state.lease, replica)
            lease = replace(state.lease, renewed=now, expires=now + duration)
            try:
                return await self.write(state, lease, progress)
            except Conflict:
                continue  # our own renewal raced us; re-read and check the lease again
        raise LeaseLost("progress write kept losing the compare-and-swap")

    async def hand_over(self, replica: str, hostname: str, now: float) -> State:
        """Give the lease up so that a replica on another manager continues."""
        state = await self.read()
        now = self._now(now)
        if not state.lease.held_by(replica, now):
            raise self._not_ours(state.lease, replica)
        lease = Lease(holder="", node="", renewed=now, expires=now, avoid_node=hostname)
        return await self.write(state, lease, state.progress)

    async def release(self, replica: str, now: float) -> None:
        """Give the lease up (shutdown) if we hold it; anybody may take it at once."""
        state = await self.read()
        if state.lease.holder == replica:
            try:
                await self.write(state, Lease(renewed=now, expires=now), state.progress)
            except Conflict:
                pass
