"""Ordering, safety limits and the per-node steps of the planner, against the in-memory cluster."""

from __future__ import annotations

from typing import Any

from controller import decision as d
from controller import progress as pg
from controller.decision import Decision
from controller.model import Strategy
from controller.planner import plan
from controller.progress import Progress
from controller.steps import MAX_REIMAGE_ATTEMPTS, REIMAGE_RETRY_AFTER
from tests.core.sim import Chaos, Cluster, assert_converged, drive
from tests.core.test_planner_rules import CATALOG, NEW, OLD, cluster, desired, inst, node


class Pass:
    """Plans and applies the actions (like the runtime), keeping the stored progress."""

    def __init__(self, c: Cluster, **want: Any) -> None:
        self.c = c
        self.want = desired(**want)
        self.progress: Progress | None = None

    def plan(self) -> Decision:
        dec = plan(self.want, self.c.snapshot(), self.progress, CATALOG, self.c.now)
        assert dec.reasons
        return dec

    def step(self, seconds: float = 2.0, apply: bool = True) -> Decision:
        dec = self.plan()
        self.progress = dec.progress
        if apply:
            for a in dec.actions:
                self.c.apply(a)
        self.c.advance(seconds)
        return dec

    def until(self, kind: str, limit: int = 50, apply: bool = True) -> Decision:
        """Passes until one asks for `kind`; that pass's actions run only if `apply`."""
        for _ in range(limit):
            dec = self.plan()
            if any(a.kind == kind for a in dec.actions):
                return self.step(apply=apply)
            self.step()
        raise AssertionError(f"no {kind} within {limit} passes")


def kinds(dec: Decision) -> list[tuple[str, str]]:
    return [(a.kind, a.node) for a in dec.actions]


def started(dec: Decision) -> list[str]:
    return [a.node for a in dec.actions if a.kind == d.DRAIN]


def test_order_followers_then_leader_then_workers_then_self() -> None:
    c = cluster(managers=4, workers=2)
    c.self_hostname = "swarm-manager000001"
    for n in c.nodes:
        n.leader = n.hostname == "swarm-manager000002"
    dec = plan(desired(), c.snapshot(), None, CATALOG, c.now)
    assert dec.order == (
        "swarm-manager000000",
        "swarm-manager000003",
        "swarm-manager000002",
        "swarm-worker000000",
        "swarm-worker000001",
        "swarm-manager000001",
    )
    assert started(dec) == ["swarm-manager000000"]


def test_manager_steps_drain_demote_model_reimage_remove() -> None:
    p = Pass(cluster(managers=3, workers=0))
    assert kinds(p.step()) == [(d.DRAIN, "swarm-manager000001")]
    # tasks still running: wait, do not demote
    assert p.step().verdict == d.WAIT
    p.c.advance(10)
    dec = p.step()  # drained: every other manager must now stay healthy for managerSettle
    assert dec.verdict == d.WAIT and dec.reasons[0].code == d.MANAGER_SETTLE and not dec.actions
    p.c.advance(Strategy().manager_settle)
    assert kinds(p.step()) == [(d.DEMOTE, "swarm-manager000001")]
    dec = p.step()
    assert [a.kind for a in dec.actions] == [d.SET_MODEL_IMAGE]  # alone, before any reimage
    assert dec.actions[0].params["image"] == NEW.to_dict()
    assert kinds(p.step()) == [(d.REIMAGE, "swarm-manager000001")]
    assert p.progress is not None
    assert p.progress.nodes["swarm-manager000001"].phase == pg.REIMAGE
    for _ in range(5):  # Updating: never a second reimage, no other node starts
        dec = p.step()
        assert dec.verdict == d.WAIT and not dec.actions
    p.c.advance(30)
    dec = p.step()
    assert [a.kind for a in dec.actions] == [d.REMOVE_NODE]
    dec = p.step()
    assert "swarm-manager000001" in p.progress.done
    assert started(dec) == ["swarm-manager000002"]  # the model is set once: no set_model_image
    assert d.SET_MODEL_IMAGE not in [a.kind for a in p.until(d.REIMAGE).actions]


def test_one_manager_at_a_time_and_no_worker_while_a_manager_is_out() -> None:
    p = Pass(cluster(managers=5, workers=4), strategy=Strategy(max_unavailable_workers=3))
    p.step()
    for _ in range(8):
        dec = p.step()
        assert p.progress is not None and len(p.progress.nodes) == 1, p.progress.nodes
        assert not any(a.node.startswith("swarm-worker") for a in dec.actions)


