"""A whole rollout by the real loop and planner against the in-memory world, in virtual time.

With `phases` (the default) the loop runs the controller's planner (`controller.rollout.plan`:
resources → nodes → services) and the world has a resource group (bench/phases_sim.py: the
source release's deployment) and the release's platform services; without, the nodes phase's
planner alone (`controller.planner.plan`) on a world with neither.

One `Controller` replica per manager (like the global manager-only service), each with its
own `SwarmView`, sharing the `ScaleSets` and a `SimClock` on a `VirtualLoop`. The run ends at
the first `RolloutSucceeded` event; `simulate()` returns the makespan and its lower bound.
"""

from __future__ import annotations

import asyncio
import io
import math
import time
from dataclasses import dataclass
from typing import Any

from bench.fakes import MANAGER_SET, ScaleSets, SwarmView, Timings, World
from bench.phases_sim import PhaseTimings, PlatformServices, ResourceGroup
from bench.vloop import SimClock, run_virtual
from controller.catalog import Catalog, load_catalog
from controller.planner import plan
from controller.rollout import plan as rollout_plan
from controller.runtime.events import Event, EventSink
from controller.runtime.health import Metrics
from controller.runtime.loop import Controller, LoopConfig
from controller.runtime.sources import DesiredSource

SOURCE = "17.06.0-ce-azure1"
TARGET = "17.06.1-ce-azure1"


def declaration(version: str, max_unavailable: int) -> str:
    return (
        "apiVersion: swarm-upgrade.io/v1alpha1\nkind: SwarmUpgrade\nmetadata:\n  name: sim\n"
        f"spec:\n  channel: stable\n  version: {version}\n  strategy:\n"
        f"    maxUnavailableWorkers: {max_unavailable}\n    drainTimeout: 30m\n"
        "    nodeReadyTimeout: 2h\n"
    )


class StaticSource(DesiredSource):
    """A declaration held in memory (offered once when the source starts)."""

    def __init__(self, text: str, catalog: Catalog, sink: EventSink, trigger: Any) -> None:
        super().__init__(catalog, sink, trigger)
        self.text = text
        self.description = "an in-memory declaration"

    async def run(self) -> None:
        self.offer(self.text.encode(), "sim")
        self.ready.set()
        await asyncio.Event().wait()


@dataclass
class SimResult:
    managers: int
    workers: int
    max_unavailable: int
    timings: Timings
    makespan: float
    lower_bound: float
    passes: int
    arm_reads: int
    arm_writes: int
    swarm_calls: int
    cpu_seconds: float
    wall_seconds: float
    upgraded: int
    phases: PhaseTimings | None = None
    resource_reads: int = 0
    resource_writes: int = 0
    deployed: int = 0
    services_updated: int = 0

    @property
    def ratio(self) -> float:
        return self.makespan / self.lower_bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "managers": self.managers, "workers": self.workers,
            "maxUnavailableWorkers": self.max_unavailable,
            "timings": vars(self.timings), "makespanS": round(self.makespan, 3),
            "lowerBoundS": round(self.lower_bound, 3), "ratio": round(self.ratio, 4),
            "reconcilePasses": self.passes, "armReads": self.arm_reads,
            "armWrites": self.arm_writes, "swarmCalls": self.swarm_calls,
            "upgradedNodes": self.upgraded, "cpuSeconds": round(self.cpu_seconds, 2),
            "wallSeconds": round(self.wall_seconds, 2),
            "phases": vars(self.phases) if self.phases else None,
            "deploymentReads": self.resource_reads, "deploymentWrites": self.resource_writes,
            "deploymentsStarted": self.deployed, "platformServicesUpdated": self.services_updated,
        }


def lower_bound(managers: int, workers: int, max_unavailable: int, timings: Timings,
                phases: PhaseTimings | None = None, services: int = 0) -> float:
    """Managers one at a time, workers in batches of max_unavailable, each taking the
    unavoidable reimage + boot-to-Ready; with the phases, before them the deployment and after
    them every platform service's update, one at a time."""
    nodes = (managers + math.ceil(workers / max_unavailable)) * timings.unavoidable
    if phases is None:
        return nodes
    return phases.deploy_s + nodes + services * phases.service_s


