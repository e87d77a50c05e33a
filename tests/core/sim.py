"""An in-memory Docker-for-Azure cluster that executes planner actions and checks safety.

Reusable by the property tests and the benchmark: build a `Cluster`, then `drive()` the real
planner against it. Every action is applied the way the runtime would (write-ahead progress,
actions in order, stop at the first failure), and `Cluster` raises `Violation` the moment an
action breaks a safety rule: raft quorum lost, two managers out of service, workers out while a
manager is, more than maxUnavailableWorkers workers out, an instance on the target reimaged, an
instance reimaged twice, a manager reimaged without being demoted, `self` touched or not last.

Time is simulated: `drive()` advances the clock by each decision's `requeue_after`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from controller import decision as d
from controller.catalog import Catalog, ImageRef
from controller.decision import Action, Decision
from controller.model import Desired
from controller.progress import Progress
from controller.snapshot import Instance, Node, ScaleSet, Snapshot

MANAGER_SET = "swarm-manager-vmss"
WORKER_SET = "swarm-worker-vmss"


class Violation(AssertionError):
    """A safety rule broken by the actions the planner asked for."""


@dataclass
class SimNode:
    id: str
    hostname: str
    role: str
    state: str = "ready"
    availability: str = "active"
    reachable: bool = True
    leader: bool = False
    created_at: float = 0.0
    running_tasks: int = 2
    drain_at: float | None = None  # when its tasks are gone after a drain (None: never)
    unreachable_until: float = 0.0


@dataclass
class SimInstance:
    instance_id: str
    computer_name: str
    scale_set: str
    image: ImageRef
    latest_model_applied: bool = True
    provisioning_state: str = "Succeeded"
    reimages: int = 0
    # fault plan for its reimage: "ok", "fail" (provisioningState Failed), "hang" (never rejoins)
    fate: str = "ok"
    reimage_done_at: float | None = None
    reimage_image: ImageRef | None = None
    drain_delay: float | None = 5.0  # None: its tasks never leave


@dataclass
class Cluster:
    """The swarm (nodes) and the two scale sets (instances) of one simulated cluster."""

    nodes: list[SimNode]
    instances: list[SimInstance]
    models: dict[str, ImageRef]
    channel: str
    self_hostname: str
    target: ImageRef
    max_unavailable_workers: int = 1
    reimage_seconds: float = 20.0
    now: float = 1_000_000.0
    original_self: str = ""
    originals: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> role, avail
    out: set[str] = field(default_factory=set)  # hostnames out of service because of actions
    _ids: int = 0

    # ---- construction ----

    @classmethod
    def build(
        cls,
        managers: int,
        workers: int,
        image: ImageRef,
        target: ImageRef,
        *,
        channel: str = "stable",
        max_unavailable_workers: int = 1,
    ) -> Cluster:
        c = cls(
            [],
            [],
            {MANAGER_SET: image, WORKER_SET: image},
            channel,
            "swarm-manager000000",
            target,
            max_unavailable_workers,
        )
        for i in range(managers):
            c._add(f"swarm-manager{i:06d}", "manager", MANAGER_SET, str(i), image, leader=i == 0)
        for i in range(workers):
            c._add(f"swarm-worker{i:06d}", "worker", WORKER_SET, str(i), image)
        c.original_self = c.self_hostname
        return c

    def _new_id(self) -> str:
        self._ids += 1
        return f"n{self._ids:024d}"

    def _add(
        self, host: str, role: str, scale_set: str, iid: str, image: ImageRef, leader: bool = False
    ) -> None:
        self.nodes.append(
            SimNode(self._new_id(), host, role, leader=leader, created_at=self.now - 1000)
        )
        self.instances.append(SimInstance(iid, host, scale_set, image))
        self.originals[host] = (role, "active")

    def set_availability(self, host: str, availability: str) -> None:
        self.live(host).availability = availability
        self.originals[host] = (self.originals[host][0], availability)

    # ---- views ----

    def live(self, host: str) -> SimNode:
        found = [n for n in self.nodes if n.hostname == host and n.state != "down"]
        if not found:
            raise KeyError(host)
        return max(found, key=lambda n: n.created_at)

    def node(self, node_id: str) -> SimNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def instance(self, scale_set: str, iid: str) -> SimInstance:
        return next(i for i in self.instances if i.scale_set == scale_set and i.instance_id == iid)

    def snapshot(self) -> Snapshot:
        nodes = tuple(
            Node(
                n.id,
                n.hostname,
                n.role,
                n.state,
                n.availability,
                ("reachable" if n.reachable and n.state == "ready" else "unreachable")
                if n.role == "manager"
                else "",
                n.leader,
                {},
                n.created_at,
                n.running_tasks,
            )
            for n in self.nodes
        )
        sets = tuple(
            ScaleSet(
                name,
                "manager" if name == MANAGER_SET else "worker",
                {"channel": self.channel},
                self.models[name],
                tuple(
                    Instance(
                        i.instance_id,
                        i.computer_name,
                        i.image,
                        i.latest_model_applied,
                        i.provisioning_state,
                        "running",
                    )
                    for i in self.instances
                    if i.scale_set == name
                ),
            )
            for name in (MANAGER_SET, WORKER_SET)
        )
        return Snapshot(self.self_hostname, nodes, sets, self.now)

    # ---- safety ----

    def check(self) -> None:
        members = [n for n in self.nodes if n.role == "manager"]
        up = [n for n in members if n.state == "ready"]
        if members and 2 * len(up) <= len(members):
            raise Violation(f"raft quorum lost: {len(up)} of {len(members)} managers up")
        roles = {h: r for h, (r, _) in self.originals.items()}
        out_m = [h for h in self.out if roles.get(h) == "manager"]
        out_w = [h for h in self.out if roles.get(h) != "manager"]
        if len(out_m) > 1:
            raise Violation(f"two managers out of service: {sorted(out_m)}")
        if out_m and out_w:
            raise Violation(f"workers {sorted(out_w)} out while manager {out_m[0]} is out")
        if len(out_w) > max(1, self.max_unavailable_workers):
            raise Violation(
                f"{len(out_w)} workers out, maxUnavailableWorkers {self.max_unavailable_workers}"
            )

    def on_target(self, host: str) -> bool:
        return next(i for i in self.instances if i.computer_name == host).image == self.target

    # ---- actions ----

    def apply(self, a: Action) -> None:
        if a.node == self.self_hostname and a.kind in (d.DRAIN, d.DEMOTE, d.REIMAGE):
            raise Violation(f"{a.kind} on the controller's own node {a.node}")
        getattr(self, "_do_" + a.kind)(a)
        self.check()

    def _touch(self, host: str) -> None:
        if host == self.original_self:
            others = [h for h in self.originals if h != host and not self.on_target(h)]
            if others:
                raise Violation(f"self {host} touched before {sorted(others)[:3]}")
        self.out.add(host)

    def _do_drain(self, a: Action) -> None:
        n = self.node(a.node_id)
        assert n is not None and n.state == "ready", f"drain of a missing/down node {a}"
        self._touch(n.hostname)
        n.availability = "drain"
        inst = next(i for i in self.instances if i.computer_name == n.hostname)
        if n.running_tasks and n.drain_at is None and inst.drain_delay is not None:
            n.drain_at = self.now + inst.drain_delay

    def _do_demote(self, a: Action) -> None:
        n = self.node(a.node_id)
        assert n is not None
        self._touch(n.hostname)
        n.role, n.leader = "worker", False
        if not any(m.leader for m in self.nodes):
            nxt = next((m for m in self.nodes if m.role == "manager" and m.state == "ready"), None)
            if nxt is not None:
                nxt.leader = True

    def _do_set_model_image(self, a: Action) -> None:
        img = ImageRef(**a.params["image"])
        if img != self.target:
            raise Violation(f"scale set {a.scale_set} set to {img}, not the target")
        if self.models[a.scale_set] != img:
            self.models[a.scale_set] = img
            for i in self.instances:
                if i.scale_set == a.scale_set:
                    i.latest_model_applied = i.image == img

    def _do_reimage(self, a: Action) -> None:
        inst = self.instance(a.scale_set, a.instance_id)
        if inst.image == self.target:
            raise Violation(f"reimage of {inst.computer_name}, already on the target")
        if inst.provisioning_state != "Succeeded" or inst.reimages:
            raise Violation(f"{inst.computer_name} reimaged twice")
        if self.models[a.scale_set] != self.target:
            raise Violation(f"{inst.computer_name} reimaged before its scale set model changed")
        self._touch(inst.computer_name)
        for n in self.nodes:
            if n.hostname == inst.computer_name and n.state != "down":
                if n.role == "manager":
                    raise Violation(f"manager {n.hostname} reimaged without being demoted")
                n.state, n.leader = "down", False
        inst.reimages += 1
        inst.provisioning_state = "Updating"
        inst.reimage_done_at = self.now + self.reimage_seconds
        inst.reimage_image = self.models[a.scale_set]

    def _remove(self, a: Action) -> None:
        n = self.node(a.node_id)
        if n is None:
            return
        if n.state != "down":
            raise Violation(f"removal of the live node entry {n.hostname} {n.id}")
        if n.role == "manager":  # the runtime demotes first
            n.role = "worker"
        self.nodes.remove(n)

    _do_remove_node = _remove
    _do_remove_down_node = _remove

    def _do_set_availability(self, a: Action) -> None:
        n = self.node(a.node_id)
        assert n is not None
        n.availability = a.params["availability"]

    def _do_handover_lease(self, a: Action) -> None:
        if a.node != self.self_hostname:
            raise Violation(f"handover from {a.node}, but self is {self.self_hostname}")
        others = [h for h in self.originals if h != a.node and not self.on_target(h)]
        if others:
            raise Violation(f"handover while {sorted(others)[:3]} are not upgraded")
        heirs = sorted(
            n.hostname
            for n in self.nodes
            if n.role == "manager" and n.state == "ready" and n.hostname != a.node
        )
        if heirs:
            self.self_hostname = heirs[0]

    # ---- time ----

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for n in self.nodes:
            if n.drain_at is not None and self.now >= n.drain_at:
                n.running_tasks, n.drain_at = 0, None
            if n.unreachable_until and self.now >= n.unreachable_until:
                n.reachable, n.unreachable_until = True, 0.0
        for inst in self.instances:
            if inst.reimage_done_at is None or self.now < inst.reimage_done_at:
                continue
            inst.reimage_done_at = None
            if inst.fate == "fail":
                inst.provisioning_state = "Failed"
                continue
            assert inst.reimage_image is not None
            inst.image = inst.reimage_image
            inst.latest_model_applied = inst.image == self.models[inst.scale_set]
            inst.provisioning_state = "Succeeded"
            if inst.fate == "hang":
                continue
            role = "manager" if inst.scale_set == MANAGER_SET else "worker"
            self.nodes.append(
                SimNode(
                    self._new_id(), inst.computer_name, role, created_at=self.now, running_tasks=0
                )
            )
            self.out.discard(inst.computer_name)
        self.check()


@dataclass
class Chaos:
    """Fault rates of the runtime around the planner (all 0: a perfect runtime)."""

    crash_before_write: float = 0.0  # the decision is lost entirely
    crash_after_write: float = 0.0  # progress persisted, no action ran
    lost_action: float = 0.0  # an action silently never arrives
    failed_action: float = 0.0  # an action fails: the rest of the list is not run


Planner = Callable[[Desired, Snapshot, Progress | None, Catalog, float], Decision]


@dataclass
class Run:
    decisions: list[Decision]
    final: Decision
    progress: Progress | None


def drive(
    plan: Planner,
    cluster: Cluster,
    desired: Desired,
    catalog: Catalog,
    *,
    rng: random.Random | None = None,
    chaos: Chaos | None = None,
    max_passes: int = 5000,
    on_decision: Callable[[Decision], None] | None = None,
) -> Run:
    """Reconcile until done/refused/halted, like the runtime: plan, persist, act, requeue."""
    rng = rng or random.Random(0)
    chaos = chaos or Chaos()
    progress: Progress | None = None
    decisions: list[Decision] = []
    for _ in range(max_passes):
        dec = plan(desired, cluster.snapshot(), progress, catalog, cluster.now)
        decisions.append(dec)
        if on_decision is not None:
            on_decision(dec)
        if dec.verdict in (d.DONE, d.REFUSED, d.HALTED):
            return Run(decisions, dec, progress)
        progress = _execute(dec, progress, cluster, rng, chaos)
        cluster.advance(max(dec.requeue_after, 0.5))
    raise AssertionError(f"no terminal verdict after {max_passes} passes: {decisions[-1]}")


def _execute(
    dec: Decision, progress: Progress | None, cluster: Cluster, rng: random.Random, chaos: Chaos
) -> Progress | None:
    """What the runtime does with one decision; returns the progress now stored."""
    if rng.random() < chaos.crash_before_write:
        return progress
    if dec.progress is not None:  # write-ahead: the JSON round trip of the config label
        progress = Progress.from_dict(json.loads(json.dumps(dec.progress.to_dict())))
    if rng.random() < chaos.crash_after_write:
        return progress
    for action in dec.actions:
        if rng.random() < chaos.lost_action:
            continue
        if rng.random() < chaos.failed_action:
            break
        cluster.apply(action)
    return progress


def assert_converged(cluster: Cluster) -> None:
    """After `done`: every instance on the target, one Ready entry per host, roles and
    availabilities as before, nobody out of service."""
    for inst in cluster.instances:
        assert inst.image == cluster.target, inst
        assert inst.provisioning_state == "Succeeded", inst
    hosts = [n.hostname for n in cluster.nodes]
    assert sorted(hosts) == sorted(cluster.originals), hosts
    for n in cluster.nodes:
        role, availability = cluster.originals[n.hostname]
        assert n.state == "ready" and n.role == role and n.availability == availability, n
    assert not cluster.out, cluster.out
