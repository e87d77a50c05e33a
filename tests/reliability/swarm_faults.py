"""Item 3: swarm faults during a real rollout.

- `manager-crash`: when the first manager starts draining, another manager (not the one the active
  replica runs on) is killed (kill -9 of its dockerd) for 20 s; `ManagerUnreachable` wait; no
  demote while it is out; continues when it is back, completes
- `quorum-lost`: when the first worker starts draining, two of three managers are killed for 25 s;
  no ARM write and no crash of the surviving replica while quorum is lost; resumes, completes
- `worker-down`: when the first manager starts draining, a worker that is not in flight is killed
  for 20 s; waits; completes when it is back
- `swarm-hang`: when the first manager starts draining, the dockerd the active replica talks to is
  frozen (SIGSTOP) for 20 s; swarm timeouts fire (`TemporaryError`), another replica takes over;
  no thread or fd leak in the frozen replica's process; completes

Referee samples inside the window where the campaign itself stopped managers (plus 10 s) are
not counted against the controller; everything outside it is.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from tests.reliability import invariants as inv
from tests.reliability.harness import Bed, Run, holder
from tests.reliability.rollout import Allowances, During, rollout

AFTERMATH_S = 10.0


def _host_of(label: str) -> str:
    return label.rsplit("-g", 1)[0]


async def _active_host(run: Run) -> str:
    for _ in range(50):
        label = holder(run.events())
        if label:
            return _host_of(label)
        await asyncio.sleep(0.2)
    raise AssertionError("nobody holds the lease")


def manager_crash(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        first = await run.wait_reason("NodeDraining", 120)
        draining = str(first["object"]).removeprefix("node/")
        active = await _active_host(run)
        others = sorted(h for h in run.bed.managers if h not in (draining, active))
        if not draining.startswith("swarm-manager") or not others:
            allow.violations.append(f"manager-crash: could not pick a manager "
                                    f"(draining {draining}, active {active})")
            return
        victim = others[0]
        start = time.time()
        await run.bed.handle.afault("crash", victim)
        await asyncio.sleep(20)
        events = run.events()
        demoted = [e for e in inv.reasons(events, "NodeDemoted")
                   if inv.epoch(e["time"]) >= start]
        await run.bed.handle.afault("start", victim)
        end = time.time()
        allow.windows.append(inv.Window(start, end + AFTERMATH_S, f"{victim} crashed"))
        allow.details.update(crashed=victim, draining=draining, outS=round(end - start, 1))
        if demoted:
            allow.violations.append(f"manager-crash: demoted {demoted[0]['object']} while "
                                    f"{victim} was down")
        if not [e for e in inv.reasons(events, "ManagerUnreachable")
                if inv.epoch(e["time"]) >= start]:
            allow.violations.append("manager-crash: no ManagerUnreachable event while "
                                    f"{victim} was down")
    return go()


def quorum_lost(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        def worker_draining(events: list[dict[str, Any]]) -> bool:
            return any(e.get("reason") == "NodeDraining"
                       and "worker" in str(e.get("object")) for e in events)

        await run.wait_for(worker_draining, 400, "a worker draining")
        active = await _active_host(run)
        victims = sorted(h for h in run.bed.managers if h != active)[:2]
        assert run.replicas is not None
        survivor = run.replicas.running.get(active)
        before = (survivor.generation, survivor.proc.pid) if survivor else None
        start = time.time()
        await asyncio.gather(*(run.bed.handle.afault("crash", v) for v in victims))
        await asyncio.sleep(25)
        writes = inv.accepted_writes(run.arm_log(), start + 1, time.time())
        survivor = run.replicas.running.get(active)
        after = (survivor.generation, survivor.proc.pid) if survivor else None
        alive = survivor is not None and survivor.proc.poll() is None
        await asyncio.gather(*(run.bed.handle.afault("start", v) for v in victims))
        end = time.time()
        allow.windows.append(inv.Window(start, end + AFTERMATH_S, f"{victims} crashed"))
        allow.details.update(crashed=victims, survivor=active, outS=round(end - start, 1))
        allow.violations += [f"quorum-lost: written while quorum was lost: {w}" for w in writes]
        if before != after or not alive:
            allow.violations.append(f"quorum-lost: the replica on {active} did not stay up "
                                    f"(before {before}, after {after}, alive {alive})")
    return go()


def worker_down(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        await run.wait_reason("NodeDraining", 120)
        events = run.events()
        in_flight = {str(e["object"]).removeprefix("node/")
                     for e in inv.reasons(events, "NodeDraining")}
        victim = next(w for w in ("swarm-worker000001", "swarm-worker000000")
                      if w not in in_flight)
        start = time.time()
        await run.bed.handle.afault("crash", victim)
        await asyncio.sleep(20)
        await run.bed.handle.afault("start", victim)
        allow.details.update(crashed=victim, outS=round(time.time() - start, 1))
        waits = sorted({str(e.get("reason")) for e in run.events()
                        if e.get("time") and inv.epoch(e["time"]) >= start
                        and e.get("type") == "Warning"})
        allow.details["warningsWhileDown"] = waits
    return go()


def _proc_counts(pid: int) -> tuple[int, int]:
    """(threads, open fds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def swarm_hang(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        await run.wait_reason("NodeDraining", 120)
        active = await _active_host(run)
        assert run.replicas is not None
        replica = run.replicas.running[active]
        status = await run.bed.handle.astatus()
        pid = next(int(i["dockerdPid"]) for i in status["instances"]
                   if i["computerName"] == active)
        before = _proc_counts(replica.proc.pid)
        start = time.time()
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(20)
            during = _proc_counts(replica.proc.pid) if replica.proc.poll() is None else None
        finally:
            os.kill(pid, signal.SIGCONT)
        end = time.time()
        allow.windows.append(inv.Window(start, end + AFTERMATH_S, f"dockerd of {active} frozen"))
        await asyncio.sleep(20)
        alive = replica.proc.poll() is None
        after = _proc_counts(replica.proc.pid) if alive else None
        timeouts = [e for e in run.events() if e.get("reason") == "TemporaryError"
                    and e.get("replica") == f"{active}-g{replica.generation}"
                    and start <= inv.epoch(e["time"]) <= end + 5]
        allow.details.update(frozen=active, threadsFds={"before": before, "during": during,
                                                        "after": after},
                             temporaryErrors=len(timeouts),
                             firstTimeout=timeouts[0]["message"][:200] if timeouts else None)
        if not alive and active in run.bed.managers:
            # Only a demoted/reimaged node's replica is stopped by the supervisor, and the
            # active replica's node is upgraded last: it must still run.
            allow.violations.append(f"swarm-hang: the replica on {active} exited")
        if not timeouts:
            allow.violations.append("swarm-hang: no TemporaryError from the frozen replica")
        if after is not None and (after[0] > before[0] + 2 or after[1] > before[1] + 10):
            allow.violations.append(f"swarm-hang: threads/fds grew from {before} to {after}")
    return go()


SCENARIOS = {
    "manager-crash": manager_crash,
    "quorum-lost": quorum_lost,
    "worker-down": worker_down,
    "swarm-hang": swarm_hang,
}


def as_during(factory: Any) -> During:
    async def during(run: Run, target: str, allow: Allowances) -> None:
        await factory(run, target, allow)
    return during


async def group(c: Any) -> None:
    for index in range(c.fault_runs):
        for name, factory in SCENARIOS.items():
            if not c.wanted(name):
                continue
            bed: Bed = c.bed_for_run()
            row = await rollout(bed, c.rundir(name, index), name, index, as_during(factory))
            row["group"] = "swarm"
            c.add(row)
