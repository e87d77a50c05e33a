"""One judged rollout on a Bed: start, edit the declaration, watch, judge.

`rollout(bed, dir, name, during=..., ...)` runs the whole story of one run and returns its result
dict (the campaign's JSON row): `scenario`, `run`, `target`, `outcome`, `expected`, `ok`,
`violations`, `durationS`, `measured`, `details`. `during(run, target)` is the scenario's own
coroutine (crash points, faults); it runs while the rollout does and returns its details plus
what it allows (more reimages of an instance after a halt and resume, windows where it stopped
managers itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability import invariants as inv
from tests.reliability.harness import Bed, Run, declaration, settle_status

ROLLOUT_TIMEOUT = 600.0


@dataclass
class Allowances:
    """What a scenario's faults legitimately cause (filled in by the scenario)."""

    reimages: dict[str, int] = field(default_factory=dict)
    windows: list[inv.Window] = field(default_factory=list)
    expect: str = "completed"  # completed | halted
    details: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)


During = Callable[[Run, str, Allowances], Awaitable[None]]


async def rollout(bed: Bed, directory: Path, scenario: str, index: int, during: During | None,
                  *, run_args: list[str] | None = None, text: Callable[[str], str] | None = None,
                  wait_s: float = ROLLOUT_TIMEOUT) -> dict[str, Any]:
    """Upgrade `bed` to its next release with three replicas while `during` runs; judge it."""
    target = bed.next_version()
    assert target is not None, "this testbed has no release left to upgrade to"
    started = time.monotonic()
    run = Run(bed, directory, args=list(run_args or []))
    allow = Allowances()
    result: dict[str, Any] = {"scenario": scenario, "run": index, "from": bed.version,
                              "target": target}
    outcome = "error"
    try:
        await run.start()
        await run.wait_reason("UpToDate", 180)
        begin = time.time()
        run.declare(text(target) if text else declaration(target))
        task = asyncio.create_task(during(run, target, allow)) if during else None
        waiter = asyncio.create_task(run.wait_for(_succeeded(target, begin), wait_s,
                                                  f"RolloutSucceeded for {target}"))
        try:
            if task is not None:
                await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            if task is not None and task.done() and not waiter.done() \
                    and allow.expect == "halted":
                waiter.cancel()  # the scenario saw the halt it expected and checked it
                task.result()
                outcome = "halted"
            else:
                await waiter
                outcome = "completed"
        finally:
            if not waiter.done():
                waiter.cancel()
            if task is not None:
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    except AssertionError as err:
        outcome = "timeout"
        allow.violations.append(f"rollout: {str(err).splitlines()[0]}")
    except Exception as err:
        outcome = "error"
        allow.violations.append(f"harness: {type(err).__name__}: {err}")
        allow.details["traceback"] = traceback.format_exc()[-2000:]
    finally:
        report = await run.finish()
    verdict = judge(run, report, target, allow, completed=outcome == "completed")
    if outcome == "completed":
        problems = await settle_status(bed, target)
        verdict.extend("final state", problems)
        if not problems:
            bed.version = target
        else:
            bed.broken = True
    else:
        bed.broken = True
    violations = allow.violations + verdict.violations
    result.update(outcome=outcome, expected=allow.expect,
                  ok=not violations and outcome == allow.expect, violations=violations,
                  durationS=round(time.monotonic() - started, 1),
                  measured={**verdict.measured, **allow.measured}, details=allow.details)
    return result


def _succeeded(target: str, after: float) -> Callable[[list[dict[str, Any]]], bool]:
    """A RolloutSucceeded for `target`: fresh replicas announce the rollout they find finished
    (the previous target) in their first pass, right after their UpToDate, which is what the
    run waits for before it declares the target: matched by time alone, that announcement ended
    a token-failures run before it began."""
    def found(events: list[dict[str, Any]]) -> bool:
        return any(e.get("reason") == "RolloutSucceeded" and e.get("version") == target
                   and e.get("time") and inv.epoch(e["time"]) >= after for e in events)
    return found


def judge(run: Run, report: dict[str, Any], target: str, allow: Allowances,
          completed: bool) -> inv.Verdict:
    """The invariants every rollout run is held to."""
    events = run.events()
    arm_log = run.arm_log()
    verdict = inv.referee(report, events, allow.windows)
    verdict.extend("reimaged twice", inv.reimaged_twice(arm_log, allowed=allow.reimages))
    counts = inv.reimages(arm_log)
    verdict.measured["reimageRequests"] = sum(counts.values())
    verdict.measured["arm429"] = sum(1 for e in arm_log if e["status"] == 429)
    verdict.measured["armRequests"] = len(arm_log)
    crashed = [e for e in events if "raw" in e and "Traceback" in str(e["raw"])]
    if crashed:
        verdict.violations.append(f"replica crashed: {crashed[0]['raw'][:200]}")
    return verdict
