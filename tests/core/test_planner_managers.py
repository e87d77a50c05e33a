"""Table tests of the manager-safety rules around a demote (found by the reliability campaign).

- `ManagerSettle`: a manager is demoted only when every other manager is Ready and Reachable in
  two observations at least `strategy.managerSettle` apart (swarm-hang: a demote next to a hung
  manager left a 3-manager swarm without a leader). A manager out in between restarts the count.
- The leader's own entry Down (or Unknown) while it is Reachable and Leader counts as a healthy
  manager, and a Reachable manager is never a Down node to refuse, wait for as lost, or remove
  (scaleset-changed: the leader's entry stayed Down for minutes and the rollout waited forever).

Each row is a sequence of observations (seconds since the drained node's first demote check,
and what the other managers look like); the last decision is checked.
"""

from __future__ import annotations

import dataclasses

import pytest

from controller import decision as d
from controller import rules
from controller.decision import Decision
from controller.model import Strategy
from controller.planner import plan
from controller.progress import Progress
from controller.snapshot import Node, Snapshot
from tests.core.sim import Cluster
from tests.core.test_planner_rules import CATALOG, cluster, desired

IN_FLIGHT = "swarm-manager000001"  # the first manager of the rollout (self is 000000)
OK = ("ready", "reachable", False)
FROZEN = ("ready", "unreachable", False)  # the leader noticed a hung manager (≈3 s measured)
DOWN = ("down", "unreachable", False)
DOWN_REACHABLE = ("down", "reachable", False)  # a hung follower for ≈0.2 s, or a stale status
LEADER_DOWN = ("down", "reachable", True)  # the leader's own entry after leadership moved
LEADER_UNKNOWN = ("unknown", "reachable", True)
OLD_LEADER_FROZEN = ("unknown", "reachable", False)  # new leader's view of a hung old leader

Look = tuple[float, dict[str, tuple[str, str, bool]]]


def observed(c: Cluster, looks: dict[str, tuple[str, str, bool]]) -> Snapshot:
    """The cluster's snapshot with some managers' (state, reachability, leader) replaced."""
    snap = c.snapshot()
    nodes: list[Node] = []
    for n in snap.nodes:
        if n.hostname in looks:
            state, reach, leader = looks[n.hostname]
            n = dataclasses.replace(n, state=state, reachability=reach, leader=leader)
        elif looks and any(v[2] for v in looks.values()):
            n = dataclasses.replace(n, leader=False)  # one leader
        nodes.append(n)
    return dataclasses.replace(snap, nodes=tuple(nodes))


def drained(settle: float) -> tuple[Cluster, Progress, Strategy]:
    """A 3-manager cluster whose first manager is drained and waits for its demote."""
    strategy = Strategy(manager_settle=settle)
    c = cluster(managers=3, workers=0)
    dec = plan(desired(strategy=strategy), c.snapshot(), None, CATALOG, c.now)
    assert [a.kind for a in dec.actions] == [d.DRAIN] and dec.actions[0].node == IN_FLIGHT
    for a in dec.actions:
        c.apply(a)
    c.live(IN_FLIGHT).running_tasks = 0
    assert dec.progress is not None
    return c, dec.progress, strategy


def replay(settle: float, looks: list[Look]) -> Decision:
    c, progress, strategy = drained(settle)
    start = c.now
    dec: Decision | None = None
    for at, seen in looks:
        c.now = start + at
        dec = plan(desired(strategy=strategy), observed(c, seen), progress, CATALOG, c.now)
        progress = dec.progress or progress
    assert dec is not None
    return dec


def demoted(dec: Decision) -> bool:
    return any(a.kind == d.DEMOTE for a in dec.actions)


M0, M2 = "swarm-manager000000", "swarm-manager000002"


@pytest.mark.parametrize(
    ("case", "settle", "looks", "demote", "code"),
    [
        ("first look starts the count", 10, [(0, {})], False, d.MANAGER_SETTLE),
        ("too early", 10, [(0, {}), (9.9, {})], False, d.MANAGER_SETTLE),
        ("two looks settle apart", 10, [(0, {}), (10, {})], True, d.UPGRADING),
        ("a pass after a long gap", 10, [(0, {}), (300, {})], True, d.UPGRADING),
        ("settle 0: one look", 0, [(0, {})], True, d.UPGRADING),
        ("frozen follower now", 10, [(0, {}), (10, {M2: FROZEN})], False,
         d.MANAGER_UNREACHABLE),
        ("frozen in between restarts the count", 10,
         [(0, {}), (4, {M2: FROZEN}), (8, {}), (16, {})], False, d.MANAGER_SETTLE),
        ("restarted count completes", 10,
         [(0, {}), (4, {M2: FROZEN}), (8, {}), (18, {})], True, d.UPGRADING),
        ("down and reachable follower", 10, [(0, {}), (10, {M2: DOWN_REACHABLE})], False,
         d.MANAGER_UNREACHABLE),
        ("hung old leader seen by the new one", 10,
         [(0, {}), (10, {M2: OLD_LEADER_FROZEN, M0: ("ready", "reachable", True)})], False,
         d.MANAGER_UNREACHABLE),
        ("a crashed manager", 10, [(0, {}), (10, {M2: DOWN})], False, d.MANAGER_UNREACHABLE),
        ("leader's own entry Down", 10, [(0, {M2: LEADER_DOWN}), (10, {M2: LEADER_DOWN})],
         True, d.UPGRADING),
        ("leader's own entry Unknown", 10,
         [(0, {M2: LEADER_UNKNOWN}), (10, {M2: LEADER_UNKNOWN})], True, d.UPGRADING),
    ],
)
def test_demote_needs_every_other_manager_healthy_twice_settle_apart(
    case: str, settle: float, looks: list[Look], demote: bool, code: str
) -> None:
    dec = replay(settle, looks)
    assert demoted(dec) == demote, (case, dec.reasons)
    assert code in [r.code for r in dec.reasons], (case, dec.reasons)
    if not demote:
        assert not dec.actions and dec.verdict == d.WAIT, case