def test_workers_in_batches_of_max_unavailable() -> None:
    c = cluster(managers=3, workers=5)
    c.max_unavailable_workers = 2
    p = Pass(c, strategy=Strategy(max_unavailable_workers=2))
    seen = 0
    for _ in range(400):
        dec = p.step()
        if dec.verdict == d.DONE:
            break
        assert p.progress is not None
        flying = [h for h in p.progress.nodes if h.startswith("swarm-worker")]
        assert len(flying) <= 2
        seen = max(seen, len(flying))
    assert seen == 2
    assert_converged(c)


def test_instance_already_on_target_is_never_touched() -> None:
    c = cluster(managers=3, workers=2)
    inst(c, "swarm-worker000000").image = NEW
    p = Pass(c)
    for _ in range(400):
        dec = p.step()
        assert all(a.node != "swarm-worker000000" for a in dec.actions)
        if dec.verdict == d.DONE:
            break
    assert dec.verdict == d.DONE


def test_self_last_through_a_lease_handover() -> None:
    c = cluster(managers=3, workers=1)
    p = Pass(c)
    for _ in range(400):
        dec = p.step()
        if any(a.kind == d.HANDOVER_LEASE for a in dec.actions):
            break
        assert all(a.node != "swarm-manager000000" for a in dec.actions)
    assert kinds(dec) == [(d.HANDOVER_LEASE, "swarm-manager000000")]
    assert all(c.on_target(h) for h in c.originals if h != "swarm-manager000000")
    assert c.self_hostname != "swarm-manager000000"  # a replica elsewhere took over
    assert started(p.step()) == ["swarm-manager000000"]


def test_availability_is_restored_only_when_it_was_not_active() -> None:
    c = cluster(managers=3, workers=2)
    c.set_availability("swarm-worker000001", "pause")
    run = drive(plan, c, desired(), CATALOG)
    assert run.final.verdict == d.DONE
    restores = [a for dec in run.decisions for a in dec.actions if a.kind == d.SET_AVAILABILITY]
    assert [(a.node, a.params["availability"]) for a in restores] == [
        ("swarm-worker000001", "pause")
    ]
    assert_converged(c)


def test_lost_drain_is_sent_again() -> None:
    p = Pass(cluster())
    p.step(apply=False)  # progress written, the drain never ran (crash after the write)
    assert kinds(p.step()) == [(d.DRAIN, "swarm-manager000001")]


def test_lost_reimage_is_sent_again_only_when_it_never_arrived() -> None:
    p = Pass(cluster(managers=3, workers=0))
    p.c.advance(10)
    p.until(d.REIMAGE, apply=False)  # the reimage request is lost: instance untouched
    dec = p.plan()
    assert not dec.actions  # too early to tell
    p.c.advance(REIMAGE_RETRY_AFTER + 1)
    dec = p.step(apply=False)
    assert [a.kind for a in dec.actions] == [d.REIMAGE]
    assert p.progress is not None and p.progress.nodes["swarm-manager000001"].attempts == 2
    for _ in range(MAX_REIMAGE_ATTEMPTS):
        p.c.advance(REIMAGE_RETRY_AFTER + 1)
        dec = p.step(apply=False)
    assert dec.verdict == d.HALTED and dec.reasons[0].code == d.NODE_TIMEOUT


def test_reimage_not_repeated_when_it_arrived() -> None:
    p = Pass(cluster(managers=3, workers=0))
    p.c.reimage_seconds = 10_000
    p.c.advance(10)
    p.until(d.REIMAGE)
    for _ in range(20):
        p.c.advance(REIMAGE_RETRY_AFTER)
        dec = p.step()
        assert d.REIMAGE not in [a.kind for a in dec.actions]


def test_drain_timeout_halts_and_touches_nothing_more() -> None:
    c = cluster(managers=3, workers=0)
    inst(c, "swarm-manager000001").drain_delay = None  # its tasks never leave
    p = Pass(c, strategy=Strategy(drain_timeout=60))
    p.step()
    for _ in range(40):
        dec = p.step(seconds=5)
        if dec.verdict == d.HALTED:
            break
    assert dec.verdict == d.HALTED and dec.reasons[0].code == d.NODE_TIMEOUT
    assert "swarm-manager000001" in dec.reasons[0].message
    for _ in range(3):
        dec = p.step(seconds=600)
        assert dec.verdict == d.HALTED and not dec.actions


def test_failed_reimage_halts_and_a_declaration_change_resumes_it() -> None:
    c = cluster(managers=3, workers=0)
    inst(c, "swarm-manager000001").fate = "fail"
    p = Pass(c)
    p.c.advance(10)
    p.until(d.REIMAGE)
    p.c.advance(60)
    dec = p.step()
    assert dec.verdict == d.HALTED and "failed" in dec.reasons[0].message
    assert p.progress is not None and p.progress.halted
    assert p.step().verdict == d.HALTED
    # The operator fixed the instance's cause and touched the declaration: resume.
    p.want = desired(digest="d2")
    dec = p.step(apply=False)
    assert d.RESUMED in [r.code for r in dec.reasons]
    assert [a.kind for a in dec.actions] == [d.REIMAGE]  # one more request, operator-approved
    assert p.progress is not None and not p.progress.halted
    dec = p.step(apply=False)
    assert dec.verdict == d.HALTED  # still Failed after the retry: halted again, no loop


