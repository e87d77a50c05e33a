"""The pure planner: plan(desired, snapshot, progress, catalog, now) -> Decision.

One call per reconcile pass. The checks run in this order, the first that applies decides:
paused (when no node is in flight; otherwise those finish first) → the declaration itself
(InvalidSpec, UnknownVersion) → a halt recorded in the progress → refusals against the cluster
(rules.check_cluster, DownNodes) → removal of Down nodes when the declaration allows it →
ManagerUnreachable → NodeInTransition → the per-node steps (steps.py) of the nodes in flight,
then the start of the next nodes.

Order and safety: managers first (followers before the leader, then by hostname), then workers
(by hostname), and the manager the controller runs on (`self`) last of all, by handing the
lease over to a replica on another manager. At most one manager is in flight, and never
together with a worker; up to maxUnavailableWorkers workers at once. A node whose instance
already runs the target is never touched.
"""

from __future__ import annotations

from dataclasses import replace

from controller import decision as d
from controller import progress as pg
from controller import rules, steps
from controller.catalog import Catalog, Release
from controller.decision import Action, Decision, Reason
from controller.model import Desired
from controller.progress import NodeProgress, Progress
from controller.rules import ClusterView
from controller.snapshot import Snapshot

STEP_REQUEUE = 2.0  # a step is in flight: look again soon
WAIT_REQUEUE = 10.0  # waiting for something the rollout did not cause
IDLE_REQUEUE = 60.0  # done, refused, halted, paused
# A new node starts only once every service runs all its tasks again, or this long after the
# previous node finished (then with a Warning: a service that cannot converge must not stall
# the rollout for ever).
SERVICES_WAIT = 120.0


def plan(
    desired: Desired,
    snapshot: Snapshot,
    progress: Progress | None,
    catalog: Catalog,
    now: float,
) -> Decision:
    """Decide the next step of the rollout toward `desired` (see the module docstring)."""
    if desired.paused and (progress is None or not progress.nodes):
        return Decision(
            d.WAIT,
            (Reason(d.PAUSED, "the declaration is paused: nothing is touched"),),
            progress=progress,
            requeue_after=IDLE_REQUEUE,
        )
    problems = rules.check_spec(desired, snapshot, catalog)
    if problems:
        return Decision(d.REFUSED, tuple(problems), progress=progress, requeue_after=IDLE_REQUEUE)
    wanted = catalog.release(desired.channel, desired.version)
    assert wanted is not None  # check_spec refuses an unknown version
    view = ClusterView(desired, snapshot, catalog)
    prog, notes = _carry(progress, desired, wanted, now)
    target = catalog.release(prog.channel, prog.target_version) or wanted
    order = rollout_order(view, prog)

    if prog.halted:
        halt = Reason(
            prog.halted_code,
            f"{prog.halted_message} (halted; change the declaration "
            f"or resume the rollout to continue)",
            d.WARNING,
        )
        return Decision(d.HALTED, (halt,), order, progress=prog, requeue_after=IDLE_REQUEUE)

    in_flight = set(prog.nodes)
    found = rules.check_cluster(view, wanted, in_flight)
    warnings = [r for r in found if r.severity == d.WARNING]
    refusals = [r for r in found if r.severity != d.WARNING]
    downs = rules.foreign_down_nodes(view, in_flight)
    # A manager that goes Down in the middle of a rollout is waited for, not refused as a Down
    # node (whose advice, `docker node rm`, would be wrong for a manager that comes back) nor
    # removed with removeDownNodes; before the rollout starts, the refusal stands.
    lost = [n for n in downs if n.role == "manager"] if (prog.nodes or prog.done) else []
    if lost:
        downs = [n for n in downs if n.role != "manager"]
        counted = rules.manager_hosts(view, in_flight) | {n.hostname for n in lost}
        if len(counted) >= rules.MIN_MANAGERS:
            refusals = [r for r in refusals if r.code != d.TOO_FEW_MANAGERS]
    if downs and not desired.remove_down_nodes:
        refusals.append(rules.down_nodes_reason(downs, removing=False))
    if refusals:
        kept = _unsettled(progress) if progress is not None else None
        return Decision(
            d.REFUSED, tuple(refusals), order, progress=kept, requeue_after=IDLE_REQUEUE
        )
    notes = notes + warnings
    if lost:
        listed = ", ".join(f"{n.hostname} ({n.id[:12]})" for n in lost)
        return _wait(order, prog, [Reason(
            d.MANAGER_UNREACHABLE,
            f"waiting: manager(s) Down in the middle of the rollout: {listed}; it continues "
            f"when they are back",
            d.WARNING,
        ), *notes])

    if downs:
        if not rules.quorum_holds(view):
            return _wait(order, prog, rules.check_managers(view, in_flight) + notes)
        actions = tuple(Action(d.REMOVE_DOWN_NODE, n.hostname, node_id=n.id) for n in downs)
        return Decision(
            d.PROCEED,
            (rules.down_nodes_reason(downs, removing=True), *notes),
            order,
            actions,
            prog,
            STEP_REQUEUE,
        )

    waiting = rules.check_managers(view, in_flight) or rules.check_transitions(view, in_flight)
    if waiting:
        return _wait(order, prog, waiting + notes)
    return _steps(view, prog, target, wanted, order, notes, now)