def test_settle_time_survives_a_new_holder() -> None:
    """The first observation is persisted (managersSettledSince): a replica that takes over
    after a crash counts from it, not from its own first look."""
    c, progress, strategy = drained(10)
    first = plan(desired(strategy=strategy), c.snapshot(), progress, CATALOG, c.now)
    stored = Progress.from_dict(first.progress.to_dict())  # type: ignore[union-attr]
    assert stored.nodes[IN_FLIGHT].settled_since == c.now
    c.now += 10
    assert demoted(plan(desired(strategy=strategy), c.snapshot(), stored, CATALOG, c.now))


def test_settle_does_not_eat_the_demote_timeout() -> None:
    """drainTimeout below managerSettle: the demote still happens (the timer starts after)."""
    strategy = Strategy(manager_settle=30, drain_timeout=5)
    c, progress, _ = drained(30)
    want = desired(strategy=strategy)
    dec = plan(want, c.snapshot(), progress, CATALOG, c.now)
    c.now += 30
    dec = plan(want, c.snapshot(), dec.progress, CATALOG, c.now)
    assert demoted(dec) and dec.verdict == d.PROCEED


@pytest.mark.parametrize(
    ("nodes", "blocked"),
    [
        ([("a", OK), ("b", OK), ("c", OK)], []),
        ([("a", OK), ("b", FROZEN), ("c", OK)], ["b (ready, unreachable)"]),
        ([("a", OK), ("b", DOWN_REACHABLE), ("c", OK)], ["b (down, reachable)"]),
        ([("a", OK), ("b", LEADER_DOWN), ("c", OK)], []),
        ([("a", OK), ("b", OLD_LEADER_FROZEN), ("c", OK)], ["b (unknown, reachable)"]),
        ([("a", FROZEN), ("b", OK), ("c", OK)], []),  # the one being demoted may be anything
        ([("a", OK), ("b", DOWN), ("c", OK), ("d", OK), ("e", OK)], ["b (down, unreachable)"]),
    ],
)
def test_demote_blockers(nodes: list[tuple[str, tuple[str, str, bool]]],
                         blocked: list[str]) -> None:
    """The rule the planner and (right before the call) the runtime ask: every OTHER manager
    healthy, not merely a majority (a manager the leader has not noticed yet looks healthy)."""
    entries = [Node(f"id-{h}", h, "manager", s, "active", r, lead) for h, (s, r, lead) in nodes]
    entries.append(Node("id-w", "w", "worker", "down", "active"))  # workers do not count
    assert rules.demote_blockers(entries, "id-a") == blocked


def mid_rollout(remove_down_nodes: bool = False) -> tuple[Cluster, Progress]:
    """The first manager upgraded (done), nothing in flight: the scaleset-changed stall."""
    c = cluster(managers=3, workers=2)
    p = Progress("r", "stable", "17.06.1-ce-azure1", c.now - 100, "d1", done=(IN_FLIGHT,),
                 last_done_at=c.now - 5)
    rec = c.instances[[i.computer_name for i in c.instances].index(IN_FLIGHT)]
    rec.image = c.target
    return c, p


def test_leader_entry_down_mid_rollout_does_not_stall_the_rollout() -> None:
    """scaleset-changed (campaign): the leader's own entry stayed Down while Reachable and
    Leader; the planner waited with ManagerUnreachable forever. The leader answered the very
    listing that shows it Down: the next manager starts."""
    c, p = mid_rollout()
    snap = observed(c, {M2: LEADER_DOWN})
    dec = plan(desired(), snap, p, CATALOG, c.now)
    assert dec.verdict == d.PROCEED, dec.reasons
    assert [(a.kind, a.node) for a in dec.actions] == [(d.DRAIN, M2)]  # the leader, then self


@pytest.mark.parametrize("remove", [False, True])
def test_a_reachable_manager_is_never_a_down_node(remove: bool) -> None:
    """Before a rollout a Down node is refused (or removed with removeDownNodes); a Down entry
    that raft still reaches is a manager to wait for, never one to `docker node rm`."""
    c = cluster(managers=3, workers=2)
    for look, code in ((LEADER_DOWN, None), (DOWN_REACHABLE, d.MANAGER_UNREACHABLE)):
        dec = plan(desired(remove_down_nodes=remove), observed(c, {M2: look}), None, CATALOG,
                   c.now)
        assert not any(a.kind == d.REMOVE_DOWN_NODE for a in dec.actions), dec.actions
        assert d.DOWN_NODES not in [r.code for r in dec.reasons], dec.reasons
        if code is not None:
            assert dec.verdict == d.WAIT and code in [r.code for r in dec.reasons]
        else:
            assert dec.verdict == d.PROCEED, dec.reasons
    # a crashed manager (Down, Unreachable) is still a Down node (and leaves too few managers)
    dec = plan(desired(remove_down_nodes=remove), observed(c, {M2: DOWN}), None, CATALOG, c.now)
    assert dec.verdict == d.REFUSED and not dec.actions, dec.reasons
    assert [n.hostname for n in rules.foreign_down_nodes(
        rules.ClusterView(desired(), observed(c, {M2: DOWN}), CATALOG), ())] == [M2]
