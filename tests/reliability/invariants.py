"""The campaign's judges: pure functions over what a run left behind (no I/O).

Inputs are the ARM request log (`testbed.arm.requestlog` entries as dicts, with the instance ids
a write named), the referee's report (`testbed.referee`), and the controller replicas' events.
Each judge returns a list of violations (one readable line each); an empty list means the
invariant held.

The referee counts every "no leader" answer and every manager entry that is not Ready+Reachable.
Demoting the leader (every rollout does it once) transfers leadership; that produces short,
measured artefacts (docs/architecture.md, "What the referee sees when leadership moves"): up to
~3 s of blocked/no-leader answers and the new leader showing every node `unknown` for ~0.2 s.
Those samples are accepted only right after a `NodeDemoted` event that says "it was the leader"
(or, on the demoted node itself, for 5 s); samples answered by the manager being upgraded itself
(between its `NodeDraining` and `NodeUpgraded`: it is the one manager allowed out, and its new
dockerd blocks while it joins raft) are accepted too; so are samples inside windows where the
campaign itself stopped managers (a fault it injected), and samples before the rollout's first
step (`RolloutStarted`: nothing was touched yet, a stall of the loaded machine), and short
episodes of unanswered 1-s calls with no "no leader" answer (`_short_timeouts`: stalls of the
loaded machine, as opposed to an election). Every other sample is a violation.
The judges also count what they accepted, so the report can show it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

REIMAGE_OPERATIONS = ("VirtualMachineScaleSets_UpdateInstances", "VirtualMachineScaleSets_Reimage",
                      "VirtualMachineScaleSetVMs_Reimage", "VirtualMachineScaleSetVMs_ReimageAll")
_VM_PATH = re.compile(r"/virtualMachineScaleSets/([^/]+)/virtualMachines/([^/]+)/", re.I)
_SS_PATH = re.compile(r"/virtualMachineScaleSets/([^/]+)/", re.I)
# Bearer tokens the testbed's token endpoints issue ("tb." + token_urlsafe(32)).
TESTBED_TOKEN = re.compile(r"tb\.[A-Za-z0-9_-]{40,}")


def epoch(stamp: str) -> float:
    """An event's RFC 3339 `time` as epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Window:
    """[start, end] in epoch seconds, with why (a fault the campaign injected)."""

    start: float
    end: float
    why: str

    def holds(self, t: float, slack: float = 0.0) -> bool:
        return self.start - slack <= t <= self.end + slack


@dataclass
class Verdict:
    """Violations of one run, plus what was accepted and measured (for the report)."""

    violations: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)

    def extend(self, name: str, found: Iterable[str]) -> None:
        self.violations.extend(f"{name}: {line}" for line in found)


def reimages(arm_log: Sequence[dict[str, Any]], since: float = 0.0,
             until: float = float("inf")) -> Counter[str]:
    """Accepted reimage requests (HTTP < 300) per `scaleset/instance` in [since, until]."""
    out: Counter[str] = Counter()
    for entry in arm_log:
        if entry["operation"] not in REIMAGE_OPERATIONS or entry["status"] >= 300:
            continue
        if not since <= entry["time"] <= until:
            continue
        vm = _VM_PATH.search(entry["path"])
        if vm:
            out[f"{vm.group(1).lower()}/{vm.group(2)}"] += 1
            continue
        scale_set = _SS_PATH.search(entry["path"])
        name = scale_set.group(1).lower() if scale_set else "?"
        for instance in entry.get("instances") or ["?"]:
            out[f"{name}/{instance}"] += 1
    return out


def reimaged_twice(arm_log: Sequence[dict[str, Any]], since: float = 0.0,
                   until: float = float("inf"),
                   allowed: dict[str, int] | None = None) -> list[str]:
    """Instances asked to reimage more often than once (or than `allowed[instance]`)."""
    allowed = allowed or {}
    return [f"{key} reimaged {n} times (allowed {allowed.get(key, 1)})"
            for key, n in sorted(reimages(arm_log, since, until).items())
            if n > allowed.get(key, 1)]


