"""Runs the planner's actions against the swarm and the scale sets (idempotent, no decisions).

A reimage is started (ARM accepted the manual upgrade) and then tracked in a background task, so
the loop never blocks on an operation that takes minutes; a failed operation is reported as a
Warning event and shows up in the next snapshot as provisioningState Failed, which the planner
reads. An operation that cannot be followed because the credentials are refused (401/403, e.g. a
role without `Microsoft.Compute/locations/operations/read`) is not a failed reimage: it is kept
in `blocked` for the loop, which halts as for any other permanent error. `handover_lease` is the
loop's business and is not handled here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from controller import decision as d
from controller import rules
from controller.adapters.azure import AzureFailure, AzurePermanent
from controller.adapters.swarm import NotFound, SwarmError, node_fields
from controller.decision import Action
from controller.runtime import events as ev
from controller.runtime.events import EventSink
from controller.runtime.health import Metrics
from controller.runtime.ports import ReimagePort, ScaleSetPort, SwarmPort
from controller.snapshot import node_from_dict


class Executor:
    """Executes one action at a time; keeps the reimages in flight."""

    def __init__(self, swarm: SwarmPort, azure: ScaleSetPort, sink: EventSink,
                 metrics: Metrics, trigger: Callable[[], None]) -> None:
        self.swarm = swarm
        self.azure = azure
        self.sink = sink
        self.metrics = metrics
        self.trigger = trigger
        self.reimages: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.blocked: AzurePermanent | None = None  # a refusal met while following a reimage
        self.rollout = ""
        self.version = ""
        # action kind -> coroutine; other phases (resources, services) register theirs here
        self.handlers: dict[str, Callable[[Action], Awaitable[None]]] = {
            d.REMOVE_DOWN_NODE: self._remove_down_node,
            d.DRAIN: self._drain,
            d.DEMOTE: self._demote,
            d.SET_MODEL_IMAGE: self._set_model_image,
            d.REIMAGE: self._reimage,
            d.REMOVE_NODE: self._remove_node,
            d.SET_AVAILABILITY: self._set_availability,
        }

    def _emit(self, type_: str, reason: str, obj: str, message: str) -> None:
        self.sink.emit(type_, reason, obj, message, self.rollout, self.version)

    async def run(self, action: Action) -> None:
        """Execute `action`; raises SwarmError / AzureFailure when it could not be done."""
        started = time.monotonic()
        handler = self.handlers.get(action.kind)
        if handler is None:
            raise ValueError(f"action {action.kind!r}: no handler registered in the executor")
        await handler(action)
        self.metrics.step_seconds.labels(action.kind).observe(time.monotonic() - started)

    async def _drain(self, a: Action) -> None:
        if await self.swarm.patch_node(a.node_id, Availability="drain"):
            self._emit(ev.NORMAL, ev.NODE_DRAINING, ev.node_object(a.node),
                       f"draining {a.node} ({a.node_id[:12]}): its tasks move to other nodes")

    async def _demote(self, a: Action) -> None:
        # The planner demotes only after two observations `managerSettle` apart; the same rule
        # is asked once more on a fresh node list right before the call (a manager that went
        # out since the pass's observation), and the next pass decides again.
        fresh = [node_from_dict(node_fields(n, 0)) for n in await self.swarm.nodes()]
        blockers = rules.demote_blockers(fresh, a.node_id)
        if blockers:
            self._emit(ev.WARNING, d.MANAGER_UNREACHABLE, ev.node_object(a.node),
                       f"not demoting {a.node}: right before the call, other managers are not "
                       f"Ready and Reachable: {rules.names(blockers)}; waiting")
            return
        leader = any(n.leader for n in fresh if n.id == a.node_id)
        if await self.swarm.patch_node(a.node_id, Role="worker"):
            moved = "; it was the leader: leadership moves to another manager" if leader else ""
            self._emit(ev.NORMAL, ev.NODE_DEMOTED, ev.node_object(a.node),
                       f"demoted {a.node} ({a.node_id[:12]}) to worker: raft keeps its "
                       f"majority while it is reimaged{moved}")

    async def _set_availability(self, a: Action) -> None:
        wanted = str(a.params.get("availability", "active"))
        if await self.swarm.patch_node(a.node_id, Availability=wanted):
            self._emit(ev.NORMAL, ev.AVAILABILITY_RESTORED, ev.node_object(a.node),
                       f"availability of {a.node} ({a.node_id[:12]}) set back to {wanted}")

    async def _remove(self, node_id: str) -> bool:
        """Demote the entry if it is still a manager, then remove it; False if already gone."""
        try:
            node = await self.swarm.node(node_id)
        except NotFound:
            return False
        if (node.get("Spec") or {}).get("Role") == "manager":
            await self.swarm.patch_node(node_id, Role="worker")
        try:
            await self.swarm.remove_node(node_id)
        except NotFound:
            return False
        return True

    async def _remove_node(self, a: Action) -> None:
        if await self._remove(a.node_id):
            self._emit(ev.NORMAL, ev.OLD_NODE_REMOVED, ev.node_object(a.node),
                       f"removed the old node entry {a.node_id[:12]} of {a.node}")

    async def _remove_down_node(self, a: Action) -> None:
        if await self._remove(a.node_id):
            self._emit(ev.NORMAL, ev.DOWN_NODE_REMOVED, ev.node_object(a.node),
                       f"removed the Down node entry {a.node_id[:12]} of {a.node}")

    async def _set_model_image(self, a: Action) -> None:
        image: dict[str, Any] = dict(a.params["image"])
        if await self.azure.set_model_image(a.scale_set, image):
            self._emit(ev.NORMAL, ev.MODEL_UPDATED, ev.scaleset_object(a.scale_set),
                       f"model image of {a.scale_set} set to {image.get('version')}")

    async def _reimage(self, a: Action) -> None:
        key = (a.scale_set, a.instance_id)
        running = self.reimages.get(key)
        if running is not None and not running.done():
            return  # this process already tracks it; the planner should not ask twice
        reimage = await self.azure.start_reimage(a.scale_set, [a.instance_id])
        self._emit(ev.NORMAL, ev.INSTANCE_REIMAGING, ev.node_object(a.node),
                   f"reimaging instance {a.scale_set}/{a.instance_id} ({a.node}) onto the "
                   f"target image (manual upgrade accepted by ARM)")
        # Only those in flight are kept: a done one would stay for the process's lifetime
        # (one per instance upgraded, 1000 per rollout of a full scale set).
        self.reimages = {k: t for k, t in self.reimages.items() if not t.done()}
        self.reimages[key] = asyncio.create_task(self._track(a, reimage))

    async def _track(self, a: Action, reimage: ReimagePort) -> None:
        started = time.monotonic()
        try:
            await reimage.wait()
        except AzurePermanent as err:
            if err.status in (401, 403):  # not a failed reimage: we may not follow it
                self.blocked = err
            else:
                self._emit(ev.WARNING, ev.REIMAGE_FAILED, ev.node_object(a.node),
                           f"the manual upgrade of {a.scale_set}/{a.instance_id} failed: {err}")
        except AzureFailure as err:
            self._emit(ev.WARNING, ev.TEMPORARY_ERROR, ev.node_object(a.node),
                       f"cannot follow the manual upgrade of {a.scale_set}/{a.instance_id} "
                       f"({err}); the next passes observe the instance instead")
        except (SwarmError, OSError) as err:  # pragma: no cover - defensive
            self._emit(ev.WARNING, ev.REIMAGE_FAILED, ev.node_object(a.node), str(err))
        else:
            self.metrics.step_seconds.labels("reimage_lro").observe(time.monotonic() - started)
        finally:
            self.trigger()

    def take_blocked(self) -> AzurePermanent | None:
        """The refusal met while following a reimage, once (the loop halts on it)."""
        blocked, self.blocked = self.blocked, None
        return blocked

    async def close(self) -> None:
        """Stop tracking (the operations continue in Azure; the next controller observes them)."""
        for task in self.reimages.values():
            task.cancel()
        for task in self.reimages.values():
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