def simulate(managers: int, workers: int, max_unavailable: int,
             timings: Timings | None = None, limit_s: float = 30 * 86400,
             phases: PhaseTimings | None = None) -> SimResult:
    """Run the rollout (see the module docstring); raises if it does not finish. `phases`
    None: the nodes phase alone."""
    timings = timings or Timings()
    catalog = load_catalog()
    old, new = catalog.release("stable", SOURCE), catalog.release("stable", TARGET)
    assert old is not None and new is not None
    world = World.build(managers, workers, old.image.to_dict(), timings)
    rg = None
    if phases is not None:
        def now() -> float:
            return world.epoch + world.now()

        world.platform = PlatformServices.of(old, now, phases.service_s, world.publish,
                                             world.epoch - 86400)
        rg = ResourceGroup.installed(old, now, phases.deploy_s, world.epoch - 86400)
    wall, cpu = time.monotonic(), time.process_time()
    result = run_virtual(_run(world, catalog, max_unavailable, limit_s, rg))
    makespan, passes, arm, swarm_calls = result
    services = len(new.system_services) if phases is not None else 0
    return SimResult(
        managers, workers, max_unavailable, timings, makespan,
        lower_bound(managers, workers, max_unavailable, timings, phases, services), passes,
        arm.reads, arm.writes, swarm_calls, time.process_time() - cpu,
        time.monotonic() - wall, len(world.ready_log), phases,
        rg.reads if rg else 0, rg.writes if rg else 0, len(rg.log) if rg else 0,
        len(world.platform.updates) if world.platform else 0)


async def _run(world: World, catalog: Catalog, max_unavailable: int,
               limit_s: float, rg: ResourceGroup | None) -> tuple[float, int, ScaleSets, int]:
    clock = SimClock()
    arm = ScaleSets(world)
    done = asyncio.Event()
    finished: list[float] = []
    failed: list[str] = []
    text = declaration(TARGET, max_unavailable)
    replicas: list[Controller] = []
    views: list[SwarmView] = []

    def listener(event: Event) -> None:
        if event.reason == "RolloutSucceeded" and not finished:
            finished.append(asyncio.get_running_loop().time())
            done.set()
        if event.type == "Warning" and event.reason in ("ControllerHalted", "NodeTimeout",
                                                        "NodeLost"):
            failed.append(f"{event.reason}: {event.message}")
            done.set()

    hosts = sorted({i.computer_name for i in world.instances.values()
                    if i.scale_set == MANAGER_SET})
    for host in hosts:
        sink = EventSink(io.StringIO(), clock=clock.now, keep=10)
        sink.listeners.append(listener)
        holder: list[Controller] = []
        source = StaticSource(text, catalog, sink, lambda h=holder: h and h[0].trigger())
        view = SwarmView(world, host)
        controller = Controller(LoopConfig(replica=f"{host}-sim"), view, arm, source, catalog,
                                sink, Metrics(), planner=rollout_plan if rg else plan,
                                resources=rg, clock=clock)  # type: ignore[arg-type]
        holder.append(controller)
        replicas.append(controller)
        views.append(view)
    tasks = [asyncio.create_task(c.run()) for c in replicas]
    waiter = asyncio.create_task(done.wait())
    try:  # a replica that crashes ends the run at once (it would otherwise wait for limit_s)
        await asyncio.wait([waiter, *tasks], timeout=limit_s,
                           return_when=asyncio.FIRST_COMPLETED)
        if not done.is_set() and not any(t.done() for t in tasks):
            raise TimeoutError(f"the simulated rollout did not finish in {limit_s:g}s")
    finally:
        waiter.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if failed:
        raise RuntimeError(f"simulated rollout stopped: {failed[0]}")
    passes = sum(int(c.metrics.passes._value.get()) for c in replicas)
    return finished[0], passes, arm, sum(v.calls for v in views)