def arm_writes(arm_log: Sequence[dict[str, Any]], since: float,
               until: float = float("inf")) -> list[dict[str, Any]]:
    """ARM requests that could change something (not token requests), in [since, until]."""
    return [e for e in arm_log if e["kind"] == "write" and not e["operation"].startswith(
        "Identity_") and since <= e["time"] <= until]


def accepted_writes(arm_log: Sequence[dict[str, Any]], since: float,
                    until: float = float("inf")) -> list[str]:
    """Writes ARM accepted (< 300) in [since, until], one line each."""
    return [f"{e['operation']} {e['path']} at {e['time']:.1f}"
            for e in arm_writes(arm_log, since, until) if e["status"] < 300]


def _demotions(events: Sequence[dict[str, Any]]) -> list[tuple[str, float, bool]]:
    return [(str(e["object"]).removeprefix("node/"), epoch(e["time"]),
             "was the leader" in str(e.get("message", "")))
            for e in events if e.get("reason") == "NodeDemoted" and e.get("time")]


def in_flight(events: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Per hostname, the intervals from its `NodeDraining` to its `NodeUpgraded` (or the end)."""
    out: dict[str, list[tuple[float, float]]] = {}
    open_: dict[str, float] = {}
    for e in events:
        if not e.get("time"):
            continue
        host = str(e.get("object", "")).removeprefix("node/")
        if e.get("reason") == "NodeDraining" and host not in open_:
            open_[host] = epoch(e["time"])
        elif e.get("reason") == "NodeUpgraded" and host in open_:
            out.setdefault(host, []).append((open_.pop(host), epoch(e["time"])))
    for host, start in open_.items():
        out.setdefault(host, []).append((start, float("inf")))
    return out


STALL_S = 2.0


def _short_timeouts(entries: Sequence[dict[str, Any]]) -> set[int]:
    """ids of `timeout` samples in episodes shorter than STALL_S on their manager.

    The referee calls every manager every 0.1 s with a 1 s timeout. An election blocks requests
    for seconds and ends in "no leader" answers; a loaded 2-core machine also leaves single calls
    unanswered for a second now and then. An episode (timeouts of one manager less than 0.5 s
    apart) shorter than STALL_S with no "no leader" or deadline answer in it is such a stall.
    """
    out: set[int] = set()
    by_manager: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(entries, key=lambda e: float(e["at"])):
        by_manager.setdefault(str(entry["manager"]), []).append(entry)
    for items in by_manager.values():
        episode: list[dict[str, Any]] = []
        for entry in [*items, None]:
            if entry is not None and episode and float(entry["at"]) - float(
                    episode[-1]["at"]) < 0.5:
                episode.append(entry)
                continue
            if episode and all(e["kind"] == "timeout" for e in episode) and float(
                    episode[-1]["at"]) - float(episode[0]["at"]) < STALL_S:
                out.update(id(e) for e in episode)
            episode = [entry] if entry is not None else []
    return out


LEADER_MOVE_S = 10.0  # after a leader's demote: the election took up to ~6 s at load 25
OUT_BLIP_S = 1.0  # the new leader's "every node unknown" lasts ~0.2 s


def referee(report: dict[str, Any], events: Sequence[dict[str, Any]],
            windows: Sequence[Window] = (), service: str = "sample") -> Verdict:
    """Leaderless samples, managers out, sample-service outage: violations and what was accepted.

    A leaderless sample or a moment with more than one manager out is accepted only as a
    measured artefact of moving leadership (see the module docstring) or inside a `window`
    where the campaign stopped managers itself.
    """
    verdict = Verdict()
    demoted = _demotions(events)
    upgrading = in_flight(events)
    started = [epoch(e["time"]) for e in events if e.get("reason") == "RolloutStarted"
               and e.get("time")]
    begin = min(started) if started else float("inf")
    artefacts = injected = own = before = stalls = 0
    bad: list[str] = []
    short = _short_timeouts(report.get("leaderless", []))
    for entry in report.get("leaderless", []):
        at = float(entry["at"])
        if any(w.holds(at, 2.0) for w in windows):
            injected += 1
        elif at < begin:
            before += 1  # the rollout had not touched anything yet (a stall of the machine)
        elif any(start <= at <= end + 2.0 for start, end in upgrading.get(entry["manager"], [])):
            own += 1  # the manager being upgraded (the one allowed out) answering its rejoin
        elif any((leader and 0 <= at - t <= 3) or (host == entry["manager"] and 0 <= at - t <= 5)
                 for host, t, leader in demoted):
            artefacts += 1
        elif id(entry) in short:
            stalls += 1  # a 1-s call unanswered for less than STALL_S, no "no leader" answer
        else:
            bad.append(f"{entry['kind']} answer from {entry['manager']} on {entry['path']} at "
                       f"t={entry['t']:.1f}s: {str(entry.get('error', ''))[:120]}")
    verdict.extend("leaderless", bad[:20] + ([f"... {len(bad) - 20} more"] if len(bad) > 20
                                              else []))
    out_bad: list[str] = []
    blips = 0
    timeline = report.get("managersOutTimeline", [])
    for index, entry in enumerate(timeline):
        at = float(report.get("startedAt", 0.0)) + float(entry["t"])
        if entry["out"] <= 1 or any(w.holds(at, 2.0) for w in windows):
            continue
        if any(leader and 0 <= at - t <= 1.5 for _, t, leader in demoted):
            continue
        # The new leader shows every node `unknown` for ~0.2 s once the election after the
        # leader's demote is over, and that election took up to ~6 s at load average 25
        # (docs/architecture.md): a blip shorter than OUT_BLIP_S within LEADER_MOVE_S of it is
        # that artefact (a real loss of quorum lasts the seconds of an election, and answers
        # "no leader", judged above).
        ends = float(timeline[index + 1]["t"]) if index + 1 < len(timeline) else float("inf")
        if ends - float(entry["t"]) < OUT_BLIP_S and any(
                leader and 0 <= at - t <= LEADER_MOVE_S for _, t, leader in demoted):
            blips += 1
            continue
        out_bad.append(f"{entry['out']} of {entry['managers']} managers out at "
                       f"t={entry['t']:.1f}s")
    verdict.extend("managersOut", out_bad)
    stats = (report.get("services") or {}).get(service)
    if stats is None:
        verdict.violations.append(f"outage: the referee did not see the service {service!r}")
    else:
        low = stats.get("minRunningAfterConverged")
        if low is None or low < 1:
            verdict.violations.append(f"outage: {service} had {low} running task(s) after it "
                                      f"had converged")
        verdict.measured["minRunningAfterConverged"] = low
    verdict.measured.update(
        leaderlessSamples=len(report.get("leaderless", [])),
        leaderlessFromNodeInFlight=own, leaderlessBeforeRollout=before,
        leaderlessShortTimeouts=stalls,
        leaderlessAcceptedAsLeaderMove=artefacts, leaderlessInInjectedFault=injected,
        managersOutBlipsAfterLeaderMove=blips,
        maxManagersOut=report.get("maxManagersOut"))
    return verdict


def leaked(texts: dict[str, str], secrets: Sequence[str]) -> list[str]:
    """Where a secret or a testbed bearer token appears in `texts` (name -> text)."""
    found: list[str] = []
    for name, text in texts.items():
        for secret in secrets:
            if secret and secret in text:
                found.append(f"{name} contains a secret ({secret[:4]}…)")
        match = TESTBED_TOKEN.search(text)
        if match:
            found.append(f"{name} contains a bearer token ({match.group(0)[:8]}…)")
    return found


def reasons(events: Sequence[dict[str, Any]], reason: str,
            obj: str | None = None) -> list[dict[str, Any]]:
    """The events with `reason` (and `object`, if given)."""
    return [e for e in events if e.get("reason") == reason
            and (obj is None or e.get("object") == obj)]
