"""The campaign's fast subset, in every `scripts/test.sh` run, on one real testbed:

1. bad input through a live controller: a sample of the hand-written hostile declarations plus
   generated ones through the file source, hostile config objects (one of 1 MB) through the
   config-object source, hostile catalogs at start — each refused in one line naming the field,
   every replica stays up, nothing is touched;
2. one real rollout by three replicas with the ARM endpoint enforcing manifests/azure-role.json,
   the service principal secret a marker, /healthz and /metrics on, and the acting replica
   SIGKILLed at four points (a manager's reimage request, a manager's rejoin, a worker's drain, a
   worker's old-entry removal): it completes, no instance is reimaged twice, the referee sees no
   leaderless moment and at most one manager out (beyond the accepted artefacts), the sample
   service never goes down, and no output contains the secret or a bearer token.

The full campaign is `python -m tests.reliability.campaign` (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

from testbed.control import TestbedHandle
from tests.reliability import bad_input, crash, security
from tests.reliability import invariants as inv
from tests.reliability.harness import FIRST, Bed, Run
from tests.reliability.rollout import Allowances, rollout

MARKER = "RELIABILITY-MARKER-" + secrets.token_hex(12)
TESTBED = {"managers": 3, "workers": 2, "reimage_seconds": 0.5, "version": FIRST,
           "client_secret": MARKER, "role_actions": security.role_actions()}
POINTS = [("swarm-manager000001", "reimage"), ("swarm-manager000002", "rejoin"),
          ("swarm-worker000000", "drain"), ("swarm-worker000001", "remove")]


def show(row: dict[str, Any]) -> str:
    return json.dumps({k: row.get(k) for k in ("outcome", "violations", "measured")}, indent=1,
                      default=str)


async def test_hostile_input_to_a_live_controller_is_refused_and_touches_nothing(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    bed = Bed(testbed, FIRST)
    if "sample" not in json.dumps(await testbed.astatus()):
        await asyncio.to_thread(testbed.create_service, "sample", 4)
    row = await bad_input.run_input(bed, tmp_path, 0, cases=14, generated_count=4, seed=1,
                                    config_cases=3, catalogs=6)
    assert row["measured"]["hostileDeclarations"] >= 18, show(row)
    assert row["ok"], show(row)


async def test_a_rollout_with_crashes_keeps_every_invariant_and_every_secret(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    bed = Bed(testbed, FIRST)
    with contextlib.suppress(Exception):
        await asyncio.to_thread(testbed.create_service, "sample", 4)

    async def during(run: Run, target: str, allow: Allowances) -> None:
        texts: dict[str, str] = {}
        allow.details["texts"] = texts
        sampler = asyncio.create_task(security.sample_endpoints(run, texts, allow))
        try:
            await crash.drive(run, POINTS, allow)
            await asyncio.sleep(3600)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    row = await rollout(bed, tmp_path / "run", "fast", 0, during,
                        run_args=["--metrics-port", "0", "--metrics-host", "127.0.0.1"])
    texts = row["details"].pop("texts", {})
    texts.update(security.read_logs(tmp_path / "run"))
    leaks = inv.leaked(texts, [MARKER])
    print(show(row))
    assert row["outcome"] == "completed", show(row)
    assert row["ok"], show(row)
    assert row["measured"]["crashPoints"] >= 3, show(row)
    assert row["measured"].get("endpointWritesRefused", 0) >= 8, show(row)
    assert len(texts) >= 6 and leaks == [], leaks
