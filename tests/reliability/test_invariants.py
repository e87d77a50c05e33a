"""The campaign's judges on hand-made inputs: each one catches what it is for, and only that."""

from __future__ import annotations

from typing import Any

from tests.reliability import crash
from tests.reliability import invariants as inv

SS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets"


def entry(operation: str, path: str, status: int = 202, t: float = 10.0,
          instances: list[str] | None = None, kind: str = "write") -> dict[str, Any]:
    out: dict[str, Any] = {"time": t, "method": "POST", "path": path, "operation": operation,
                           "kind": kind, "status": status, "duration": 0.1}
    if instances is not None:
        out["instances"] = instances
    return out


def upgrade(ss: str, instance: str, status: int = 202, t: float = 10.0) -> dict[str, Any]:
    return entry("VirtualMachineScaleSets_UpdateInstances", f"{SS}/{ss}/manualupgrade", status,
                 t, [instance])


def event(reason: str, obj: str, t: float, message: str = "") -> dict[str, Any]:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    return {"time": stamp.replace("+00:00", "Z"), "reason": reason, "object": obj,
            "message": message}


def test_one_reimage_per_instance_passes_and_a_second_one_is_caught() -> None:
    log = [upgrade("swarm-worker-vmss", "0"), upgrade("swarm-worker-vmss", "1"),
           upgrade("swarm-manager-vmss", "0")]
    assert inv.reimaged_twice(log) == []
    log.append(upgrade("swarm-worker-vmss", "1", t=30))
    assert inv.reimaged_twice(log) == ["swarm-worker-vmss/1 reimaged 2 times (allowed 1)"]
    assert inv.reimaged_twice(log, allowed={"swarm-worker-vmss/1": 2}) == []
    assert inv.reimaged_twice(log, until=20) == []


def test_refused_requests_and_vm_level_reimages_are_counted_right() -> None:
    log = [upgrade("swarm-worker-vmss", "0", status=409), upgrade("swarm-worker-vmss", "0",
                                                                  status=429),
           upgrade("swarm-worker-vmss", "0"),
           entry("VirtualMachineScaleSetVMs_Reimage",
                 f"{SS}/swarm-worker-vmss/virtualMachines/0/reimage")]
    assert inv.reimages(log) == {"swarm-worker-vmss/0": 2}


def test_writes_after_a_halt_ignore_reads_tokens_and_refusals() -> None:
    log = [entry("VirtualMachineScaleSets_Get", f"{SS}/x", 200, 20, kind="read"),
           entry("Identity_ClientCredentialsToken", "/t/oauth2/v2.0/token", 200, 20),
           upgrade("swarm-worker-vmss", "0", status=403, t=21),
           upgrade("swarm-worker-vmss", "1", t=5)]
    assert inv.accepted_writes(log, since=10) == []
    log.append(upgrade("swarm-worker-vmss", "1", t=22))
    assert len(inv.accepted_writes(log, since=10)) == 1


START = event("RolloutStarted", "rollout/r", 1000.5)


def report(leaderless: list[dict[str, Any]], timeline: list[dict[str, Any]],
           low: int = 3) -> dict[str, Any]:
    return {"startedAt": 1000.0, "leaderless": leaderless, "managersOutTimeline": timeline,
            "maxManagersOut": max([e["out"] for e in timeline] or [0]),
            "services": {"sample": {"minRunningAfterConverged": low}}}


def sample(manager: str, at: float, kind: str = "no-leader") -> dict[str, Any]:
    return {"t": at - 1000.0, "at": at, "manager": manager, "path": "/nodes", "kind": kind,
            "error": kind}


def test_leaderless_after_the_leaders_demotion_is_accepted_elsewhere_not() -> None:
    events = [START, event("NodeDraining", "node/m1", 1009), event("NodeDemoted", "node/m1", 1010,
                                                              "...; it was the leader: ..."),
              event("NodeUpgraded", "node/m1", 1030)]
    ok = inv.referee(report([sample("m2", 1011.5)], [{"t": 10.5, "out": 2, "managers": 2}]),
                     events)
    assert ok.violations == []
    assert ok.measured["leaderlessAcceptedAsLeaderMove"] == 1
    late = inv.referee(report([sample("m2", 1040)], [{"t": 40, "out": 2, "managers": 3}]), events)
    assert len(late.violations) == 2
    assert late.violations[0].startswith("leaderless: no-leader answer from m2")
    assert late.violations[1].startswith("managersOut: 2 of 3 managers out")


def test_the_node_in_flight_may_not_answer_but_the_others_must() -> None:
    events = [START, event("NodeDraining", "node/m2", 1001), event("NodeDemoted", "node/m2", 1002),
              event("NodeUpgraded", "node/m2", 1030)]
    own = inv.referee(report([sample("m2", 1020)], []), events)
    assert own.violations == [] and own.measured["leaderlessFromNodeInFlight"] == 1
    other = inv.referee(report([sample("m0", 1020)], []), events)
    assert len(other.violations) == 1


