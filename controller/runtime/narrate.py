"""Turns what the planner decided into reconcile events for people.

Step events that mean "this has taken effect" are read off the change between the persisted
progress and the planner's next one (a phase left is a phase done); events that mean "this was
just done" come from the executor. The reasons of waits, refusals and halts repeat every pass,
so they go through `EventSink.note` (emitted on change, and again every `repeat_after`).
"""

from __future__ import annotations

from collections.abc import Callable

from controller import decision as d
from controller import progress as pg
from controller.decision import Decision
from controller.progress import Progress
from controller.runtime import events as ev
from controller.runtime.events import EventSink
from controller.snapshot import Snapshot

Emit = Callable[[str, str, str, str], None]


def rollout_id(progress: Progress | None, fallback: str) -> str:
    return progress.rollout_id if progress is not None else fallback


def progress_events(
    sink: EventSink, old: Progress | None, new: Progress | None, version: str,
    portal_urls: list[str],
) -> None:
    """Events for what the planner's new progress says has happened since the old one."""
    if new is None:
        return
    rid = new.rollout_id
    same = old is not None and old.rollout_id == rid

    def emit(type_: str, reason: str, obj: str, message: str) -> None:
        sink.emit(type_, reason, obj, message, rid, version)

    started_before = same and old is not None and bool(old.nodes or old.done or old.handover_from)
    if not started_before and (new.nodes or new.done):
        urls = " ".join(portal_urls)
        emit(ev.NORMAL, ev.ROLLOUT_STARTED, ev.rollout_object(rid),
             f"upgrading the swarm to {new.channel} {new.target_version}, one node at a time; "
             f"follow the scale sets in the Azure portal: {urls}")
    before = old.nodes if same and old is not None else {}
    for host, rec in new.nodes.items():
        prev = before.get(host)
        prev_phase = prev.phase if prev is not None else pg.DRAIN
        if prev_phase == pg.DRAIN and rec.phase != pg.DRAIN:
            emit(ev.NORMAL, ev.NODE_DRAINED, ev.node_object(host),
                 f"{host} is drained: no task of a service runs on it")
        if prev is not None and prev.phase == pg.REIMAGE and rec.phase not in (pg.REIMAGE,):
            _rejoined(emit, host, rec.scale_set, rec.instance_id, rec.new_node_id, rec.role)
    done_before = set(old.done) if same and old is not None else set()
    for host in new.done:
        if host in done_before:
            continue
        prev = before.get(host)
        if prev is not None and prev.phase == pg.REIMAGE:
            _rejoined(emit, host, prev.scale_set, prev.instance_id, "", prev.role)
        emit(ev.NORMAL, ev.NODE_UPGRADED, ev.node_object(host),
             f"{host} runs {new.target_version} ({len(new.done)} node(s) upgraded)")


def _rejoined(emit: Emit, host: str, scale_set: str, instance_id: str, node_id: str,
              role: str) -> None:
    emit(ev.NORMAL, ev.INSTANCE_REIMAGED, ev.node_object(host),
         f"instance {scale_set}/{instance_id} of {host} runs the target image")
    suffix = f" with the new node id {node_id[:12]}" if node_id else ""
    emit(ev.NORMAL, ev.NODE_REJOINED, ev.node_object(host),
         f"{host} rejoined the swarm as a {role}{suffix}")


def reason_events(sink: EventSink, decision: Decision, rid: str, version: str) -> None:
    """The decision's reasons: deduplicated (waits and refusals repeat every pass)."""
    obj = ev.rollout_object(rid)
    for reason in decision.reasons:
        if reason.code == d.UPGRADING and decision.verdict == d.PROCEED:
            continue  # the step events tell this better
        severity = reason.severity
        if decision.verdict in (d.REFUSED, d.HALTED):
            severity = ev.WARNING
        sink.note(severity, reason.code, obj, reason.message, rid, version)


def succeeded_message(snapshot: Snapshot, progress: Progress) -> str:
    """RolloutSucceeded: the target, and the managers whose SSH host keys changed."""
    managers = sorted(
        {n.hostname for n in snapshot.nodes if n.role == "manager" and n.hostname in progress.done}
    )
    note = (
        f"; the SSH host keys of the reimaged managers changed: remove their old entries from "
        f"~/.ssh/known_hosts (ssh-keygen -R <host>) for {', '.join(managers)}"
        if managers else ""
    )
    return (f"every node runs {progress.channel} {progress.target_version} "
            f"({len(progress.done)} node(s) upgraded){note}")
