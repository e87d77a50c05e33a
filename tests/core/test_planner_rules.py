"""Table tests of the planner: one test per reason code, each fails if its rule is removed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from controller import decision as d
from controller.catalog import ImageRef, load_catalog
from controller.decision import Decision
from controller.model import Desired, Strategy
from controller.planner import plan
from controller.progress import Progress
from tests.core.sim import MANAGER_SET, WORKER_SET, Cluster, SimInstance, SimNode

CATALOG = load_catalog()


def image(version: str, channel: str = "stable") -> ImageRef:
    rel = CATALOG.release(channel, version)
    assert rel is not None
    return rel.image


OLD = image("17.06.0-ce-azure1")
NEW = image("17.06.1-ce-azure1")


def desired(**kw: Any) -> Desired:
    strategy = kw.pop("strategy", Strategy())
    base = Desired("prod", "stable", "17.06.1-ce-azure1", strategy=strategy, digest="d1")
    return dataclasses.replace(base, **kw)


def cluster(managers: int = 3, workers: int = 2, img: ImageRef = OLD) -> Cluster:
    return Cluster.build(managers, workers, img, NEW)


def run(c: Cluster, want: Desired | None = None, progress: Progress | None = None) -> Decision:
    dec = plan(want or desired(), c.snapshot(), progress, CATALOG, c.now)
    assert dec.reasons, "a decision always explains itself"
    return dec


def codes(dec: Decision) -> list[str]:
    return [r.code for r in dec.reasons]


def node(c: Cluster, host: str) -> SimNode:
    return c.live(host)


def inst(c: Cluster, host: str) -> SimInstance:
    return next(i for i in c.instances if i.computer_name == host)


# ---- refused ----


def test_healthy_cluster_proceeds() -> None:
    dec = run(cluster())
    assert dec.verdict == d.PROCEED
    assert [a.kind for a in dec.actions] == [d.DRAIN]


def test_invalid_spec_same_scale_sets() -> None:
    dec = run(cluster(), desired(worker_scale_set=MANAGER_SET))
    assert dec.verdict == d.REFUSED and d.INVALID_SPEC in codes(dec)
    assert not dec.actions


def test_invalid_spec_scale_set_missing() -> None:
    dec = run(cluster(), desired(worker_scale_set="nope-vmss"))
    assert dec.verdict == d.REFUSED and codes(dec) == [d.INVALID_SPEC]
    assert "nope-vmss" in dec.reasons[0].message


def test_unknown_version() -> None:
    dec = run(cluster(), desired(version="17.06.9-ce-azure1"))
    assert dec.verdict == d.REFUSED and codes(dec) == [d.UNKNOWN_VERSION]


def test_unknown_image_of_an_instance_is_named() -> None:
    c = cluster()
    inst(c, "swarm-worker000001").image = ImageRef("docker", "docker4azure", "stable", "9.9.9")
    dec = run(c)
    assert dec.verdict == d.REFUSED and codes(dec) == [d.UNKNOWN_IMAGE]
    assert "swarm-worker000001" in dec.reasons[0].message


def test_cross_channel_from_the_scale_set_tag() -> None:
    c = cluster()
    c.channel = "edge"
    dec = run(c)
    assert dec.verdict == d.REFUSED and d.CROSS_CHANNEL in codes(dec)


def test_cross_channel_from_the_instance_image() -> None:
    c = cluster()
    inst(c, "swarm-worker000000").image = image("17.06.0-ce-azure1", "edge")
    dec = run(c)
    assert dec.verdict == d.REFUSED and codes(dec) == [d.CROSS_CHANNEL]
    assert "swarm-worker000000" in dec.reasons[0].message


def test_version_skip_names_the_next_allowed_version() -> None:
    c = cluster(img=image("17.06.0-ce-azure1"))
    dec = run(c, desired(version="17.09.0-ce-azure1"))
    assert dec.verdict == d.REFUSED and codes(dec) == [d.VERSION_SKIP]
    assert "upgrade to 17.06.1-ce-azure1 first" in dec.reasons[0].message


def test_downgrade_refused() -> None:
    c = cluster(img=image("17.06.2-ce-azure1"))
    dec = run(c)
    assert dec.verdict == d.REFUSED and codes(dec) == [d.DOWNGRADE]


def test_downgrade_allowed_is_a_warning_and_proceeds() -> None:
    c = cluster(img=image("17.06.2-ce-azure1"))
    dec = run(c, desired(allow_downgrade=True))
    assert dec.verdict == d.PROCEED
    warn = [r for r in dec.reasons if r.code == d.DOWNGRADE]
    assert warn and warn[0].severity == d.WARNING and "not tested" in warn[0].message


@pytest.mark.parametrize("managers", [1, 2])
def test_too_few_managers(managers: int) -> None:
    dec = run(cluster(managers=managers))
    assert dec.verdict == d.REFUSED and codes(dec) == [d.TOO_FEW_MANAGERS]


def test_too_few_managers_does_not_count_down_ones() -> None:
    c = cluster(managers=3)
    node(c, "swarm-manager000002").state = "down"
    dec = run(c, desired(remove_down_nodes=True))
    assert dec.verdict == d.REFUSED and d.TOO_FEW_MANAGERS in codes(dec)
    assert not dec.actions


def _stale_entry(c: Cluster, host: str) -> SimNode:
    """A Down entry left behind for `host` (its VM was replaced earlier)."""
    stale = SimNode("stale" + "0" * 20, host, "worker", state="down", created_at=c.now - 5000)
    c.nodes.append(stale)
    return stale


def test_down_nodes_refused_with_the_command_to_run() -> None:
    c = cluster()
    stale = _stale_entry(c, "swarm-worker000001")
    dec = run(c)
    assert dec.verdict == d.REFUSED and codes(dec) == [d.DOWN_NODES]
    assert f"docker node rm {stale.id}" in dec.reasons[0].message


def test_down_nodes_removed_first_when_allowed() -> None:
    c = cluster()
    stale = _stale_entry(c, "swarm-worker000001")
    dec = run(c, desired(remove_down_nodes=True))
    assert dec.verdict == d.PROCEED and codes(dec) == [d.DOWN_NODES]
    assert [(a.kind, a.node_id) for a in dec.actions] == [(d.REMOVE_DOWN_NODE, stale.id)]
    c.nodes.remove(stale)
    assert [a.kind for a in run(c, desired(remove_down_nodes=True)).actions] == [d.DRAIN]


def test_unmatched_node_without_instance() -> None:
    c = cluster()
    c.nodes.append(SimNode("x" * 25, "stray-host", "worker", created_at=c.now))
    dec = run(c)
    assert dec.verdict == d.REFUSED and codes(dec) == [d.UNMATCHED_NODE]
    assert "stray-host" in dec.reasons[0].message and "no instance" in dec.reasons[0].message


def test_a_node_entry_without_a_hostname_yet_is_waited_for_not_refused() -> None:
    """A node that just joined (e.g. a reimaged manager) is listed for a moment before it has
    reported its description: no hostname yet. The campaign saw the planner refuse that as
    UnmatchedNode mid-rollout (a spurious refusal Warning); it is a node in transition."""
    c = cluster()
    c.nodes.append(SimNode("y" * 25, "", "worker", state="unknown", created_at=c.now))
    dec = run(c)
    assert dec.verdict == d.WAIT and codes(dec) == [d.NODE_IN_TRANSITION], dec.reasons
    assert "yyyyyyyyyyyy" in dec.reasons[0].message and not dec.actions


def test_unmatched_instance_without_node() -> None:
    c = cluster()
    c.instances.append(SimInstance("7", "swarm-worker000007", WORKER_SET, OLD))
    dec = run(c)
    assert dec.verdict == d.REFUSED and codes(dec) == [d.UNMATCHED_NODE]
    assert "swarm-worker000007" in dec.reasons[0].message


def test_refusals_are_all_reported_at_once() -> None:
    c = cluster(managers=2)
    c.channel = "edge"
    dec = run(c)
    assert {d.CROSS_CHANNEL, d.TOO_FEW_MANAGERS} <= set(codes(dec))


# ---- wait ----


def test_manager_unreachable_waits_without_acting() -> None:
    c = cluster()
    node(c, "swarm-manager000002").reachable = False
    dec = run(c)
    assert dec.verdict == d.WAIT and codes(dec) == [d.MANAGER_UNREACHABLE]
    assert not dec.actions


def test_paused_waits_without_acting() -> None:
    dec = run(cluster(), desired(paused=True))
    assert dec.verdict == d.WAIT and codes(dec) == [d.PAUSED] and not dec.actions


def test_paused_finishes_the_node_in_flight_but_starts_no_other() -> None:
    c = cluster(managers=3, workers=0)
    first = run(c)
    c.apply(first.actions[0])
    c.live("swarm-manager000001").running_tasks = 0
    dec = run(c, desired(paused=True), first.progress)
    assert codes(dec)[0] == d.MANAGER_SETTLE and not dec.actions  # confirming the others first
    c.now += Strategy().manager_settle
    dec = run(c, desired(paused=True), dec.progress)
    assert [a.kind for a in dec.actions] == [d.DEMOTE]
    assert {a.node for a in dec.actions} == {"swarm-manager000001"}


def test_instance_updating_that_we_did_not_start_waits() -> None:
    c = cluster()
    inst(c, "swarm-worker000000").provisioning_state = "Updating"
    dec = run(c)
    assert dec.verdict == d.WAIT and codes(dec) == [d.NODE_IN_TRANSITION] and not dec.actions


def test_node_not_yet_rejoined_waits() -> None:
    c = cluster()
    node(c, "swarm-worker000001").state = "unknown"
    dec = run(c)
    assert dec.verdict == d.WAIT and codes(dec) == [d.NODE_IN_TRANSITION]


def test_pause_between_nodes() -> None:
    c = cluster(managers=3, workers=0)
    want = desired(strategy=Strategy(pause_between_nodes=300))
    p = Progress("r", "stable", "17.06.1-ce-azure1", c.now, "d1", last_done_at=c.now - 100)
    dec = run(c, want, p)
    assert dec.verdict == d.WAIT and codes(dec) == [d.PAUSE_BETWEEN_NODES]
    assert dec.requeue_after == pytest.approx(200)


# ---- done ----


def test_done_when_every_instance_runs_the_target() -> None:
    dec = run(cluster(img=NEW))
    assert dec.verdict == d.DONE and codes(dec)[0] == d.UP_TO_DATE and not dec.actions
    assert dec.requeue_after >= 60
