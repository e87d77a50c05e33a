"""In-memory swarm and scale sets for the scale simulation (never instead of the real e2e tests).

`World` holds one simulated Docker for Azure cluster: swarm nodes (Docker API shapes), the two
scale sets, the controller's config objects and event subscribers. `SwarmView(world, hostname)`
is the runtime's `SwarmPort` as seen from the dockerd of `hostname` (a replica running there);
`ScaleSets(world)` is its `ScaleSetPort`. Timings (virtual seconds, see bench/vloop.py):

- a drain empties the node's tasks after `drain_s`;
- a reimage: the old node goes Down after `down_s`; ARM's operation takes `reimage_s`, then the
  instance runs the model image and a NEW node with the same hostname joins (state `unknown`),
  Ready `ready_s` later. Per node the unavoidable time is `reimage_s + ready_s`.

Safety is checked as it goes (`Violation`): quorum (a majority of manager entries Ready and
Reachable), at most one manager out of service, no reimage of an undemoted manager.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.vloop import EPOCH
from controller.adapters.azure import AzurePermanent
from controller.adapters.swarm import Conflict, NotFound, SelfInfo, SwarmError, SwarmUnavailable

JSON = dict[str, Any]
MANAGER_SET = "swarm-manager-vmss"
WORKER_SET = "swarm-worker-vmss"


class Violation(AssertionError):
    """The simulated cluster saw something the controller must never do."""


@dataclass
class Timings:
    drain_s: float = 5.0
    down_s: float = 1.0
    reimage_s: float = 240.0
    ready_s: float = 30.0

    @property
    def unavoidable(self) -> float:
        return self.reimage_s + self.ready_s


@dataclass
class Node:
    id: str
    hostname: str
    role: str
    version: str
    created: float
    state: str = "ready"
    availability: str = "active"
    leader: bool = False
    tasks: int = 2
    index: int = 1


@dataclass
class Inst:
    scale_set: str
    instance_id: str
    computer_name: str
    image: dict[str, str]
    latest: bool = True
    state: str = "Succeeded"
    reimages: int = 0


@dataclass
class World:
    """The simulated cluster (see the module docstring)."""

    image: dict[str, str]
    timings: Timings
    channel: str = "stable"
    nodes: dict[str, Node] = field(default_factory=dict)
    instances: dict[tuple[str, str], Inst] = field(default_factory=dict)
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    configs: dict[str, JSON] = field(default_factory=dict)
    subscribers: list[asyncio.Queue[JSON]] = field(default_factory=list)
    reimage_log: list[tuple[float, str]] = field(default_factory=list)
    ready_log: dict[str, float] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    platform: Any = None  # bench.phases_sim.PlatformServices when the phases are simulated
    # Time: virtual by default (the loop's clock + EPOCH); real runs pass time.time and 0.
    clock: Callable[[], float] | None = None
    epoch: float = EPOCH
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def build(cls, managers: int, workers: int, image: dict[str, str],
              timings: Timings) -> World:
        w = cls(dict(image), timings)
        w.models = {MANAGER_SET: dict(image), WORKER_SET: dict(image)}
        for role, scale_set, count in (("manager", MANAGER_SET, managers),
                                       ("worker", WORKER_SET, workers)):
            for i in range(count):
                host = f"swarm-{role}{i:06d}"
                w.instances[(scale_set, str(i))] = Inst(scale_set, str(i), host, dict(image))
                w._join(host, role, image["version"], state="ready", tasks=0 if
                        role == "manager" else 2)
        first = w.live("swarm-manager000000")
        if first is not None:
            first.leader = True
        return w

    # --- helpers --------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock() if self.clock else asyncio.get_running_loop().time()

    def _join(self, host: str, role: str, version: str, state: str, tasks: int = 0) -> Node:
        node = Node(f"node{next(self._ids):021d}", host, role, version,
                    created=self.epoch + self._now_or_zero(), state=state, tasks=tasks)
        self.nodes[node.id] = node
        self.publish("node", node.id, host)
        return node

    def _now_or_zero(self) -> float:
        try:
            return self.now()
        except RuntimeError:
            return 0.0

    def live(self, host: str) -> Node | None:
        """The newest entry with that hostname that is not Down."""
        found = [n for n in self.nodes.values() if n.hostname == host and n.state != "down"]
        return max(found, key=lambda n: n.created) if found else None

    def publish(self, kind: str, obj_id: str, name: str) -> None:
        event = {"Type": kind, "Action": "update", "Actor": {"ID": obj_id,
                                                             "Attributes": {"name": name}}}
        for queue in self.subscribers:
            queue.put_nowait(event)

    def check(self) -> None:
        managers = [n for n in self.nodes.values() if n.role == "manager"]
        healthy = [n for n in managers if n.state == "ready"]
        if managers and len(healthy) * 2 <= len(managers):
            raise Violation(f"raft quorum lost: {len(healthy)} of {len(managers)} managers ready")

    def _set_leader(self) -> None:
        managers = [n for n in self.nodes.values() if n.role == "manager" and n.state == "ready"]
        if managers and not any(n.leader for n in managers):
            min(managers, key=lambda n: n.hostname).leader = True

    # --- what the swarm does over time ----------------------------------------------------

    async def drained(self, node: Node) -> None:
        await asyncio.sleep(self.timings.drain_s)
        if node.availability == "drain":
            node.tasks = 0
            self.publish("node", node.id, node.hostname)

    async def reimage(self, inst: Inst, done: asyncio.Event) -> None:
        t = self.timings
        role = "manager" if inst.scale_set == MANAGER_SET else "worker"
        old = self.live(inst.computer_name)
        if old is not None and old.role == "manager":
            raise Violation(f"{inst.computer_name} reimaged while still a manager")
        self.started_at[inst.computer_name] = self.now()
        await asyncio.sleep(min(t.down_s, t.reimage_s))
        if old is not None:
            old.state, old.leader = "down", False
            self.publish("node", old.id, old.hostname)
        await asyncio.sleep(max(0.0, t.reimage_s - t.down_s))
        inst.image = dict(self.models[inst.scale_set])
        inst.latest, inst.state = True, "Succeeded"
        done.set()
        new = self._join(inst.computer_name, role, inst.image["version"], state="unknown")
        self.check()
        await asyncio.sleep(t.ready_s)
        new.state = "ready"
        self.ready_log[inst.computer_name] = self.now()
        self._set_leader()
        self.publish("node", new.id, new.hostname)

    # --- Docker API shapes ----------------------------------------------------------------

    def node_json(self, n: Node) -> JSON:
        out: JSON = {
            "ID": n.id, "Version": {"Index": n.index},
            "CreatedAt": _stamp(n.created),
            "Spec": {"Role": n.role, "Availability": n.availability, "Labels": {}},
            "Description": {"Hostname": n.hostname, "Engine": {"Labels": {
                "azure.image.version": n.version}}},
            "Status": {"State": n.state},
        }
        if n.role == "manager":
            reach = "reachable" if n.state == "ready" else "unreachable"
            out["ManagerStatus"] = {"Reachability": reach, "Leader": n.leader}
        return out


def _stamp(t: float) -> str:
    """Docker's timestamp form of epoch seconds `t`."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


