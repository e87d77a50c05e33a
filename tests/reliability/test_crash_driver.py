"""The crash driver's bookkeeping (tests/reliability/crash.py), with a stand-in run (no testbed:
this checks only that every planned point ends up killed or reported missed)."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

from tests.reliability import crash
from tests.reliability.rollout import Allowances


class _Run:
    """Events of one rollout step; the progress read hangs (the rollout ends meanwhile)."""

    def __init__(self) -> None:
        self.killed: list[str] = []
        self.replica = SimpleNamespace(hostname="m0", generation=1)
        self.bed = SimpleNamespace(progress=self._hang)

    async def _hang(self) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    def events(self) -> list[dict[str, Any]]:
        return [{"reason": "LeaseAcquired", "replica": "m0-g1", "time": "2026-01-01T00:00:00Z"},
                {"reason": "NodeRejoined", "object": "node/w1", "replica": "m0-g1",
                 "time": "2026-01-01T00:00:01Z"}]

    def running(self, label: str) -> Any:
        return self.replica if label == "m0-g1" else None

    def kill9(self, host: str) -> None:
        self.killed.append(host)


async def test_a_point_whose_kill_is_cut_short_by_the_end_of_the_rollout_is_still_counted(
) -> None:
    run, allow = _Run(), Allowances()
    task = asyncio.create_task(crash.drive(run, [("w1", "remove")], allow))  # type: ignore[arg-type]
    for _ in range(100):
        if run.killed:
            break
        await asyncio.sleep(0.01)
    task.cancel()  # the rollout succeeded while the driver read the progress
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert run.killed == ["m0"]
    assert allow.measured["crashPoints"] == 1 and allow.measured["crashPointsMissed"] == []
    assert [(r["node"], r["phase"]) for r in allow.details["crashes"]] == [("w1", "remove")]