def _wait(order: tuple[str, ...], prog: Progress, reasons: list[Reason]) -> Decision:
    return Decision(
        d.WAIT, tuple(reasons), order, progress=_unsettled(prog), requeue_after=WAIT_REQUEUE
    )


def _unsettled(prog: Progress) -> Progress:
    """`prog` with every manager's demote confirmation (steps._demote) started over: a pass that
    stops before the steps saw something wrong, so it cannot count as a healthy observation."""
    for rec in list(prog.nodes.values()):
        if rec.settled_since:
            prog = prog.with_node(replace(rec, settled_since=0.0))
    return prog


def _carry(
    progress: Progress | None, desired: Desired, wanted: Release, now: float
) -> tuple[Progress, list[Reason]]:
    """The progress this pass continues: a new rollout, the same one, or a resumed one."""
    notes: list[Reason] = []
    same_target = progress is not None and (progress.channel, progress.target_version) == (
        wanted.channel,
        wanted.version,
    )
    if progress is None or (not same_target and not progress.nodes):
        fresh = Progress(
            f"{wanted.version}@{int(now)}", wanted.channel, wanted.version, now, desired.digest
        )
        return fresh, notes
    prog = progress
    if not same_target:
        notes.append(
            Reason(
                d.TARGET_CHANGED,
                f"the target changed to {wanted.version}: finishing the nodes in flight "
                f"toward {prog.target_version} first",
                d.WARNING,
            )
        )
    if prog.desired_digest != desired.digest:
        if prog.halted:
            notes.append(
                Reason(
                    d.RESUMED,
                    f"the declaration changed: resuming after "
                    f"{prog.halted_code} on {prog.halted_node}",
                )
            )
            prog = prog.resumed(now)
        prog = replace(prog, desired_digest=desired.digest)
    return prog, notes


def rollout_order(view: ClusterView, prog: Progress) -> tuple[str, ...]:
    """Hostnames of the rollout: managers (followers, then the leader), workers, then self."""

    def key(host: str) -> tuple[int, int, str]:
        rec = prog.nodes.get(host)
        live = view.live(host)
        role = rec.role if rec else (live.role if live else "worker")
        if host == view.self_hostname:
            group = 2
        else:
            group = 0 if role == "manager" else 1
        leader = 1 if (live is not None and live.leader) else 0
        return (group, leader, host)

    return tuple(sorted(view.members, key=key))


def _steps(
    view: ClusterView,
    prog: Progress,
    target: Release,
    wanted: Release,
    order: tuple[str, ...],
    notes: list[Reason],
    now: float,
) -> Decision:
    strategy = view.desired.strategy
    actions: list[Action] = []
    reasons: list[Reason] = []
    # 1. Advance the nodes in flight, in rollout order.
    for host in sorted(prog.nodes, key=lambda h: order.index(h) if h in order else len(order)):
        step = steps.advance(prog.nodes[host], view, target.image, strategy, now)
        if step.halt is not None:
            assert step.record is not None
            halted = prog.with_node(step.record).halt(step.halt.code, step.halt.message, host, now)
            return Decision(
                d.HALTED, (step.halt, *notes), order, progress=halted, requeue_after=IDLE_REQUEUE
            )
        if step.record is None:
            prog = prog.without_node(host).with_history(now, host, pg.FINISHED)
            prog = replace(prog, done=(*prog.done, host), last_done_at=now)
        else:
            before = prog.nodes[host]
            if (step.record.phase, step.record.attempts) != (before.phase, before.attempts):
                prog = prog.with_history(now, host, step.record.phase)
            prog = prog.with_node(step.record)
        actions.extend(a for a in step.actions if a not in actions)
        if step.reason is not None and step.reason not in reasons:
            reasons.append(step.reason)
    # 2. Start the next nodes, if the rules allow.
    started = _start(view, prog, target, wanted, order, now)
    prog = started.progress
    actions.extend(a for a in started.actions if a not in actions)
    reasons.extend(r for r in started.reasons if r not in reasons)
    if actions:
        return Decision(d.PROCEED, (*reasons, *notes), order, tuple(actions), prog, STEP_REQUEUE)
    if prog.nodes:
        return Decision(d.WAIT, (*reasons, *notes), order, (), prog, STEP_REQUEUE)
    if started.pause_left > 0:
        return Decision(d.WAIT, (*reasons, *notes), order, (), prog, started.pause_left)
    if not started.pending:
        done = Reason(d.UP_TO_DATE, f"every node runs {target.version}")
        return Decision(d.DONE, (done, *reasons, *notes), order, (), prog, IDLE_REQUEUE)
    return Decision(d.WAIT, (*reasons, *notes), order, (), prog, WAIT_REQUEUE)


