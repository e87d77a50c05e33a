"""The reconcile loop: trigger → lease → observe → plan → persist → act → requeue.

Triggers carry no payload (a declaration change, a swarm node/service/config event, a reimage
that finished, the resync timer): they only wake the loop, which re-observes everything, so a
lost or repeated event changes nothing. Only the lease holder acts; other replicas observe the
lease and wait. The planner's next progress is written (fenced by the lease) BEFORE its actions
run. Temporary errors back off; permanent ones halt with a Warning event until the declaration
changes. When the holder's own node is next, it hands the lease over and a replica on another
manager continues.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from controller import decision as d
from controller.adapters.azure import AzureFailure, AzurePermanent
from controller.adapters.resources import ResourceGroupClient
from controller.adapters.swarm import Conflict, NotFound, SwarmError
from controller.catalog import Catalog
from controller.decision import Decision
from controller.model import Desired
from controller.progress import Progress
from controller.rollout import plan as rollout_plan
from controller.runtime import events as ev
from controller.runtime.events import EventSink
from controller.runtime.executor import Executor
from controller.runtime.health import Metrics
from controller.runtime.narrate import (
    progress_events,
    reason_events,
    rollout_id,
    succeeded_message,
)
from controller.runtime.observe import observe_dict
from controller.runtime.phases import PhaseRuntime
from controller.runtime.ports import Clock, ScaleSetPort, SwarmPort, SystemClock
from controller.runtime.sources import ConfigSource, DesiredSource
from controller.runtime.store import STATE_NAME, LeaseLost, State, StateStore
from controller.snapshot import Snapshot

MAX_BACKOFF = 30.0


Planner = Callable[[Desired, Snapshot, Progress | None, Catalog, float], Decision]


@dataclass(frozen=True)
class LoopConfig:
    replica: str
    resync: float = 30.0
    lease_duration: float = 15.0
    once: bool = False
    halt_confirm: float = 10.0  # a new halt must be seen this long before it is recorded


class Controller:
    """One replica of the controller."""

    def __init__(self, cfg: LoopConfig, swarm: SwarmPort, azure: ScaleSetPort,
                 source: DesiredSource, catalog: Catalog, sink: EventSink,
                 metrics: Metrics, planner: Planner = rollout_plan,
                 resources: ResourceGroupClient | None = None, clock: Clock | None = None
                 ) -> None:
        self.cfg = cfg
        self.planner = planner
        self.clock: Clock = clock or SystemClock()
        self.swarm = swarm
        self.azure = azure
        self.source = source
        self.catalog = catalog
        self.sink = sink
        self.metrics = metrics
        self.store = StateStore(swarm, clock=self.clock.now)
        self.wake = asyncio.Event()
        self.executor = Executor(swarm, azure, sink, metrics, self.trigger)
        self.phases = PhaseRuntime(swarm, resources, catalog, sink)
        self.hostname = ""
        self.holding = False
        self.failures = 0
        self.halted_digest = ""
        self.announced: set[str] = set()
        self.last_pass_at = 0.0
        self.last_verdict = ""
        self._write = asyncio.Lock()

    def trigger(self) -> None:
        self.wake.set()

    def status(self) -> dict[str, object]:
        return {"replica": self.cfg.replica, "node": self.hostname, "leaseHeld": self.holding,
                "lastPassAt": self.last_pass_at, "verdict": self.last_verdict,
                "halted": bool(self.halted_digest), "phase": self.phases.phase}

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Reconcile until cancelled (or one pass with `once`); returns an exit code."""
        tasks = [asyncio.create_task(self.source.run())]
        try:
            await asyncio.wait_for(self.source.ready.wait(), 30)
            if self.cfg.once:
                await self.reconcile()
                return 1 if self.halted_digest else 0
            tasks += [asyncio.create_task(self._watch()), asyncio.create_task(self._renew())]
            while True:
                self.wake.clear()
                delay = await self.reconcile()
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation
                    # that arrives as the wake-up does, and the replica would never stop.
                    async with asyncio.timeout(delay):
                        await self.wake.wait()
                await self.clock.sleep(0.05)  # coalesce bursts of events
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.executor.close()
            if self.holding:
                with contextlib.suppress(SwarmError, LeaseLost):
                    await self.store.release(self.cfg.replica, self.clock.now())

    async def reconcile(self) -> float:
        """One pass; returns when to look again (seconds)."""
        try:
            delay = await self._pass()
            self.failures = 0
        except LeaseLost as err:
            self._lost(str(err))
            delay = 1.0
        except AzurePermanent as err:
            return self._halt(str(err))
        except (AzureFailure, SwarmError) as err:
            if isinstance(err, SwarmError) and "not a swarm manager" in err.message:
                self._lost("this node is not a manager")
                self.sink.note(ev.NORMAL, "Standby", f"node/{self.hostname or '?'}",
                               "this node is not a swarm manager (demoted for its upgrade?): "
                               "waiting")
                return self.cfg.resync
            client_error = isinstance(err, SwarmError) and 400 <= err.status < 500
            # Swarm refusing a demote/removal because raft would lose quorum (a manager went
            # down after this pass observed the swarm) protects the swarm: wait and re-observe.
            quorum = isinstance(err, SwarmError) and "loss of quorum" in err.message
            if client_error and not quorum and not isinstance(err, Conflict | NotFound):
                return self._halt(str(err))
            self.failures += 1
            delay = min(MAX_BACKOFF, 2.0 ** min(self.failures, 5) / 2)
            self.sink.note(ev.WARNING, ev.TEMPORARY_ERROR, f"node/{self.hostname or '?'}",
                           f"{err}; retrying in {delay:g}s")
        except ValueError as err:  # a corrupt progress record or an impossible observation
            return self._halt(f"cannot continue: {err}")
        self.last_pass_at = self.clock.now()
        self.metrics.passes.inc()
        return delay

    def _halt(self, message: str) -> float:
        desired = self.source.current
        self.halted_digest = desired.digest if desired else "-"
        self.sink.emit(ev.WARNING, ev.CONTROLLER_HALTED, f"node/{self.hostname or '?'}",
                       f"{message}; nothing more is touched until the declaration changes")
        self.last_pass_at = self.clock.now()
        return self.cfg.resync

    def _lost(self, why: str) -> None:
        if self.holding:
            self.sink.emit(ev.WARNING, ev.LEASE_LOST, f"node/{self.hostname}",
                           f"replica {self.cfg.replica} lost the lease: {why}")
        self.holding = False
        self.metrics.leader.set(0)

    async def _pass(self) -> float:
        desired = self.source.current
        if desired is None:
            return self.cfg.resync
        if self.halted_digest:
            if self.halted_digest == desired.digest:
                return self.cfg.resync
            self.halted_digest = ""
        if not self.hostname:
            self.hostname = (await self.swarm.info()).hostname
        now = self.clock.now()
        async with self._write:
            state, held = await self.store.acquire(
                self.cfg.replica, self.hostname, now, self.cfg.lease_duration)
        if not held:
            if self.holding:
                self._lost(f"now held by {state.lease.holder or 'nobody'}")
            return min(self.cfg.resync, self.cfg.lease_duration / 3)
        if not self.holding:
            self.holding = True
            self.metrics.leader.set(1)
            self.sink.emit(ev.NORMAL, ev.LEASE_ACQUIRED, f"node/{self.hostname}",
                           f"replica {self.cfg.replica} on {self.hostname} holds the lease "
                           f"and reconciles", rollout=_rid(state), version=desired.version)
        return await self._act(desired, state)

    async def _decide(
        self, desired: Desired, progress: Progress | None
    ) -> tuple[Snapshot, Decision, float]:
        raw = await observe_dict(self.swarm, self.azure, desired.manager_scale_set,
                                 desired.worker_scale_set, self.hostname, self.clock.now())
        now = self.clock.now()
        # The phases' observations (deployments, services, the template check when needed).
        snapshot, decision = await self.phases.plan(desired, raw, progress, now, self.planner)
        return snapshot, decision, now

    async def _act(self, desired: Desired, state: State) -> float:
        blocked = self.executor.take_blocked()
        if blocked is not None:
            raise blocked  # e.g. 403 while following a reimage: halt like any other refusal
        progress = Progress.from_dict(state.progress) if state.progress else None
        snapshot, decision, now = await self._decide(desired, progress)
        if decision.verdict == d.HALTED and not (progress is not None and progress.halted):
            # A halt stops the rollout until a person acts, so it must not come from one odd
            # observation: right after leadership moves, the new leader shows nodes unknown or
            # down for a moment. Look again for `halt_confirm` seconds; any other answer wins.
            deadline = self.clock.now() + self.cfg.halt_confirm
            while decision.verdict == d.HALTED and self.clock.now() < deadline:
                first = decision.reasons[0]
                self.sink.note(ev.NORMAL, "ConfirmingHalt", ev.rollout_object(
                    rollout_id(decision.progress, desired.name)),
                    f"{first.code}: {first.message}; looking again for "
                    f"{self.cfg.halt_confirm:g}s before halting", version=desired.version)
                await self.clock.sleep(min(2.0, self.cfg.halt_confirm))
                snapshot, decision, now = await self._decide(desired, progress)
        self._measure(decision, snapshot, desired)
        rid = rollout_id(decision.progress, desired.name)
        version = desired.version
        if decision.progress is not None and decision.progress != progress:
            async with self._write:
                await self.store.save_progress(
                    self.cfg.replica, decision.progress.to_dict(), now, self.cfg.lease_duration)
        urls = [self.azure.portal_url(desired.manager_scale_set),
                self.azure.portal_url(desired.worker_scale_set)]
        progress_events(self.sink, progress, decision.progress, version, urls)
        self.phases.events(progress, decision.progress, version)
        reason_events(self.sink, decision, rid, version)
        self.executor.rollout, self.executor.version = rid, version
        if decision.verdict == d.DONE and decision.progress is not None \
                and decision.progress.done and rid not in self.announced:
            self.announced.add(rid)
            self.sink.emit(ev.NORMAL, ev.ROLLOUT_SUCCEEDED, ev.rollout_object(rid),
                           succeeded_message(snapshot, decision.progress), rid, version)
        for action in decision.actions:
            if action.kind == d.HANDOVER_LEASE:
                await self._hand_over(rid, version)
                return 1.0
            if not await self.phases.run(action, rid, version):
                await self.executor.run(action)
        return decision.requeue_after

    async def _hand_over(self, rid: str, version: str) -> None:
        async with self._write:
            await self.store.hand_over(self.cfg.replica, self.hostname, self.clock.now())
        self.holding = False
        self.metrics.leader.set(0)
        self.sink.emit(ev.NORMAL, ev.LEASE_HANDED_OVER, f"node/{self.hostname}",
                       f"{self.hostname} is the last node: the lease is handed over to a "
                       f"replica on another manager, which upgrades {self.hostname}", rid, version)

    def _measure(self, decision: Decision, snapshot: Snapshot, desired: Desired) -> None:
        self.last_verdict = decision.verdict
        self.metrics.verdict(decision.verdict)
        release = self.catalog.release(desired.channel, desired.version)
        instances = [i for s in snapshot.scale_sets for i in s.instances]
        self.metrics.nodes_total.set(len(instances))
        if release is not None:
            self.metrics.nodes_upgraded.set(sum(1 for i in instances if i.image == release.image))

    # --- background tasks -------------------------------------------------------------------

    async def _renew(self) -> None:
        """Keep the lease while holding it (every third of its duration)."""
        while True:
            await self.clock.sleep(self.cfg.lease_duration / 3)
            if not self.holding:
                continue
            try:
                async with self._write:
                    await self.store.renew(self.cfg.replica, self.clock.now(),
                                           self.cfg.lease_duration)
            except LeaseLost as err:
                self._lost(str(err))
                self.trigger()
            except SwarmError:
                pass  # the next renewal (or the lease's expiry) decides

    async def _watch(self) -> None:
        """Swarm node/service/config events wake the loop; the connection is re-made on loss."""
        failures = 0
        while True:
            try:
                async for event in self.swarm.events({"type": ["node", "service", "config"]}):
                    failures = 0
                    name = ((event.get("Actor") or {}).get("Attributes") or {}).get("name")
                    if event.get("Type") == "config":
                        if isinstance(self.source, ConfigSource) and name != STATE_NAME:
                            self.source.poke()
                        if name == STATE_NAME and self.holding:
                            continue  # our own lease renewals and progress writes
                    self.trigger()
            except SwarmError:
                failures += 1
            self.trigger()  # something may have been missed while disconnected
            await self.clock.sleep(min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 6)))


def _rid(state: State) -> str:
    return str((state.progress or {}).get("rolloutId", ""))
