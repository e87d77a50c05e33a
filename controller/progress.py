"""The persisted memory of a rollout: which nodes are in flight, in which phase, since when.

The planner returns the next `Progress` in its `Decision`; the runtime stores `to_dict()` (JSON)
in a Docker config label with compare-and-swap BEFORE it runs the decision's actions
(write-ahead). The record stays small for any cluster size: only nodes in flight (or halted)
have a `NodeProgress`; finished nodes are a list of hostnames; the history is bounded.

Phases of a node record (the step whose action was issued, or is being waited on):
drain → demote (managers) → model (scale-set model set to the target) → reimage
(manual upgrade requested; waiting for the node to rejoin with a new id) → remove (old entry)
→ restore (original availability) → finished (the record leaves `nodes`, the hostname joins `done`).

A rollout has three phases (`phase`): resources (the release's ARM template) → nodes → services
(the platform's swarm services); `resources`/`services` hold a `PhaseRecord` each (what was
issued last, since when, which services are done). An empty `phase` is a record written before
phases existed: the nodes phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from controller import fields as jf

DRAIN = "drain"
DEMOTE = "demote"
MODEL = "model"
REIMAGE = "reimage"
REMOVE = "remove"
RESTORE = "restore"
PHASES = (DRAIN, DEMOTE, MODEL, REIMAGE, REMOVE, RESTORE)
# Only in history entries:
FINISHED = "finished"
HALTED = "halted"
HANDOVER = "handover"
RESUMED = "resumed"

HISTORY_LIMIT = 64

# Rollout phases, in order.
PHASE_RESOURCES = "resources"
PHASE_NODES = "nodes"
PHASE_SERVICES = "services"
PHASE_DONE = "done"
ROLLOUT_PHASES = (PHASE_RESOURCES, PHASE_NODES, PHASE_SERVICES, PHASE_DONE)


@dataclass(frozen=True)
class PhaseRecord:
    """The memory of the resources or services phase.

    `item`/`target`: what was issued last and toward what (the deployment name and the template
    digest, or a service name and its new image), `since` when; `done`: services finished.
    """

    started_at: float
    item: str = ""
    target: str = ""
    since: float = 0.0
    done: tuple[str, ...] = ()
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"startedAt": self.started_at, "finished": self.finished}
        if self.item:
            d.update(item=self.item, target=self.target, since=self.since)
        if self.done:
            d["done"] = list(self.done)
        return d

    @classmethod
    def from_dict(cls, value: Any, where: str) -> PhaseRecord:
        o = jf.obj(value, where)
        done = jf.array(o, "done", where)
        if not all(isinstance(x, str) for x in done):
            raise ValueError(f"{where}.done: expected a list of names")
        return cls(
            started_at=jf.number(o, "startedAt", where, default=0.0),
            item=jf.string(o, "item", where, default=""),
            target=jf.string(o, "target", where, default=""),
            since=jf.number(o, "since", where, default=0.0),
            done=tuple(done),
            finished=jf.boolean(o, "finished", where, default=False),
        )


@dataclass(frozen=True)
class NodeProgress:
    """One node in flight. `role`/`availability` are the node's originals, restored at the end."""

    hostname: str
    scale_set: str
    instance_id: str
    role: str
    availability: str
    old_node_id: str
    phase: str
    phase_since: float
    new_node_id: str = ""
    attempts: int = 0  # reimage requests sent
    reimage_requested_at: float = 0.0
    halted_reason: str = ""
    retry: bool = False  # set by resume: a failed reimage may be requested once more
    # since when every other manager has been seen Ready and Reachable before the demote
    settled_since: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "scaleSet": self.scale_set,
            "instanceId": self.instance_id,
            "role": self.role,
            "availability": self.availability,
            "oldNodeId": self.old_node_id,
            "phase": self.phase,
            "phaseSince": self.phase_since,
        }
        if self.new_node_id:
            d["newNodeId"] = self.new_node_id
        if self.attempts:
            d["attempts"] = self.attempts
            d["reimageRequestedAt"] = self.reimage_requested_at
        if self.halted_reason:
            d["haltedReason"] = self.halted_reason
        if self.retry:
            d["retry"] = True
        if self.settled_since:
            d["managersSettledSince"] = self.settled_since
        return d

    @classmethod
    def from_dict(cls, hostname: str, value: Any, where: str) -> NodeProgress:
        o = jf.obj(value, where)
        return cls(
            hostname=hostname,
            scale_set=jf.string(o, "scaleSet", where),
            instance_id=jf.string(o, "instanceId", where),
            role=jf.string(o, "role", where, choices=("manager", "worker")),
            availability=jf.string(o, "availability", where, choices=("active", "pause", "drain")),
            old_node_id=jf.string(o, "oldNodeId", where),
            phase=jf.string(o, "phase", where, choices=PHASES),
            phase_since=jf.number(o, "phaseSince", where),
            new_node_id=jf.string(o, "newNodeId", where, default=""),
            attempts=jf.integer(o, "attempts", where, default=0),
            reimage_requested_at=jf.number(o, "reimageRequestedAt", where, default=0.0),
            halted_reason=jf.string(o, "haltedReason", where, default=""),
            retry=jf.boolean(o, "retry", where, default=False),
            settled_since=jf.number(o, "managersSettledSince", where, default=0.0),
        )


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    hostname: str
    phase: str


