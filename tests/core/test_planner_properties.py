"""Property test: the planner driven through random clusters never breaks a safety rule.

Random clusters (1–7 managers, 0–50 workers), random Down and unreachable nodes, random nodes
that never drain, fail their reimage or never rejoin, and a flaky runtime (crashes before and
after the write-ahead of the progress, lost and failed actions; the progress always goes
through its JSON round trip). `tests/core/sim.py` raises on the first unsafe action; every run
must end done, refused or halted, with a reason.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller import decision as d
from controller.model import Strategy
from controller.planner import plan
from tests.core.sim import Chaos, Cluster, SimNode, assert_converged, drive
from tests.core.test_planner_rules import CATALOG, NEW, OLD, desired


@dataclass
class Scenario:
    managers: int
    workers: int
    max_unavailable: int
    stale_entries: list[int]  # indexes of hosts that also have a Down entry left behind
    down_hosts: list[int]  # indexes of hosts whose node itself is Down
    unreachable: list[tuple[int, float]]  # manager index, seconds until it heals
    fates: list[tuple[int, str]]  # host index, "fail" | "hang" | "stuck-drain"
    remove_down_nodes: bool
    chaos: Chaos
    seed: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    managers = draw(st.integers(1, 7))
    workers = draw(st.integers(0, 50))
    hosts = managers + workers
    idx = st.integers(0, hosts - 1)
    rate = st.sampled_from([0.0, 0.0, 0.05, 0.15])
    return Scenario(
        managers=managers,
        workers=workers,
        max_unavailable=draw(st.integers(1, 5)),
        stale_entries=draw(st.lists(idx, max_size=2, unique=True)),
        down_hosts=draw(st.lists(idx, max_size=1)),
        unreachable=draw(
            st.lists(st.tuples(st.integers(0, managers - 1), st.floats(5, 300)), max_size=2)
        ),
        fates=draw(
            st.lists(st.tuples(idx, st.sampled_from(["fail", "hang", "stuck-drain"])), max_size=1)
        ),
        remove_down_nodes=draw(st.booleans()),
        chaos=Chaos(draw(rate), draw(rate), draw(rate), draw(rate)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def build(s: Scenario) -> Cluster:
    c = Cluster.build(s.managers, s.workers, OLD, NEW, max_unavailable_workers=s.max_unavailable)
    c.reimage_seconds = 4.0  # short simulated steps keep the test fast; the order is the same
    for inst in c.instances:
        inst.drain_delay = 2.0
    hosts = sorted(c.originals)
    for i in s.stale_entries:
        c.nodes.append(
            SimNode(f"stale{i:020d}", hosts[i], "worker", state="down", created_at=c.now - 9000)
        )
    down_managers = 0
    for i in s.down_hosts:
        n = c.live(hosts[i])
        if n.role == "manager":
            if 2 * (down_managers + 1) >= s.managers:
                continue  # the generated cluster must start with a raft quorum
            down_managers += 1
        n.state = "down"
    for m, seconds in s.unreachable:
        n = next(x for x in c.nodes if x.hostname == f"swarm-manager{m:06d}")
        n.reachable, n.unreachable_until = False, c.now + seconds
    for i, fate in s.fates:
        inst = next(x for x in c.instances if x.computer_name == hosts[i])
        if fate == "stuck-drain":
            inst.drain_delay = None
        else:
            inst.fate = fate
    return c


@settings(
    max_examples=int(os.environ.get("PLANNER_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_random_clusters_are_upgraded_safely(s: Scenario) -> None:
    c = build(s)
    want = desired(
        remove_down_nodes=s.remove_down_nodes,
        strategy=Strategy(
            max_unavailable_workers=s.max_unavailable, drain_timeout=60, node_ready_timeout=300
        ),
    )
    touched: list[str] = []

    def watch(dec: d.Decision) -> None:
        assert dec.reasons, dec
        if dec.verdict == d.REFUSED:
            # A refusal comes before the rollout touches any node, never in the middle of it.
            assert not touched, (dec.reasons, touched)
        touched.extend(a.node for a in dec.actions if a.kind == d.DRAIN)

    run = drive(
        plan,
        c,
        want,
        CATALOG,
        rng=random.Random(s.seed),
        chaos=s.chaos,
        on_decision=watch,
        max_passes=20_000,
    )
    final = run.final
    assert final.verdict in (d.DONE, d.REFUSED, d.HALTED) and final.reasons
    if final.verdict == d.DONE:
        assert_converged(c)
    if final.verdict == d.HALTED:
        assert final.reasons[0].code in (d.NODE_TIMEOUT, d.NODE_LOST)
    healthy = not s.stale_entries or s.remove_down_nodes
    if s.managers >= 3 and not s.down_hosts and not s.fates and healthy:
        if s.chaos == Chaos():
            assert final.verdict == d.DONE, final.reasons
        elif final.verdict != d.DONE:  # only bad luck: every reimage request of a node was lost
            assert "never reached the instance" in final.reasons[0].message, final.reasons
