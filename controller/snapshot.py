"""What the runtime observed of the swarm and its scale sets, as frozen values (pure, no I/O).

`Snapshot.from_dict` reads the camelCase JSON shape of docs/architecture.md (the shape that
`swarm-upgrade plan --snapshot` reads and `crd/snapshot.schema.json` documents) and raises a
`ValueError` whose one-line message names the field path on bad input; `to_dict` writes it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from controller import fields as jf
from controller.catalog import ImageRef
from controller.observed import Observed

NODE_STATES = ("ready", "down", "unknown", "disconnected")
AVAILABILITIES = ("active", "pause", "drain")
REACHABILITIES = ("reachable", "unreachable", "unknown", "")
ROLES = ("manager", "worker")
PROVISIONING_STATES = ("Succeeded", "Updating", "Creating", "Deleting", "Failed")
POWER_STATES = ("running", "stopped", "deallocated", "starting", "stopping", "unknown")


@dataclass(frozen=True)
class Node:
    """One swarm node entry (`docker node inspect`)."""

    id: str
    hostname: str
    role: str
    state: str
    availability: str
    reachability: str = ""
    leader: bool = False
    engine_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    created_at: float = 0.0
    running_tasks: int = 0

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def healthy_manager(self) -> bool:
        """A manager that is Ready and Reachable (counts towards raft quorum), or the leader
        itself while its own entry shows Down or Unknown.

        Swarm tracks node status (Ready/Down) only in the leader's dispatcher, from the agents'
        heartbeats; raft membership (Reachable, Leader) is what quorum depends on. After
        leadership moves, the new leader's own entry can stay Down or Unknown while it leads
        (moby/moby#25017, #35109; seen in the reliability campaign for minutes). A snapshot
        lists the nodes through the leader, so a leader named in it answered: it is in.
        """
        if self.role != "manager" or self.reachability != "reachable":
            return False
        return self.ready or self.leader

    @property
    def down(self) -> bool:
        """Out of the swarm: state Down, and not a manager that raft still reaches (whose
        Down status is the dispatcher's view only: it is waited for, never removed)."""
        return self.state == "down" and not (
            self.role == "manager" and self.reachability == "reachable"
        )


@dataclass(frozen=True)
class Instance:
    """One scale-set VM instance; `image` is the image it currently runs."""

    instance_id: str
    computer_name: str
    image: ImageRef | None
    latest_model_applied: bool = True
    provisioning_state: str = "Succeeded"
    power_state: str = "running"


@dataclass(frozen=True)
class ScaleSet:
    """One VM scale set: its tags, its model's image, its instances."""

    name: str
    role: str
    tags: Mapping[str, str]
    model: ImageRef | None
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class Snapshot:
    """Everything one reconcile pass sees; `self_hostname` is the manager the controller runs on."""

    self_hostname: str
    nodes: tuple[Node, ...]
    scale_sets: tuple[ScaleSet, ...]
    observed_at: float = 0.0
    # Deployments, the template check and services, for the resources and services phases.
    observed: Observed = field(default_factory=Observed)

    def scale_set(self, name: str) -> ScaleSet | None:
        for s in self.scale_sets:
            if s.name == name:
                return s
        return None

    @classmethod
    def from_dict(cls, d: Any) -> Snapshot:
        obj = jf.obj(d, "snapshot")
        nodes = tuple(
            _node(n, f"nodes[{i}]") for i, n in enumerate(jf.array(obj, "nodes", "", required=True))
        )
        sets = tuple(
            _scale_set(s, f"scaleSets[{i}]")
            for i, s in enumerate(jf.array(obj, "scaleSets", "", required=True))
        )
        return cls(
            self_hostname=jf.string(obj, "self", "", default=""),
            nodes=nodes,
            scale_sets=sets,
            observed_at=jf.number(obj, "observedAt", "", default=0.0),
            observed=Observed.from_dict(obj),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.observed.to_dict(),
            "self": self.self_hostname,
            "observedAt": self.observed_at,
            "nodes": [
                {
                    "id": n.id,
                    "hostname": n.hostname,
                    "role": n.role,
                    "state": n.state,
                    "availability": n.availability,
                    "reachability": n.reachability,
                    "leader": n.leader,
                    "engineLabels": dict(n.engine_labels),
                    "createdAt": n.created_at,
                    "runningTasks": n.running_tasks,
                }
                for n in self.nodes
            ],
            "scaleSets": [
                {
                    "name": s.name,
                    "role": s.role,
                    "tags": dict(s.tags),
                    "model": s.model.to_dict() if s.model else None,
                    "instances": [
                        {
                            "instanceId": i.instance_id,
                            "computerName": i.computer_name,
                            "image": i.image.to_dict() if i.image else None,
                            "latestModelApplied": i.latest_model_applied,
                            "provisioningState": i.provisioning_state,
                            "powerState": i.power_state,
                        }
                        for i in s.instances
                    ],
                }
                for s in self.scale_sets
            ],
        }


def _image(obj: Mapping[str, Any], key: str, where: str) -> ImageRef | None:
    value = obj.get(key)
    if value is None:
        return None
    path = jf.field_path(where, key)
    img = jf.obj(value, path)
    return ImageRef(
        publisher=jf.string(img, "publisher", path),
        offer=jf.string(img, "offer", path),
        sku=jf.string(img, "sku", path),
        version=jf.string(img, "version", path),
    )


def node_from_dict(value: Any, where: str = "node") -> Node:
    """A `Node` from its snapshot shape (`nodes[]`); ValueError names the bad field."""
    return _node(value, where)


def _node(value: Any, where: str) -> Node:
    obj = jf.obj(value, where)
    return Node(
        id=jf.string(obj, "id", where),
        hostname=jf.string(obj, "hostname", where),
        role=jf.string(obj, "role", where, choices=ROLES),
        state=jf.string(obj, "state", where, choices=NODE_STATES),
        availability=jf.string(obj, "availability", where, choices=AVAILABILITIES),
        reachability=jf.string(obj, "reachability", where, default="", choices=REACHABILITIES),
        leader=jf.boolean(obj, "leader", where, default=False),
        engine_labels=jf.labels(obj, "engineLabels", where),
        created_at=jf.number(obj, "createdAt", where, default=0.0),
        running_tasks=jf.integer(obj, "runningTasks", where, default=0),
    )


def _instance(value: Any, where: str) -> Instance:
    obj = jf.obj(value, where)
    return Instance(
        instance_id=jf.string(obj, "instanceId", where),
        computer_name=jf.string(obj, "computerName", where),
        image=_image(obj, "image", where),
        latest_model_applied=jf.boolean(obj, "latestModelApplied", where, default=True),
        provisioning_state=jf.string(
            obj, "provisioningState", where, default="Succeeded", choices=PROVISIONING_STATES
        ),
        power_state=jf.string(obj, "powerState", where, default="running", choices=POWER_STATES),
    )


def _scale_set(value: Any, where: str) -> ScaleSet:
    obj = jf.obj(value, where)
    return ScaleSet(
        name=jf.string(obj, "name", where),
        role=jf.string(obj, "role", where, choices=ROLES),
        tags=jf.labels(obj, "tags", where),
        model=_image(obj, "model", where),
        instances=tuple(
            _instance(i, f"{where}.instances[{k}]")
            for k, i in enumerate(jf.array(obj, "instances", where))
        ),
    )