def test_node_ready_timeout_halts() -> None:
    c = cluster(managers=3, workers=0)
    inst(c, "swarm-manager000001").fate = "hang"
    p = Pass(c, strategy=Strategy(node_ready_timeout=120))
    p.c.advance(10)
    p.until(d.REIMAGE)
    for _ in range(100):
        dec = p.step(seconds=5)
        if dec.verdict == d.HALTED:
            break
    assert dec.verdict == d.HALTED and "did not rejoin" in dec.reasons[0].message


def test_old_entry_still_ready_waits_before_removal() -> None:
    p = Pass(cluster(managers=3, workers=0))
    p.c.advance(10)
    p.until(d.REIMAGE)
    p.c.advance(30)  # rejoined with a new id
    old = next(n for n in p.c.nodes if n.hostname == "swarm-manager000001" and n.state == "down")
    old.state = "ready"  # the swarm has not noticed yet
    dec = p.step(apply=False)
    assert dec.verdict == d.WAIT and not dec.actions
    old.state = "down"
    assert [a.kind for a in p.step().actions] == [d.REMOVE_NODE]


def test_an_unreachable_manager_mid_rollout_stops_new_actions() -> None:
    p = Pass(cluster(managers=5, workers=0))
    p.step()
    node(p.c, "swarm-manager000004").reachable = False
    p.c.advance(10)
    dec = p.step()
    assert dec.verdict == d.WAIT and dec.reasons[0].code == d.MANAGER_UNREACHABLE
    assert not dec.actions


def test_whole_rollout_with_a_flaky_runtime_converges() -> None:
    import random

    c = cluster(managers=5, workers=6)
    c.max_unavailable_workers = 3
    chaos = Chaos(crash_before_write=0.1, crash_after_write=0.1, lost_action=0.1, failed_action=0.1)
    run = drive(
        plan,
        c,
        desired(strategy=Strategy(max_unavailable_workers=3)),
        CATALOG,
        rng=random.Random(7),
        chaos=chaos,
    )
    assert run.final.verdict == d.DONE
    assert_converged(c)
    assert OLD != NEW


def test_demote_only_if_the_remaining_managers_keep_a_majority() -> None:
    c = cluster(managers=3, workers=0)
    p = Pass(c)
    p.step()
    p.c.advance(10)
    # The swarm sees the controller's own manager as unreachable: demoting a second one would
    # leave 1 healthy of 2 raft members.
    node(c, "swarm-manager000000").reachable = False
    dec = p.step()
    assert dec.verdict == d.WAIT and not dec.actions
    assert dec.reasons[0].code == d.MANAGER_UNREACHABLE
    node(c, "swarm-manager000000").reachable = True
    dec = p.step()  # back: the confirmation starts again from this observation
    assert dec.reasons[0].code == d.MANAGER_SETTLE and not dec.actions
    p.c.advance(Strategy().manager_settle)
    assert kinds(p.step()) == [(d.DEMOTE, "swarm-manager000001")]


def test_new_entry_going_down_mid_upgrade_halts_instead_of_refusing() -> None:
    p = Pass(cluster(managers=3, workers=0))
    p.c.advance(10)
    p.until(d.REIMAGE)
    p.c.advance(30)
    p.until(d.REMOVE_NODE)
    new = p.c.live("swarm-manager000001")
    new.state = "down"  # the freshly reimaged node dies before the rollout finished with it
    p.c.advance(2)
    dec = p.step(apply=False)  # a few heartbeats of Down may be an election: wait, touch nothing
    assert dec.verdict == d.WAIT and not dec.actions
    assert dec.reasons[0].code == d.NODE_IN_TRANSITION
    from controller.steps import DOWN_GRACE

    p.c.advance(DOWN_GRACE + 1)
    dec = p.step(apply=False)
    assert dec.verdict == d.HALTED and dec.reasons[0].code == d.NODE_LOST


def test_every_progress_the_planner_writes_matches_the_schema() -> None:
    import json
    from pathlib import Path

    import jsonschema

    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "crd" / "progress.schema.json").read_text()
    )
    validator = jsonschema.Draft202012Validator(schema)
    c = cluster(managers=3, workers=2)
    c.set_availability("swarm-worker000000", "drain")
    inst(c, "swarm-worker000001").fate = "fail"
    seen: list[str] = []

    def check(dec: Decision) -> None:
        assert dec.progress is not None
        validator.validate(dec.progress.to_dict())
        seen.append(dec.verdict)

    run = drive(plan, c, desired(), CATALOG, on_decision=check)
    assert run.final.verdict == d.HALTED and d.PROCEED in seen
    assert run.final.progress is not None and "halted" in run.final.progress.to_dict()


