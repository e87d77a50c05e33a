"""Item 1: SIGKILL the active replica at points spread over a rollout, driven by its own events.

A crash point is (node, phase). The driver watches the replicas' events and kills the replica
that acts the moment the phase shows up:

- `drain`: `NodeDraining` of the node (the drain was just sent)
- `demote`: `NodeDemoted` of the node (managers)
- `reimage`: `InstanceReimaging` of the node (ARM accepted the manual upgrade; the LRO is only
  tracked in the killed process)
- `rejoin`: 1 s after `InstanceReimaging`, while no `NodeRejoined` yet (waiting for the rejoin)
- `remove`: `NodeRejoined` of the node (the old entry's removal is the next action)
- `handover-from`: `LeaseHandedOver` (the replica that hands over)
- `handover`: the first `LeaseAcquired` after `LeaseHandedOver` (the replica that takes over)

The supervisor starts a new replica on that manager (as swarm would) and the others compete for
the lease when it expires. Each kill is recorded with the phase the persisted progress showed
for the node right after it (what the next holder resumed from).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from tests.reliability import invariants as inv
from tests.reliability.harness import Run, holder
from tests.reliability.rollout import Allowances

MANAGER_PHASES = ("drain", "demote", "reimage", "rejoin", "remove")
WORKER_PHASES = ("drain", "reimage", "rejoin", "remove")
LEASE_PHASES = ("handover-from", "handover")
TRIGGER = {"drain": "NodeDraining", "demote": "NodeDemoted", "reimage": "InstanceReimaging",
           "remove": "NodeRejoined"}
REJOIN_DELAY = 1.0


def all_points(managers: int = 3, workers: int = 2) -> list[tuple[str, str]]:
    """Every (node, phase) of a rollout of that cluster, plus the lease hand-over."""
    points = [(f"swarm-manager{i:06d}", p) for i in range(managers) for p in MANAGER_PHASES]
    points += [(f"swarm-worker{i:06d}", p) for i in range(workers) for p in WORKER_PHASES]
    points += [("*", p) for p in LEASE_PHASES]
    return points


def schedule(runs: int, seed: int, per_run: int, managers: int = 3,
             workers: int = 2) -> list[list[tuple[str, str]]]:
    """`runs` lists of `per_run` crash points: a seeded shuffle of all points, dealt in turn,
    so that every point is used before any is used twice."""
    rng = random.Random(seed)
    points = all_points(managers, workers)
    deck: list[tuple[str, str]] = []
    out: list[list[tuple[str, str]]] = []
    for _ in range(runs):
        chosen: list[tuple[str, str]] = []
        while len(chosen) < min(per_run, len(points)):
            if not deck:
                deck = list(points)
                rng.shuffle(deck)
            point = deck.pop()
            if point not in chosen:
                chosen.append(point)
        out.append(chosen)
    return out


def _victim(point: tuple[str, str], events: list[dict[str, Any]],
            seen: dict[tuple[str, str], float]) -> tuple[str, str] | None:
    """(replica label to kill, the event that decided it) if the point is due, else None."""
    node, phase = point
    obj = f"node/{node}"
    if phase in TRIGGER:
        hits = inv.reasons(events, TRIGGER[phase], obj)
        return (str(hits[0].get("replica", "")), TRIGGER[phase]) if hits else None
    if phase == "rejoin":
        if inv.reasons(events, "NodeRejoined", obj):
            return ("", "missed: NodeRejoined came first")
        if not inv.reasons(events, "InstanceReimaging", obj):
            return None
        first = seen.setdefault(point, time.monotonic())
        if time.monotonic() - first < REJOIN_DELAY:
            return None
        return (holder(events), "waiting for NodeRejoined")
    handed = inv.reasons(events, "LeaseHandedOver")
    if not handed:
        return None
    if phase == "handover-from":
        return (str(handed[0].get("replica", "")), "LeaseHandedOver")
    after = events[events.index(handed[0]):]
    taken = inv.reasons(after, "LeaseAcquired")
    return (str(taken[0].get("replica", "")), "LeaseAcquired after hand-over") if taken else None


async def drive(run: Run, points: list[tuple[str, str]], allow: Allowances) -> None:
    """Kill at every point as it comes; record each kill in allow.details["crashes"]."""
    pending = list(points)
    seen: dict[tuple[str, str], float] = {}
    records: list[dict[str, Any]] = []
    allow.details["crashes"] = records
    allow.details["planned"] = [f"{n}:{p}" for n, p in points]
    try:
        while pending:
            events = run.events()
            for point in list(pending):
                due = _victim(point, events, seen)
                if due is None:
                    continue
                label, why = due
                record: dict[str, Any] = {"node": point[0], "phase": point[1], "trigger": why}
                replica = run.running(label) if label else None
                if replica is None and not why.startswith("missed"):
                    current = holder(events)
                    replica = run.running(current) if current else None
                    if replica is None:  # nobody acts right now: wait for the next holder
                        waited = seen.setdefault((point[0], point[1] + "/victim"),
                                                 time.monotonic())
                        if time.monotonic() - waited < 10:
                            continue
                    else:
                        record["note"] = f"{label or 'nobody'} no longer runs; killed the holder"
                pending.remove(point)
                record["at"] = time.time()
                # Recorded before the awaits: the rollout may end (and this task be cancelled)
                # while the kill or the progress read runs; the point must not vanish from
                # both the kills and the misses (it did in a campaign run).
                records.append(record)
                if replica is not None:
                    await asyncio.to_thread(run.kill9, replica.hostname)
                    record["killed"] = f"{replica.hostname}-g{replica.generation}"
                    node = point[0] if point[0] != "*" else replica.hostname
                    progress = await run.bed.progress()
                    rec = (progress.get("nodes") or {}).get(node)
                    record["progressPhase"] = rec.get("phase") if rec else (
                        "done" if node in (progress.get("done") or []) else "not started")
                else:
                    record["killed"] = None
                break  # re-read the events before the next kill
            await asyncio.sleep(0.05)
    finally:
        allow.measured["crashPoints"] = sum(1 for r in records if r.get("killed"))
        allow.measured["crashPointsMissed"] = [f"{n}:{p}" for n, p in pending] + [
            f"{r['node']}:{r['phase']}" for r in records if not r.get("killed")]


def during(points: list[tuple[str, str]]) -> Any:
    async def scenario(run: Run, target: str, allow: Allowances) -> None:
        await drive(run, points, allow)
    return scenario