def _no_nodes() -> Mapping[str, NodeProgress]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Progress:
    """A rollout toward (`channel`, `target_version`) for the declaration `desired_digest`.

    `halted_code` non-empty means halted: nothing more is touched until the declaration's digest
    changes or `resumed()` is stored. `handover_from`/`handover_at` record the last lease handover.
    """

    rollout_id: str
    channel: str
    target_version: str
    started_at: float
    desired_digest: str
    nodes: Mapping[str, NodeProgress] = field(default_factory=_no_nodes)
    done: tuple[str, ...] = ()
    last_done_at: float = 0.0
    history: tuple[HistoryEntry, ...] = ()
    halted_code: str = ""
    halted_message: str = ""
    halted_node: str = ""
    halted_at: float = 0.0
    handover_from: str = ""
    handover_at: float = 0.0
    phase: str = ""  # one of ROLLOUT_PHASES; "" = written before phases existed (nodes)
    resources: PhaseRecord | None = None
    services: PhaseRecord | None = None

    @property
    def halted(self) -> bool:
        return bool(self.halted_code)

    def with_history(self, at: float, hostname: str, phase: str) -> Progress:
        """This progress with one more history entry (the oldest dropped past HISTORY_LIMIT)."""
        entries = (*self.history, HistoryEntry(at, hostname, phase))
        return replace(self, history=entries[-HISTORY_LIMIT:])

    def with_node(self, record: NodeProgress) -> Progress:
        nodes = dict(self.nodes)
        nodes[record.hostname] = record
        return replace(self, nodes=MappingProxyType(nodes))

    def without_node(self, hostname: str) -> Progress:
        nodes = {h: r for h, r in self.nodes.items() if h != hostname}
        return replace(self, nodes=MappingProxyType(nodes))

    def halt(self, code: str, message: str, hostname: str, now: float) -> Progress:
        """This progress, halted by `hostname` (nothing more is touched until resumed)."""
        p = replace(
            self, halted_code=code, halted_message=message, halted_node=hostname, halted_at=now
        )
        rec = p.nodes.get(hostname)
        if rec is not None:
            p = p.with_node(replace(rec, halted_reason=message, retry=False))
        return p.with_history(now, hostname, HALTED)

    def resumed(self, now: float) -> Progress:
        """The operator's resume: clear the halt and give the halted node a fresh timeout.

        The halted node keeps its phase; its timers restart at `now` and a failed reimage may be
        requested once more (`retry`). Used by the planner when the declaration's digest changes
        and available to the runtime/CLI for an explicit resume.
        """
        if not self.halted:
            return self
        p = replace(self, halted_code="", halted_message="", halted_node="", halted_at=0.0)
        rec = p.nodes.get(self.halted_node)
        if rec is not None:
            p = p.with_node(
                replace(
                    rec,
                    phase_since=now,
                    reimage_requested_at=now if rec.attempts else 0.0,
                    halted_reason="",
                    retry=True,
                )
            )
        return p.with_history(now, self.halted_node, RESUMED)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "rolloutId": self.rollout_id,
            "channel": self.channel,
            "targetVersion": self.target_version,
            "startedAt": self.started_at,
            "desiredDigest": self.desired_digest,
            "nodes": {h: r.to_dict() for h, r in sorted(self.nodes.items())},
            "done": list(self.done),
            "lastDoneAt": self.last_done_at,
            "history": [[e.at, e.hostname, e.phase] for e in self.history],
        }
        if self.halted:
            d["halted"] = {
                "code": self.halted_code,
                "message": self.halted_message,
                "node": self.halted_node,
                "at": self.halted_at,
            }
        if self.handover_from:
            d["handover"] = {"from": self.handover_from, "at": self.handover_at}
        if self.phase:
            d["phase"] = self.phase
        phases = {
            name: rec.to_dict()
            for name, rec in ((PHASE_RESOURCES, self.resources), (PHASE_SERVICES, self.services))
            if rec is not None
        }
        if phases:
            d["phases"] = phases
        return d

    @classmethod
    def from_dict(cls, value: Any) -> Progress:
        o = jf.obj(value, "progress")
        raw_nodes = jf.get(o, "nodes", "", {})
        if not isinstance(raw_nodes, Mapping):
            raise ValueError(f"nodes: expected an object, got {type(raw_nodes).__name__}")
        nodes = {
            str(h): NodeProgress.from_dict(str(h), r, f"nodes.{h}") for h, r in raw_nodes.items()
        }
        done = jf.array(o, "done", "")
        for i, h in enumerate(done):
            if not isinstance(h, str):
                raise ValueError(f"done[{i}]: expected a hostname, got {h!r}")
        history: list[HistoryEntry] = []
        for i, e in enumerate(jf.array(o, "history", "")):
            ok = isinstance(e, list) and len(e) == 3 and isinstance(e[0], int | float)
            if not ok or not isinstance(e[1], str) or not isinstance(e[2], str):
                raise ValueError(f"history[{i}]: expected [time, hostname, phase], got {e!r}")
            history.append(HistoryEntry(float(e[0]), e[1], e[2]))
        halted = jf.obj(jf.get(o, "halted", "", {}), "halted")
        handover = jf.obj(jf.get(o, "handover", "", {}), "handover")
        phases = jf.obj(jf.get(o, "phases", "", {}), "phases")
        records = {
            name: PhaseRecord.from_dict(phases[name], f"phases.{name}")
            for name in (PHASE_RESOURCES, PHASE_SERVICES)
            if phases.get(name) is not None
        }
        return cls(
            rollout_id=jf.string(o, "rolloutId", ""),
            channel=jf.string(o, "channel", ""),
            target_version=jf.string(o, "targetVersion", ""),
            started_at=jf.number(o, "startedAt", "", default=0.0),
            desired_digest=jf.string(o, "desiredDigest", "", default=""),
            nodes=MappingProxyType(nodes),
            done=tuple(done),
            last_done_at=jf.number(o, "lastDoneAt", "", default=0.0),
            history=tuple(history[-HISTORY_LIMIT:]),
            halted_code=jf.string(halted, "code", "halted", default=""),
            halted_message=jf.string(halted, "message", "halted", default=""),
            halted_node=jf.string(halted, "node", "halted", default=""),
            halted_at=jf.number(halted, "at", "halted", default=0.0),
            handover_from=jf.string(handover, "from", "handover", default=""),
            handover_at=jf.number(handover, "at", "handover", default=0.0),
            phase=jf.string(o, "phase", "", default="", choices=("", *ROLLOUT_PHASES)),
            resources=records.get(PHASE_RESOURCES),
            services=records.get(PHASE_SERVICES),
        )