NOT_MANAGER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify "
               "cluster state. Please run this command on a manager node or promote the current "
               "node to a manager.")


class SwarmView:
    """The `SwarmPort` of the dockerd on `hostname` (see the module docstring)."""

    def __init__(self, world: World, hostname: str) -> None:
        self.world = world
        self.hostname = hostname
        self.calls = 0

    def _manager(self) -> Node:
        self.calls += 1
        node = self.world.live(self.hostname)
        if node is None or node.state == "down":
            raise SwarmUnavailable(900, f"Cannot connect to the dockerd of {self.hostname}")
        if node.role != "manager":
            raise SwarmUnavailable(503, NOT_MANAGER)
        return node

    async def info(self) -> SelfInfo:
        node = self.world.live(self.hostname)
        return SelfInfo(self.hostname, node.id if node else "",
                        bool(node and node.role == "manager"), "")

    async def nodes(self) -> list[JSON]:
        self._manager()
        return [self.world.node_json(n) for n in self.world.nodes.values()]

    async def node(self, node_id: str) -> JSON:
        self._manager()
        n = self.world.nodes.get(node_id)
        if n is None:
            raise NotFound(404, f"node {node_id} not found")
        return self.world.node_json(n)

    async def patch_node(self, node_id: str, **changes: str) -> bool:
        self._manager()
        n = self.world.nodes.get(node_id)
        if n is None:
            raise NotFound(404, f"node {node_id} not found")
        role = changes.get("Role", n.role)
        availability = changes.get("Availability", n.availability)
        if (role, availability) == (n.role, n.availability):
            return False
        if availability == "drain" and n.availability != "drain":
            asyncio.get_running_loop().create_task(self.world.drained(n))
        if role == "worker" and n.role == "manager":
            n.leader = False
        n.role, n.availability, n.index = role, availability, n.index + 1
        self.world._set_leader()
        self.world.check()
        self.world.publish("node", n.id, n.hostname)
        return True

    async def remove_node(self, node_id: str, force: bool = False) -> None:
        self._manager()
        n = self.world.nodes.get(node_id)
        if n is None:
            raise NotFound(404, f"node {node_id} not found")
        if n.role == "manager":
            raise SwarmError(400, f"rpc error: node {node_id} is a cluster manager")
        if n.state != "down" and not force:
            raise SwarmError(400, f"rpc error: node {node_id} is not down and can't be removed")
        del self.world.nodes[node_id]
        self.world.publish("node", n.id, n.hostname)

    async def services(self) -> list[JSON]:
        self._manager()
        return [self._service(), *(self.world.platform.listed() if self.world.platform else [])]

    def _service(self) -> JSON:
        running = sum(n.tasks for n in self.world.nodes.values() if n.state == "ready")
        return {"ID": "svc1", "Version": {"Index": 1}, "CreatedAt": _stamp(self.world.epoch),
                "UpdatedAt": _stamp(self.world.epoch),
                "Spec": {"Name": "sample", "Labels": {}, "TaskTemplate": {"ContainerSpec": {
                    "Image": "busybox:latest"}}, "Mode": {"Replicated": {"Replicas": running}}},
                "ServiceStatus": {"RunningTasks": running, "DesiredTasks": running}}

    async def service(self, service_id: str) -> JSON:
        self._manager()
        platform = self.world.platform.services if self.world.platform else {}
        return dict(platform[service_id]) if service_id in platform else self._service()

    async def update_service(self, service_id: str, version: int,
                             spec: Mapping[str, Any]) -> None:
        self._manager()
        if self.world.platform is None or service_id not in self.world.platform.services:
            raise SwarmError(400, f"the simulated swarm does not update service {service_id}")
        try:
            self.world.platform.update(service_id, version, spec)
        except ValueError as err:
            raise SwarmError(500, f"rpc error: code = Unknown desc = {err}") from None

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None) -> Any:
        if (method, path) == ("GET", "services"):
            return await self.services()
        raise SwarmError(400, f"the simulated swarm does not serve {method} /{path}")

    async def tasks(self, filters: Mapping[str, list[str]] | None = None) -> list[JSON]:
        self._manager()
        return [{"ServiceID": "svc1", "NodeID": n.id, "Status": {"State": "running"}}
                for n in self.world.nodes.values() for _ in range(n.tasks)
                if n.state == "ready"]

    async def configs(self, label: str | None = None, name: str | None = None) -> list[JSON]:
        self._manager()
        out = []
        for c in self.world.configs.values():
            if name and c["Spec"]["Name"] != name:
                continue
            if label and label.split("=", 1)[0] not in c["Spec"]["Labels"]:
                continue
            out.append(_copy(c))
        return out

    async def config(self, config_id: str) -> JSON:
        self._manager()
        if config_id not in self.world.configs:
            raise NotFound(404, f"config {config_id} not found")
        return _copy(self.world.configs[config_id])

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        self._manager()
        if any(c["Spec"]["Name"] == name for c in self.world.configs.values()):
            raise Conflict(409, f"config {name} already exists")
        cid = f"cfg{next(self.world._ids):022d}"
        self.world.configs[cid] = {
            "ID": cid, "Version": {"Index": 1},
            "CreatedAt": _stamp(self.world.epoch + self.world.now()),
            "Spec": {"Name": name, "Data": base64.b64encode(data).decode(),
                     "Labels": dict(labels)}}
        self.world.publish("config", cid, name)
        return cid

    async def update_config_labels(self, config_id: str, version: int, spec: Mapping[str, Any],
                                   labels: Mapping[str, str]) -> None:
        self._manager()
        c = self.world.configs.get(config_id)
        if c is None:
            raise NotFound(404, f"config {config_id} not found")
        if c["Version"]["Index"] != version:
            raise Conflict(500, "rpc error: code = Unknown desc = update out of sequence")
        c["Spec"]["Labels"] = dict(labels)
        c["Version"]["Index"] += 1
        self.world.publish("config", config_id, c["Spec"]["Name"])

    async def events(self, filters: Mapping[str, list[str]]) -> AsyncIterator[JSON]:
        self._manager()
        queue: asyncio.Queue[JSON] = asyncio.Queue()
        self.world.subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                if event["Type"] in filters.get("type", [event["Type"]]):
                    yield event
        finally:
            self.world.subscribers.remove(queue)

    async def close(self) -> None:
        return None