def test_injected_windows_excuse_only_what_falls_inside() -> None:
    windows = [inv.Window(1100, 1130, "two managers crashed")]
    inside = inv.referee(report([sample("m0", 1110)], [{"t": 110, "out": 2, "managers": 3}]),
                         [START], windows)
    assert inside.violations == [] and inside.measured["leaderlessInInjectedFault"] == 1
    outside = inv.referee(report([sample("m0", 1200)], []), [START], windows)
    assert len(outside.violations) == 1


def test_a_stall_before_the_rollout_touched_anything_is_counted_apart() -> None:
    late_start = [event("RolloutStarted", "rollout/r", 1050)]
    judged = inv.referee(report([sample("m0", 1011), sample("m1", 1060)], []), late_start)
    assert judged.measured["leaderlessBeforeRollout"] == 1
    assert len(judged.violations) == 1 and "from m1" in judged.violations[0]


def test_an_outage_of_the_sample_service_is_a_violation() -> None:
    assert inv.referee(report([], [], low=0), []).violations == [
        "outage: sample had 0 running task(s) after it had converged"]
    missing = {"leaderless": [], "managersOutTimeline": [], "services": {}}
    assert inv.referee(missing, []).violations[0].startswith("outage: the referee did not see")


def test_leaks_of_the_secret_or_a_bearer_token_are_found() -> None:
    token = "tb." + "A" * 43
    texts = {"clean": "client secret ***, Bearer ***", "leaky": "secret=MARKER-123 x",
             "token": f"Authorization: Bearer {token}"}
    assert inv.leaked(texts, ["MARKER-123"]) == [
        "leaky contains a secret (MARK…)", "token contains a bearer token (tb.AAAAA…)"]


def test_the_crash_schedule_covers_every_point_before_repeating_one() -> None:
    points = crash.all_points()
    assert len(points) == 3 * 5 + 2 * 4 + 2
    plans = crash.schedule(runs=2, seed=7, per_run=13)
    dealt = [p for plan in plans for p in plan]
    assert len(set(dealt)) == len(points)  # 26 dealt: all 25 plus one repeated
    assert all(len(set(plan)) == len(plan) == 13 for plan in plans)
    assert crash.schedule(runs=2, seed=7, per_run=13) == plans
    assert crash.schedule(runs=2, seed=8, per_run=13) != plans


def test_a_short_burst_of_timeouts_is_a_stall_a_long_one_or_no_leader_is_not() -> None:
    burst = [sample("m0", 1100.0, "timeout"), sample("m0", 1100.1, "timeout"),
             sample("m1", 1100.05, "timeout")]
    judged = inv.referee(report(burst, []), [START])
    assert judged.violations == [] and judged.measured["leaderlessShortTimeouts"] == 3
    long = [sample("m0", 1100.0 + 0.1 * i, "timeout") for i in range(30)]  # 3 s: an election
    assert len(inv.referee(report(long, []), [START]).violations) == 20 + 1  # 20 and "... more"
    no_leader = [sample("m0", 1100.0)]
    assert len(inv.referee(report(no_leader, []), [START]).violations) == 1


def test_the_new_leaders_unknown_blip_after_a_slow_election_is_accepted_a_long_one_not() -> None:
    """Final campaign, swarm-hang run 1 (load average ~20): the leader was demoted at 57.7 s, the
    election ended 4.2 s later ('node lost leader status'), and the new leader showed both
    managers `unknown` (still Reachable) for 0.12 s. A blip like that within 10 s of a leader's
    demote is the documented artefact; the same picture lasting seconds is not."""
    events = [START, event("NodeDraining", "node/m1", 1009), event("NodeDemoted", "node/m1", 1010,
                                                              "...; it was the leader: ..."),
              event("NodeUpgraded", "node/m1", 1030)]
    blip = [{"t": 14.3, "out": 2, "managers": 2}, {"t": 14.42, "out": 0, "managers": 2}]
    ok = inv.referee(report([], blip), events)
    assert ok.violations == [] and ok.measured["managersOutBlipsAfterLeaderMove"] == 1
    long = [{"t": 14.3, "out": 2, "managers": 2}, {"t": 17.0, "out": 0, "managers": 2}]
    assert inv.referee(report([], long), events).violations == [
        "managersOut: 2 of 2 managers out at t=14.3s"]
    late = [{"t": 25.0, "out": 2, "managers": 2}, {"t": 25.1, "out": 0, "managers": 2}]
    assert len(inv.referee(report([], late), events).violations) == 1
