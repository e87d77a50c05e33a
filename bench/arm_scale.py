"""The controller's ARM request pattern against a 1000-instance scale set, in real time.

The real loop, the real azure adapter and observe code and the real azure-mgmt-compute SDK talk
HTTPS to the testbed ARM endpoint (`testbed.arm.ArmServer`, throttling enforced: Azure's
per-region token buckets) holding a 5-instance manager scale set and a `workers`-instance worker
scale set. The instances are driven by `WorldDriver`, which plays the swarm side in memory
(bench/fakes.py `World`): a reimaged instance's old node goes Down and a new one joins and turns
Ready. One replica per manager. The run stops when the rollout succeeded or after `cap_s`;
ARM reads and writes are divided by the nodes upgraded by then.

With `phases` (the default) the controller's planner runs all three phases: the real
resource-group adapter deploys the release's template to the endpoint's deployments (seeded
with the source release's deployment, as an installed Docker for Azure resource group has),
and the world's platform services (bench/phases_sim.py) are updated after the nodes.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import common
from bench.fakes import MANAGER_SET, WORKER_SET, SwarmView, Timings, Violation, World
from bench.phases_sim import PlatformServices
from bench.simulate import SOURCE, TARGET, StaticSource, declaration
from controller import arm_template
from controller.adapters.azure import ScaleSetClient
from controller.adapters.resources import ResourceGroupClient
from controller.catalog import Release, load_catalog
from controller.planner import plan
from controller.rollout import plan as rollout_plan
from controller.runtime.app import ARM_LISTING_MAX_AGE
from controller.runtime.events import Event, EventSink
from controller.runtime.health import Metrics
from controller.runtime.loop import Controller, LoopConfig
from testbed.arm import ArmServer


@dataclass
class WorldDriver:
    """`testbed.driver.InstanceDriver` whose instances are nodes of an in-memory `World`."""

    world: World

    async def reimage(self, scale_set: str, instance_id: str, computer_name: str, role: str,
                      image: dict[str, str]) -> None:
        t = self.world.timings
        old = self.world.live(computer_name)
        if old is not None and old.role == "manager":
            raise Violation(f"{computer_name} reimaged while still a manager")
        await asyncio.sleep(t.down_s)
        if old is not None:
            old.state, old.leader = "down", False
            self.world.publish("node", old.id, computer_name)
        await asyncio.sleep(max(0.0, t.reimage_s - t.down_s))
        asyncio.get_running_loop().create_task(self._join(computer_name, role, image["version"]))

    async def _join(self, host: str, role: str, version: str) -> None:
        new = self.world._join(host, role, version, state="unknown")
        await asyncio.sleep(self.world.timings.ready_s)
        new.state = "ready"
        self.world.ready_log[host] = self.world.now()
        self.world._set_leader()
        self.world.publish("node", new.id, host)

    async def boot(self, *args: Any) -> None:
        return None

    async def power_off(self, scale_set: str, instance_id: str) -> None:
        return None

    async def start(self, scale_set: str, instance_id: str) -> None:
        return None

    async def restart(self, scale_set: str, instance_id: str) -> None:
        return None

    async def delete(self, scale_set: str, instance_id: str) -> None:
        return None

    def power_state(self, scale_set: str, instance_id: str) -> str:
        return "running"


async def run(workers: int = 1000, managers: int = 5, max_unavailable: int = 50,
              timings: Timings | None = None, polling_interval: float = 15.0,
              cap_s: float = 300.0, observe_cache: float = ARM_LISTING_MAX_AGE,
              phases: bool = True, service_s: float = 2.0) -> dict[str, Any]:
    timings = timings or Timings(drain_s=0.5, down_s=0.5, reimage_s=6.0, ready_s=1.0)
    catalog = load_catalog()
    old = catalog.release("stable", SOURCE)
    assert old is not None
    image = old.image.to_dict()
    world = World.build(managers, 0, image, timings)
    world.clock, world.epoch = time.time, 0.0
    for i in range(workers):  # the swarm side of the worker scale set
        world._join(f"swarm-worker{i:06d}", "worker", image["version"], "ready", tasks=2)
    server = ArmServer(WorldDriver(world), subscription_id="00000000-0000-0000-0000-00000000be4c",
                       resource_group="swarm-rg", tenant_id="bench-tenant",
                       client_id="bench-client", client_secret="bench-secret-value",
                       cert_dir=tempfile.mkdtemp(prefix="bench-arm-"), enforce_throttling=True)
    server.add_scale_set(MANAGER_SET, "manager", {"channel": "stable"}, image, managers,
                         "swarm-manager")
    server.add_scale_set(WORKER_SET, "worker", {"channel": "stable"}, image, workers,
                         "swarm-worker")
    await server.start()
    os.environ.update(server.environment())
    azure = ScaleSetClient(server.subscription_id, server.resource_group, base_url=server.url,
                           polling_interval=polling_interval, connection_verify=str(server.ca_path),
                           observe_cache=observe_cache)
    rg = None
    if phases:
        world.platform = PlatformServices.of(old, time.time, service_s, world.publish,
                                             time.time() - 86400)
        rg = ResourceGroupClient(server.subscription_id, server.resource_group,
                                 credential=azure.credential, base_url=server.url,
                                 polling_interval=polling_interval,
                                 connection_verify=str(server.ca_path),
                                 observe_cache=observe_cache, budget=azure.budget)
        await installed(rg, old)
    upgraded: list[float] = []
    done = asyncio.Event()

    def listener(event: Event) -> None:
        if event.reason == "NodeUpgraded":
            upgraded.append(time.time())
        if event.reason == "RolloutSucceeded" or event.reason == "ControllerHalted":
            done.set()

    replicas = []
    text = declaration(TARGET, max_unavailable)
    for host in sorted(n.hostname for n in world.nodes.values() if n.role == "manager"):
        sink = EventSink(io.StringIO(), keep=10)
        sink.listeners.append(listener)
        holder: list[Controller] = []
        source = StaticSource(text, catalog, sink, lambda h=holder: h and h[0].trigger())
        c = Controller(LoopConfig(replica=f"{host}-arm"), SwarmView(world, host), azure, source,
                       catalog, sink, Metrics(), planner=rollout_plan if phases else plan,
                       resources=rg)
        holder.append(c)
        replicas.append(c)
    load0 = common.load()
    started = time.time()
    log_from = len(server.request_log)
    tasks = [asyncio.create_task(c.run()) for c in replicas]
    try:
        await asyncio.wait_for(done.wait(), cap_s)
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.time() - started
        if rg is not None:
            await rg.close()
        await azure.close()
        await server.stop()
    entries = [e for e in server.request_log[log_from:] if not e.operation.startswith("Identity_")]
    ops: Counter[str] = Counter(e.operation for e in entries)
    reads = sum(1 for e in entries if e.kind == "read")
    writes = sum(1 for e in entries if e.kind == "write")
    throttled = sum(1 for e in entries if e.status == 429)
    lro = sum(1 for e in entries if e.operation == "Operations_Get")
    n = max(1, len(upgraded))
    result = {
        "workers": workers, "managers": managers, "maxUnavailableWorkers": max_unavailable,
        "timings": vars(timings), "pollingIntervalS": polling_interval, "capS": cap_s,
        "observeCacheS": observe_cache, "phases": phases,
        "deploymentsStarted": ops.get("Deployments_CreateOrUpdate", 0),
        "platformServicesUpdated": len(world.platform.updates) if world.platform else 0,
        "elapsedS": round(elapsed, 1), "rolloutSucceeded": done.is_set(),
        "nodesUpgraded": len(upgraded), "armReads": reads, "armWrites": writes,
        "throttled429": throttled, "byOperation": dict(ops),
        "readsPerNode": round(reads / n, 2), "writesPerNode": round(writes / n, 2),
        "lroStatusReadsPerNode": round(lro / n, 2),
        "observationReadsPerNode": round((reads - lro) / n, 2),
        "budgetWaitS": round(azure.budget.waited_s, 1),
        "loadAvgAtStart": load0, "loadAvgAtEnd": common.load(),
    }
    print(f"\nARM request pattern, {managers} managers + {workers}-instance worker scale set, "
          f"{'all three phases' if phases else 'nodes phase only'}, "
          f"throttling enforced, observe cache {observe_cache:g} s (real time, load {load0} -> "
          f"{common.load()})")
    print(common.table([
        ("nodes upgraded", len(upgraded), f"in {elapsed:.0f} s"),
        ("ARM writes per upgraded node", result["writesPerNode"], "goal <= 2"),
        ("ARM reads per upgraded node", result["readsPerNode"], "goal <= 10"),
        ("  of which LRO status polls", result["lroStatusReadsPerNode"], ""),
        ("  of which observation (GET + list pages)", result["observationReadsPerNode"], ""),
        ("429 answers", throttled, "goal 0"),
        ("time requests waited for the budget (s)", result["budgetWaitS"], "sum over requests"),
    ], ("figure", "value", "note")))
    return result


async def installed(rg: ResourceGroupClient, release: Release) -> None:
    """Deploy `release`'s template (its parameters from the catalog) and wait until it
    succeeded: the resource group of an installed Docker for Azure."""
    assert release.template is not None
    values, _ = arm_template.derive_parameters(release.template, None)
    name = arm_template.deployment_name(release.version)
    await rg.deploy(name, release.template.body, values)
    for _ in range(600):
        found = {d["name"]: d for d in await rg.deployments()}
        if found.get(name, {}).get("provisioningState") == "Succeeded":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the seed deployment {name} did not succeed")