def _copy(c: JSON) -> JSON:
    return {"ID": c["ID"], "Version": dict(c["Version"]), "CreatedAt": c["CreatedAt"],
            "Spec": {**c["Spec"], "Labels": dict(c["Spec"]["Labels"])}}


class FakeReimage:
    def __init__(self, done: asyncio.Event) -> None:
        self.done = done

    async def wait(self) -> None:
        await self.done.wait()


class ScaleSets:
    """The `ScaleSetPort` over the world's two scale sets (calls counted as ARM reads/writes)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.reads = 0
        self.writes = 0

    def portal_url(self, scale_set: str) -> str:
        return f"https://portal.azure.com/#sim/{scale_set}/instances"

    async def observe(self, roles: Mapping[str, str]) -> list[JSON]:
        self.reads += 2 * len(roles)
        out = []
        for name, role in roles.items():
            instances = [
                {"instanceId": i.instance_id, "computerName": i.computer_name,
                 "image": dict(i.image), "latestModelApplied": i.latest,
                 "provisioningState": i.state, "powerState": "running"}
                for i in self.world.instances.values() if i.scale_set == name]
            out.append({"name": name, "role": role, "tags": {"channel": self.world.channel},
                        "model": dict(self.world.models[name]), "instances": instances})
        return out

    async def instance(self, name: str, instance_id: str) -> JSON:
        self.reads += 1
        i = self.world.instances[(name, instance_id)]
        return {"instanceId": i.instance_id, "computerName": i.computer_name,
                "image": dict(i.image), "latestModelApplied": i.latest,
                "provisioningState": i.state, "powerState": "running"}

    async def set_model_image(self, name: str, image: Mapping[str, str]) -> bool:
        self.reads += 1
        if self.world.models[name] == dict(image):
            return False
        self.writes += 1
        self.world.models[name] = dict(image)
        for i in self.world.instances.values():
            if i.scale_set == name:
                i.latest = i.image == self.world.models[name]
        return True

    async def start_reimage(self, name: str, instance_ids: list[str]) -> FakeReimage:
        self.writes += 1
        done = asyncio.Event()
        for iid in instance_ids:
            inst = self.world.instances[(name, iid)]
            if inst.state == "Updating":
                raise AzurePermanent("VirtualMachineScaleSets_UpdateInstances",
                                     "OperationNotAllowed", f"{iid} is being updated", 409)
            inst.state = "Updating"
            inst.reimages += 1
            if inst.reimages > 1:
                raise Violation(f"{inst.computer_name} reimaged twice")
            self.world.reimage_log.append((self.world.now(), inst.computer_name))
            asyncio.get_running_loop().create_task(self.world.reimage(inst, done))
        return FakeReimage(done)

    async def close(self) -> None:
        return None
