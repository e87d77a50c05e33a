"""The whole rollout as three phases: resources → nodes → services.

`plan(desired, snapshot, progress, catalog, now) -> Decision`, with the same contract as
`planner.plan` (which decides the nodes phase): the declaration's refusals, a recorded halt and
`paused` answer first and touch nothing; then the release's template is deployed
(phases.resources_phase) before any node starts; then the nodes are reimaged (planner.plan); then
the platform services are updated (phases.services_phase). The verdict is `done` only when all
three are done. `progress.phase` says which phase the rollout is in; the phases' records are in
`progress.resources` / `progress.services`, and a phase halt is recorded like a node halt
(`progress.halt`, resumed the same ways).
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from controller import decision as d
from controller import phases, planner
from controller import progress as pg
from controller.catalog import Catalog
from controller.decision import Decision, Reason
from controller.model import Desired
from controller.phases import PhaseOutcome
from controller.progress import Progress
from controller.snapshot import Snapshot

_REQUEUE = {
    d.PROCEED: planner.STEP_REQUEUE,
    d.WAIT: planner.WAIT_REQUEUE,
    d.DONE: planner.IDLE_REQUEUE,
    d.REFUSED: planner.IDLE_REQUEUE,
    d.HALTED: planner.IDLE_REQUEUE,
}


def current_phase(progress: Progress | None, carried: Progress) -> str:
    """The phase `carried` (this pass's progress) is in. A new rollout starts with resources; a
    record written before phases existed is in the nodes phase."""
    if carried.phase:
        return carried.phase
    same = progress is not None and progress.rollout_id == carried.rollout_id
    if same and (carried.nodes or carried.done):
        return pg.PHASE_NODES
    return pg.PHASE_RESOURCES


def plan(
    desired: Desired,
    snapshot: Snapshot,
    progress: Progress | None,
    catalog: Catalog,
    now: float,
) -> Decision:
    """The next step of the three-phase rollout toward `desired` (see the module docstring)."""
    base = planner.plan(desired, snapshot, progress, catalog, now)
    carried = base.progress
    if carried is None or base.verdict in (d.REFUSED, d.HALTED) or desired.paused:
        return base
    release = catalog.release(carried.channel, carried.target_version)
    if release is None:
        return base
    strategy = desired.strategy
    phase = current_phase(progress, carried)
    notes: tuple[Reason, ...] = ()
    if phase == pg.PHASE_RESOURCES:
        before = _without_node_starts(carried, now)
        out = phases.resources_phase(
            release, snapshot.observed, before.resources, strategy, now
        )
        if out.verdict != d.DONE:
            prog = replace(before, phase=phase, resources=out.record)
            return _phase_decision(base, prog, out, "resources", progress, now)
        carried = replace(carried, resources=out.record)
        notes = out.reasons
        phase = pg.PHASE_NODES
    # The nodes phase: also when a node needs the target again after the phase was left.
    if base.verdict != d.DONE:
        prog = replace(carried, phase=pg.PHASE_NODES)
        return replace(base, reasons=(*base.reasons, *notes), progress=prog)
    if phase == pg.PHASE_NODES:
        notes = (*notes, Reason(d.PHASE_COMPLETED, f"nodes: every node runs {release.version}"))
    out = phases.services_phase(release, snapshot.observed, carried.services, strategy, now)
    if out.verdict != d.DONE:
        prog = replace(carried, phase=pg.PHASE_SERVICES, services=out.record)
        return _phase_decision(base, prog, out, "services", progress, now, notes)
    prog = replace(carried, phase=pg.PHASE_DONE, services=out.record)
    up_to_date = Reason(d.UP_TO_DATE, f"every phase of {release.version} is done")
    return Decision(d.DONE, (up_to_date, *notes, *out.reasons), base.order, (), prog,
                    planner.IDLE_REQUEUE)


def _without_node_starts(carried: Progress, now: float) -> Progress:
    """This pass's progress minus the nodes the node planner started in it (nodes wait until
    the resources phase is done)."""
    history = tuple(e for e in carried.history if not (e.at == now and e.phase in pg.PHASES))
    return replace(carried, nodes=MappingProxyType({}), history=history)


def _phase_decision(
    base: Decision,
    prog: Progress,
    out: PhaseOutcome,
    label: str,
    original: Progress | None,
    now: float,
    notes: tuple[Reason, ...] = (),
) -> Decision:
    """The decision of a phase that is not done; a halt is recorded in the progress, a refusal
    stores nothing new (like the node planner's refusals)."""
    stored: Progress | None = prog
    if out.verdict == d.HALTED:
        reason = out.reasons[0]
        stored = prog.halt(reason.code, reason.message, label, now)
    elif out.verdict == d.REFUSED:
        stored = original
    warnings = tuple(r for r in base.reasons if r.severity == d.WARNING and r.code != d.UP_TO_DATE)
    return Decision(out.verdict, (*out.reasons, *notes, *warnings), base.order, out.actions,
                    stored, _REQUEUE[out.verdict])
