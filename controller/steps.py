"""The per-node state machine: drain → demote → model → reimage → remove old entry → restore.

`advance` re-derives from the snapshot which steps have taken effect (the runtime persists the
progress BEFORE running the actions, so a recorded phase only says an action was *issued*) and
returns the node's next record, the actions still needed, and why. Every action it emits is
idempotent except the reimage, which is sent again only when the instance shows the first
request never arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from controller import decision as d
from controller import progress as pg
from controller import rules
from controller.catalog import ImageRef
from controller.decision import Action, Reason
from controller.model import Strategy
from controller.progress import NodeProgress
from controller.rules import ClusterView
from controller.snapshot import Node

# A lost reimage request is sent again only after this long (the instance view may lag).
REIMAGE_RETRY_AFTER = 30.0
MAX_REIMAGE_ATTEMPTS = 3
# A node entry Down before its reimage is waited for this long (from its phase's start) before
# the node counts as lost (a manager already demoted by the rollout is reimaged right away).
DOWN_GRACE = 60.0


@dataclass(frozen=True)
class Step:
    """Outcome of advancing one node: `record` None means the node is finished."""

    record: NodeProgress | None
    actions: tuple[Action, ...] = ()
    reason: Reason | None = None
    halt: Reason | None = None


def _enter(rec: NodeProgress, phase: str, now: float) -> NodeProgress:
    return rec if rec.phase == phase else replace(rec, phase=phase, phase_since=now)


def _halt(rec: NodeProgress, code: str, message: str) -> Step:
    return Step(rec, halt=Reason(code, message, d.WARNING))


def _wait(rec: NodeProgress, message: str) -> Step:
    return Step(rec, reason=Reason(d.NODE_IN_TRANSITION, message))


def _act(rec: NodeProgress, action: Action, message: str) -> Step:
    return Step(rec, actions=(action,), reason=Reason(d.UPGRADING, message))


def _demoted(rec: NodeProgress, old: Node) -> bool:
    """A manager this rollout drained and demoted: its entry is a drained worker now."""
    return (
        rec.role == "manager"
        and rec.phase in (pg.DEMOTE, pg.MODEL)
        and old.role == "worker"
        and old.availability == "drain"
    )


def _timed_out(rec: NodeProgress, now: float, limit: float) -> bool:
    return now - rec.phase_since > limit


def advance(
    rec: NodeProgress, view: ClusterView, target: ImageRef, strategy: Strategy, now: float
) -> Step:
    """The next step of one node in flight (see the module docstring)."""
    host = rec.hostname
    inst = view.instance(rec.scale_set, rec.instance_id)
    if inst is None:
        return _halt(
            rec,
            d.NODE_LOST,
            f"instance {rec.scale_set}/{rec.instance_id} of {host} disappeared during its upgrade",
        )
    old = view.node_by_id.get(rec.old_node_id)
    if rec.phase in (pg.DRAIN, pg.DEMOTE, pg.MODEL):
        # A Down entry is waited for, then lost — unless this rollout already drained and
        # demoted it: raft no longer counts it and the reimage wipes it anyway (a demoted
        # leader's entry shows Down for tens of seconds while it re-registers).
        down = old is not None and old.down and not _demoted(rec, old)
        if down and not _timed_out(rec, now, DOWN_GRACE):
            return _wait(rec, f"{host} ({rec.old_node_id[:12]}) is Down in its {rec.phase} "
                              f"phase; waiting up to {DOWN_GRACE:g}s for it to come back "
                              f"(a demoted leader can miss heartbeats while leadership moves)")
        if old is None or down:
            return _halt(
                rec,
                d.NODE_LOST,
                f"{host} ({rec.old_node_id[:12]}) left the swarm or went Down before its reimage",
            )
        return _before_reimage(rec, view, old, target, strategy, now)
    if rec.phase == pg.REIMAGE:
        return _reimaging(rec, view, old, target, strategy, now)
    return _after_rejoin(rec, view, old, strategy, now)


def _before_reimage(
    rec: NodeProgress,
    view: ClusterView,
    old: Node,
    target: ImageRef,
    strategy: Strategy,
    now: float,
) -> Step:
    host = rec.hostname
    if old.availability != "drain":
        rec = _enter(rec, pg.DRAIN, now)
        if _timed_out(rec, now, strategy.drain_timeout):
            return _halt(
                rec, d.NODE_TIMEOUT, f"{host} was not drained within {strategy.drain_timeout:g}s"
            )
        return _act(
            rec, Action(d.DRAIN, host, rec.scale_set, rec.instance_id, old.id), f"draining {host}"
        )
    if old.running_tasks > 0:
        rec = _enter(rec, pg.DRAIN, now)
        if _timed_out(rec, now, strategy.drain_timeout):
            return _halt(
                rec,
                d.NODE_TIMEOUT,
                f"{host} still runs {old.running_tasks} task(s) "
                f"after drainTimeout {strategy.drain_timeout:g}s",
            )
        return _wait(rec, f"draining {host}: {old.running_tasks} task(s) still running")
    if old.role == "manager":
        return _demote(rec, view, old, strategy, now)
    ss = view.sets[rec.scale_set]
    if ss.model != target:
        rec = _enter(rec, pg.MODEL, now)
        if _timed_out(rec, now, strategy.drain_timeout):
            return _halt(
                rec,
                d.NODE_TIMEOUT,
                f"the model of {ss.name} did not change to "
                f"{target.version} within {strategy.drain_timeout:g}s",
            )
        return _act(
            rec,
            Action(d.SET_MODEL_IMAGE, "", ss.name, params={"image": target.to_dict()}),
            f"setting the image of scale set {ss.name} to {target.version}",
        )
    return _request_reimage(rec, now, f"reimaging {host} ({ss.name}/{rec.instance_id})")


def _demote(
    rec: NodeProgress, view: ClusterView, old: Node, strategy: Strategy, now: float
) -> Step:
    """Demote only when every other manager is Ready and Reachable, in two observations at least
    `managerSettle` apart (ManagerSettle while confirming); a manager out resets the count."""
    host = rec.hostname
    rec = _enter(rec, pg.DEMOTE, now)
    blockers = rules.demote_blockers(view.snapshot.nodes, old.id)
    if blockers:
        # Waiting for them is not the node's fault: its demote timer starts afterwards.
        return Step(
            replace(rec, phase_since=now, settled_since=0.0),
            reason=Reason(
                d.MANAGER_UNREACHABLE,
                f"not demoting {host}: other managers not Ready and Reachable: "
                f"{rules.names(blockers)}",
                d.WARNING,
            ),
        )
    settle = strategy.manager_settle
    since = rec.settled_since if rec.settled_since > 0 else now
    if now - since < settle:
        return Step(
            replace(rec, settled_since=since),
            reason=Reason(
                d.MANAGER_SETTLE,
                f"confirming every other manager stays Ready and Reachable for {settle:g}s "
                f"before demoting {host} ({settle - (now - since):.0f}s left)",
            ),
        )
    # The demote timer runs from the end of the confirmation (or the phase's start, if later).
    if now - max(rec.phase_since, since + settle) > strategy.drain_timeout:
        return _halt(
            rec, d.NODE_TIMEOUT, f"{host} was not demoted within {strategy.drain_timeout:g}s"
        )
    return _act(
        replace(rec, settled_since=since),
        Action(d.DEMOTE, host, rec.scale_set, rec.instance_id, old.id),
        f"demoting {host} so the raft keeps a majority while it is reimaged",
    )


def _request_reimage(rec: NodeProgress, now: float, message: str) -> Step:
    rec = replace(
        rec,
        phase=pg.REIMAGE,
        phase_since=now,
        attempts=rec.attempts + 1,
        reimage_requested_at=now,
        retry=False,
    )
    return _act(
        rec,
        Action(d.REIMAGE, rec.hostname, rec.scale_set, rec.instance_id, rec.old_node_id),
        message,
    )


def _reimaging(
    rec: NodeProgress,
    view: ClusterView,
    old: Node | None,
    target: ImageRef,
    strategy: Strategy,
    now: float,
) -> Step:
    host = rec.hostname
    inst = view.instance(rec.scale_set, rec.instance_id)
    assert inst is not None  # checked by advance()
    new = view.live(host, exclude_id=rec.old_node_id)
    joined = (
        new is not None and new.state == "ready" and (rec.role != "manager" or new.healthy_manager)
    )
    if inst.image == target and inst.provisioning_state == "Succeeded" and joined:
        assert new is not None
        rec = replace(rec, phase=pg.REMOVE, phase_since=now, new_node_id=new.id)
        return _after_rejoin(rec, view, old, strategy, now)
    if inst.provisioning_state == "Failed":
        if rec.retry:
            return _request_reimage(rec, now, f"reimaging {host} again after a resume")
        return _halt(
            rec, d.NODE_TIMEOUT, f"the reimage of {host} failed (instance provisioningState Failed)"
        )
    if now - rec.reimage_requested_at > strategy.node_ready_timeout:
        return _halt(
            rec,
            d.NODE_TIMEOUT,
            f"{host} did not rejoin on {target.version} within "
            f"nodeReadyTimeout {strategy.node_ready_timeout:g}s",
        )
    never_arrived = (
        inst.image != target
        and not inst.latest_model_applied
        and inst.provisioning_state == "Succeeded"
        and old is not None
        and old.state == "ready"
        and view.sets[rec.scale_set].model == target
        and now - rec.reimage_requested_at >= REIMAGE_RETRY_AFTER
    )
    if never_arrived:
        if rec.attempts >= MAX_REIMAGE_ATTEMPTS:
            return _halt(
                rec,
                d.NODE_TIMEOUT,
                f"{rec.attempts} reimage requests for {host} never reached the instance",
            )
        return _request_reimage(
            rec,
            now,
            f"reimaging {host} again: the request of "
            f"{now - rec.reimage_requested_at:.0f}s ago never "
            f"reached the instance",
        )
    if inst.image == target and inst.provisioning_state == "Succeeded":
        return _wait(rec, f"waiting for {host} to rejoin the swarm with a new node id")
    return _wait(
        rec,
        f"waiting for the reimage of {host} "
        f"(instance {inst.provisioning_state}, {inst.power_state})",
    )


def _after_rejoin(
    rec: NodeProgress, view: ClusterView, old: Node | None, strategy: Strategy, now: float
) -> Step:
    host = rec.hostname
    new = view.node_by_id.get(rec.new_node_id)
    if new is not None and new.down and not _timed_out(rec, now, DOWN_GRACE):
        return _wait(rec, f"the new node entry of {host} ({rec.new_node_id[:12]}) is Down; "
                          f"waiting up to {DOWN_GRACE:g}s for it to come back")
    if new is None or new.down:
        return _halt(
            rec,
            d.NODE_LOST,
            f"the new node entry of {host} ({rec.new_node_id[:12]}) left the swarm or went Down",
        )
    if old is not None:
        rec = _enter(rec, pg.REMOVE, now)
        if old.state == "ready":
            if _timed_out(rec, now, strategy.node_ready_timeout):
                return _halt(
                    rec,
                    d.NODE_TIMEOUT,
                    f"the old entry of {host} is still Ready "
                    f"{strategy.node_ready_timeout:g}s after rejoin",
                )
            return _wait(rec, f"waiting for the old entry of {host} to turn Down")
        return _act(
            rec,
            Action(d.REMOVE_NODE, host, rec.scale_set, rec.instance_id, old.id),
            f"removing the old node entry {old.id[:12]} of {host}",
        )
    if new.availability != rec.availability:
        rec = _enter(rec, pg.RESTORE, now)
        return _act(
            rec,
            Action(
                d.SET_AVAILABILITY,
                host,
                rec.scale_set,
                rec.instance_id,
                new.id,
                {"availability": rec.availability},
            ),
            f"restoring availability {rec.availability} on {host}",
        )
    return Step(None, reason=Reason(d.UPGRADING, f"{host} is upgraded"))