def test_waiting_passes_do_not_change_the_progress() -> None:
    """The runtime writes the progress only when it changes: waiting must not churn the label."""
    p = Pass(cluster(managers=3, workers=0))
    p.c.reimage_seconds = 10_000
    p.c.advance(10)
    p.until(d.REIMAGE)
    before = p.progress
    for _ in range(5):
        dec = p.step()
        assert dec.verdict == d.WAIT and dec.progress == before


def test_a_resent_drain_is_not_a_new_history_entry() -> None:
    p = Pass(cluster())
    p.step(apply=False)
    assert p.progress is not None
    entries = len(p.progress.history)
    assert kinds(p.step(apply=False)) == [(d.DRAIN, "swarm-manager000001")]
    assert len(p.progress.history) == entries


def test_a_node_down_before_its_demote_took_effect_is_waited_for_then_lost() -> None:
    """Found by the reliability campaign (crash run, 2 cores under load): an entry showing Down
    for a few seconds around a demote made the planner halt the rollout with NodeLost, which
    needs an operator. A manager entry Down before the demote took effect is waited for a
    while; only one that stays Down (or vanishes) is lost."""
    from controller.steps import DOWN_GRACE

    p = Pass(cluster(managers=3, workers=0))
    p.c.advance(10)
    p.until(d.DEMOTE, apply=False)  # asked for, not (yet) done: still a manager
    host = next(h for h, r in (p.progress.nodes if p.progress else {}).items())
    old = p.c.live(host)
    assert old.role == "manager"
    old.state = "down"
    dec = p.step(apply=False)
    assert dec.verdict == d.WAIT and not dec.actions
    assert dec.reasons[0].code == d.NODE_IN_TRANSITION and "Down" in dec.reasons[0].message
    old.state = "ready"
    back = p.step(apply=False)  # back: the rollout goes on (the demote, again not done here)
    assert back.verdict == d.PROCEED and kinds(back) == [(d.DEMOTE, host)]
    old.state = "down"
    p.c.advance(DOWN_GRACE + 1)
    dec = p.step(apply=False)
    assert dec.verdict == d.HALTED and dec.reasons[0].code == d.NODE_LOST


def test_a_demoted_leader_down_while_leadership_moves_is_reimaged_without_waiting() -> None:
    """Overhead bench run 5: after the leader was demoted its old entry showed Down for ~20 s
    (the ex-leader re-registering with the new leader) and the planner waited for it before
    asking for the reimage. A manager this rollout drained and demoted is out of raft's count
    and about to be wiped: its Down entry is no reason to wait."""
    p = Pass(cluster(managers=3, workers=0))
    p.c.advance(10)
    p.until(d.DEMOTE)  # applied: the entry is a drained worker now
    host = next(h for h, r in (p.progress.nodes if p.progress else {}).items())
    old = p.c.live(host)
    assert old.role == "worker" and old.availability == "drain"
    old.state = "down"
    dec = p.step(apply=False)
    assert dec.verdict == d.PROCEED, dec.reasons
    assert kinds(dec) in ([(d.SET_MODEL_IMAGE, "")], [(d.REIMAGE, host)]), kinds(dec)


def test_a_manager_down_in_the_middle_of_the_rollout_is_waited_for_not_refused() -> None:
    """Found by the reliability campaign (manager-crash): a manager that is not in flight crashed
    mid-rollout and the planner refused with TooFewManagers and DownNodes ('docker node rm' of a
    manager that was about to come back). Mid-rollout it waits (ManagerUnreachable), touches
    nothing, even with removeDownNodes, and goes on when the manager is back."""
    for remove in (False, True):
        p = Pass(cluster(managers=3, workers=2), remove_down_nodes=remove)
        p.c.advance(10)
        p.until(d.DRAIN)
        assert p.progress is not None
        (host,) = p.progress.nodes
        other = next(h for h in ("swarm-manager000000", "swarm-manager000001",
                                 "swarm-manager000002") if h != host
                     and h != p.c.snapshot().self_hostname)
        down = p.c.live(other)
        down.state, down.reachable = "down", False
        dec = p.step(apply=False)
        assert dec.verdict == d.WAIT and not dec.actions, dec.reasons
        assert dec.reasons[0].code == d.MANAGER_UNREACHABLE and other in dec.reasons[0].message
        down.state, down.reachable = "ready", True
        assert any(a.node == host for a in p.until(d.DEMOTE).actions)  # it goes on
