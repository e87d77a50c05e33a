"""How one reconcile pass treats the swarm's refusals (no swarm needed: the pass is replaced)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

from controller.adapters.swarm import SwarmError
from controller.catalog import load_catalog
from controller.runtime.events import EventSink
from controller.runtime.health import Metrics
from controller.runtime.loop import Controller, LoopConfig


def controller(out: io.StringIO) -> Controller:
    stub: Any = SimpleNamespace(current=None)
    return Controller(LoopConfig(replica="r"), stub, stub, stub, load_catalog(), EventSink(out),
                      Metrics())


async def test_a_demote_refused_for_quorum_is_retried_not_a_halt() -> None:
    """Found by the reliability campaign (manager-crash): a manager crashed between the pass's
    observation and its demote of the node in flight; swarm refused the demote (400
    FailedPrecondition, 'would result in a loss of quorum') and the controller halted for good.
    Swarm protected the quorum: the controller must wait and look again."""
    out = io.StringIO()
    c = controller(out)

    async def refused() -> float:
        raise SwarmError(400, "rpc error: code = FailedPrecondition desc = can't remove member "
                              "from the raft: this would result in a loss of quorum")

    c._pass = refused  # type: ignore[method-assign]
    delay = await c.reconcile()
    reasons = [json.loads(line)["reason"] for line in out.getvalue().splitlines()]
    assert reasons == ["TemporaryError"] and delay <= 2 and not c.halted_digest

    async def bad_request() -> float:
        raise SwarmError(400, "invalid Role")

    c._pass = bad_request  # type: ignore[method-assign]
    await c.reconcile()
    assert "ControllerHalted" in out.getvalue()  # other 4xx still halt