class _Started:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.actions: list[Action] = []
        self.reasons: list[Reason] = []
        self.pending = False
        self.pause_left = 0.0


def _start(
    view: ClusterView,
    prog: Progress,
    target: Release,
    wanted: Release,
    order: tuple[str, ...],
    now: float,
) -> _Started:
    out = _Started(prog)
    strategy = view.desired.strategy
    todo = [
        h for h in order if h not in prog.nodes and view.members[h].instance.image != target.image
    ]
    out.pending = bool(todo)
    if not todo:
        return out
    if view.desired.paused:
        out.reasons.append(
            Reason(
                d.PAUSED,
                "the declaration is paused: the nodes in flight finish, no new node starts",
            )
        )
        return out
    if target != wanted:
        out.reasons.append(
            Reason(
                d.TARGET_CHANGED, "no new node starts until the nodes in flight finish", d.WARNING
            )
        )
        return out
    flying = list(prog.nodes.values())
    managers_flying = [r for r in flying if r.role == "manager"]
    me = view.self_hostname
    managers = [h for h in todo if h != me and _role(view, h) == "manager"]
    workers = [h for h in todo if h != me and _role(view, h) != "manager"]
    if flying and (managers or not workers):
        return out  # a manager (or the last workers) in flight: one at a time
    pause = strategy.pause_between_nodes
    if pause > 0 and prog.last_done_at > 0 and now - prog.last_done_at < pause:
        out.pause_left = pause - (now - prog.last_done_at)
        out.reasons.append(
            Reason(
                d.PAUSE_BETWEEN_NODES,
                f"pausing {out.pause_left:.0f}s before the next node "
                f"(pauseBetweenNodes {pause:g}s)",
            )
        )
        return out
    lagging = rules.services_below_desired(view.snapshot)
    if lagging:
        waited = now - max(prog.last_done_at, prog.started_at)
        if waited < SERVICES_WAIT:
            out.pause_left = STEP_REQUEUE
            out.reasons.append(
                Reason(
                    d.SERVICES_RECOVERING,
                    f"waiting for every task of {rules.names(lagging)} to run again before the "
                    f"next node (up to {SERVICES_WAIT:g}s after the last node; {waited:.0f}s)",
                )
            )
            return out
        out.reasons.append(
            Reason(
                d.SERVICES_RECOVERING,
                f"{rules.names(lagging)} still below their desired tasks "
                f"{waited:.0f}s after the last node: going on with the next node",
                d.WARNING,
            )
        )
    if managers:
        chosen = managers[:1]
    elif workers:
        if managers_flying:
            return out
        room = max(1, strategy.max_unavailable_workers) - len(flying)
        chosen = workers[: max(0, room)]
    else:
        out.actions.append(Action(d.HANDOVER_LEASE, me))
        out.reasons.append(
            Reason(
                d.HANDOVER,
                f"every other node runs {target.version}: handing "
                f"the lease to a replica on another manager, which "
                f"upgrades {me}",
            )
        )
        out.progress = replace(prog, handover_from=me, handover_at=now).with_history(
            now, me, pg.HANDOVER
        )
        return out
    for host in chosen:
        out.progress = _begin(view, out.progress, host, target, now, out)
    return out


def _role(view: ClusterView, host: str) -> str:
    live = view.live(host)
    return live.role if live else "worker"


def _begin(
    view: ClusterView, prog: Progress, host: str, target: Release, now: float, out: _Started
) -> Progress:
    member = view.members[host]
    live = view.live(host)
    assert live is not None  # rules.check_unmatched / check_transitions guarantee a live entry
    rec = NodeProgress(
        host,
        member.scale_set.name,
        member.instance.instance_id,
        live.role,
        live.availability,
        live.id,
        pg.DRAIN,
        now,
    )
    step = steps.advance(rec, view, target.image, view.desired.strategy, now)
    assert step.record is not None and step.halt is None  # a fresh, Ready node can only start
    out.actions.extend(a for a in step.actions if a not in out.actions)
    if step.reason is not None:
        out.reasons.append(step.reason)
    return prog.with_node(step.record).with_history(now, host, step.record.phase)
