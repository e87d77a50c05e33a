"""Table tests of ServicesRecovering: no new node starts while a service's tasks are not all
running (reliability campaign, swarm-hang: the next node was drained while the replacements of
the previous one were still starting, and the sample service had 0 of 4 tasks running).
"""

from __future__ import annotations

import dataclasses

import pytest

from controller import decision as d
from controller import rules
from controller.observed import Observed, Service
from controller.planner import SERVICES_WAIT, plan
from controller.progress import Progress
from controller.snapshot import Snapshot
from tests.core.sim import Cluster
from tests.core.test_planner_rules import CATALOG, cluster, desired

DONE = "swarm-manager000001"


def sample(running: int, desired_tasks: int = 4, **labels: str) -> Service:
    return Service(f"id-{len(labels)}", "sample", "busybox", labels, running_tasks=running,
                   desired_tasks=desired_tasks)


OWN = sample(1, 3, **{rules.CONTROLLER_SERVICE_LABEL: "true"})


def with_services(c: Cluster, *services: Service | None) -> Snapshot:
    observed = None if services == (None,) else tuple(s for s in services if s is not None)
    return dataclasses.replace(c.snapshot(), observed=Observed(services=observed))


def after_first_node(finished_ago: float) -> tuple[Cluster, Progress]:
    c = cluster(managers=3, workers=2)
    inst = next(i for i in c.instances if i.computer_name == DONE)
    inst.image = c.target
    prog = Progress("r", "stable", "17.06.1-ce-azure1", c.now - 300, "d1", done=(DONE,),
                    last_done_at=c.now - finished_ago)
    return c, prog


@pytest.mark.parametrize(
    ("case", "services", "finished_ago", "starts", "code", "severity"),
    [
        ("all running", (sample(4),), 1, True, d.UPGRADING, d.NORMAL),
        ("replacements still starting", (sample(2),), 1, False, d.SERVICES_RECOVERING,
         d.NORMAL),
        ("none running", (sample(0),), 30, False, d.SERVICES_RECOVERING, d.NORMAL),
        ("the controller's own service does not count", (sample(4), OWN), 1, True,
         d.UPGRADING, d.NORMAL),
        ("more than desired is fine (an update)", (sample(5),), 1, True, d.UPGRADING, d.NORMAL),
        ("a service that cannot converge: goes on after the bound, with a Warning",
         (sample(3),), SERVICES_WAIT + 1, True, d.SERVICES_RECOVERING, d.WARNING),
        ("services not observed", (None,), 1, True, d.UPGRADING, d.NORMAL),
    ],
)
def test_no_new_node_while_a_service_is_below_its_desired_tasks(
    case: str, services: tuple[Service | None, ...], finished_ago: float, starts: bool,
    code: str, severity: str,
) -> None:
    c, prog = after_first_node(finished_ago)
    dec = plan(desired(), with_services(c, *services), prog, CATALOG, c.now)
    drained = [a.node for a in dec.actions if a.kind == d.DRAIN]
    assert bool(drained) == starts, (case, dec.reasons)
    assert any(r.code == code and r.severity == severity for r in dec.reasons), (case, dec.reasons)
    if not starts:
        assert dec.verdict == d.WAIT and dec.requeue_after <= 2.0, case  # looks again soon


def test_the_nodes_in_flight_go_on_while_a_service_recovers() -> None:
    """The rule holds back new nodes only: the node in flight finishes its steps."""
    c = cluster(managers=3, workers=2)
    first = plan(desired(), with_services(c, sample(4)), None, CATALOG, c.now)
    (host,) = [a.node for a in first.actions if a.kind == d.DRAIN]
    for a in first.actions:
        c.apply(a)
    c.live(host).running_tasks = 0
    c.now += 20
    dec = plan(desired(), with_services(c, sample(2)), first.progress, CATALOG, c.now)
    assert d.SERVICES_RECOVERING not in [r.code for r in dec.reasons]
    assert any(r.code == d.MANAGER_SETTLE for r in dec.reasons), dec.reasons
