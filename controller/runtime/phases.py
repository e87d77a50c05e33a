"""The runtime side of the resources and services phases (controller/phases.py, rollout.py).

- `plan`: observes what the phases read (the resource group's deployments, the swarm services),
  runs the three-phase planner, and — only when it waits for ARM's verdict on the target's
  template (`TemplateCheckPending`) — asks ARM to validate it and to show its what-if, then plans
  again with that check in the snapshot. The check is cached per (deployment, template,
  parameters), so ARM is asked once per process, and never for a refused declaration.
- `run`: executes `deploy_template` and `update_service` (idempotent; False for other kinds).
- `events`: PhaseStarted / PhaseCompleted, DeploymentSucceeded and ServiceUpdated, read off the
  change between the stored progress and the planner's next one (the executor-side events are
  DeploymentStarted and ServiceUpdating; halts such as ServiceRolledBack come as reasons).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from controller import decision as d
from controller import phases, rollout
from controller import progress as pg
from controller.adapters.platform import ServiceClient, observe_services, update_image
from controller.adapters.resources import ResourceGroupClient
from controller.catalog import Catalog, Release
from controller.decision import Action, Decision
from controller.model import Desired
from controller.progress import Progress
from controller.runtime import events as ev
from controller.runtime.events import EventSink
from controller.snapshot import Snapshot

Planner = Callable[[Desired, Snapshot, Progress | None, Catalog, float], Decision]
PHASE_STARTED = "PhaseStarted"
PHASE_COMPLETED = "PhaseCompleted"
DEPLOYMENT_STARTED = "DeploymentStarted"
DEPLOYMENT_SUCCEEDED = "DeploymentSucceeded"
SERVICE_UPDATING = "ServiceUpdating"
SERVICE_UPDATED = "ServiceUpdated"

_DESCRIBE = {
    pg.PHASE_RESOURCES: "the resource group's other resources (the release's ARM template)",
    pg.PHASE_NODES: "the VHD under every node, one node at a time",
    pg.PHASE_SERVICES: "the platform services, one at a time",
}


class PhaseRuntime:
    """Observation, execution and events of the resources and services phases."""

    def __init__(self, swarm: ServiceClient, resources: ResourceGroupClient | None,
                 catalog: Catalog, sink: EventSink) -> None:
        self.swarm = swarm
        self.resources = resources
        self.catalog = catalog
        self.sink = sink
        self.phase = ""  # the phase of the last decision (for /healthz)
        self._checks: dict[tuple[str, str, str], dict[str, Any]] = {}

    # --- observe + plan ---------------------------------------------------------------------

    async def observe(self) -> dict[str, Any]:
        """The snapshot keys of the phases: `services` and (with ARM) `deployments`."""
        if self.resources is None:
            return {"services": await observe_services(self.swarm)}
        services, deployments = await asyncio.gather(
            observe_services(self.swarm), self.resources.deployments())
        return {"services": services, "deployments": deployments}

    async def plan(self, desired: Desired, raw: dict[str, Any], progress: Progress | None,
                   now: float, planner: Planner = rollout.plan) -> tuple[Snapshot, Decision]:
        """Observe the phases into `raw`, then plan (twice when the template needs a check)."""
        raw.update(await self.observe())
        snapshot = Snapshot.from_dict(raw)
        decision = planner(desired, snapshot, progress, self.catalog, now)
        pending = any(r.code == d.TEMPLATE_CHECK_PENDING for r in decision.reasons)
        prog = decision.progress
        release = self.catalog.release(prog.channel, prog.target_version) if prog else None
        if pending and release is not None and self.resources is not None:
            raw["templateCheck"] = await self._check(release, snapshot)
            snapshot = Snapshot.from_dict(raw)
            decision = planner(desired, snapshot, progress, self.catalog, now)
        if decision.progress is not None:
            self.phase = decision.progress.phase
        return snapshot, decision

    async def check_for(self, desired: Desired, raw: dict[str, Any]) -> None:
        """Add ARM's check of `desired`'s template to `raw` (observed with `observe`) unless its
        deployment already succeeded (for `swarm-upgrade snapshot --desired-file`)."""
        release = self.catalog.release(desired.channel, desired.version)
        if release is None or release.template is None or self.resources is None:
            return
        snapshot = Snapshot.from_dict(raw)
        name = phases.deployment_request(release, snapshot.observed.deployments or ())[0]
        done = [x for x in snapshot.observed.deployments or ()
                if x.name == name and x.provisioning_state == "Succeeded"]
        if not done:
            raw["templateCheck"] = await self._check(release, snapshot)

    async def _check(self, release: Release, snapshot: Snapshot) -> dict[str, Any]:
        assert release.template is not None and self.resources is not None
        deployments = snapshot.observed.deployments or ()
        name, values, _ = phases.deployment_request(release, deployments)
        key = (name, release.template.digest, json.dumps(values, sort_keys=True))
        if key not in self._checks:
            self._checks[key] = await self.resources.check_template(
                name, release.template.body, values, release.template.digest)
        return self._checks[key]

    # --- actions ----------------------------------------------------------------------------

    async def run(self, action: Action, rid: str, version: str) -> bool:
        """Execute a phase action; False when `action` is not one (the executor's)."""
        if action.kind == d.DEPLOY_TEMPLATE:
            await self._deploy(action, rid, version)
            return True
        if action.kind == d.UPDATE_SERVICE:
            p = action.params
            if await update_image(self.swarm, str(p["serviceId"]), str(p["image"]),
                                  dict(p["updateConfig"])):
                self.sink.emit(ev.NORMAL, SERVICE_UPDATING, f"service/{p['service']}",
                               f"updating platform service {p['service']} to {p['image']} "
                               "(parallelism 1, rolled back by swarm on failure)", rid, version)
            return True
        return False

    async def _deploy(self, action: Action, rid: str, version: str) -> None:
        p = action.params
        release = self.catalog.release(str(p["channel"]), str(p["version"]))
        template = release.template if release is not None else None
        if template is None or template.digest != p["templateDigest"]:
            raise ValueError(f"deploy_template: the catalog has no template "
                             f"{str(p['templateDigest'])[:12]} for {p['version']}")
        if self.resources is None:
            raise ValueError("deploy_template: no ARM resource-group client")
        await self.resources.deploy(str(p["deployment"]), template.body,
                                    dict(p["parameters"]), str(p["mode"]))
        self.sink.emit(ev.NORMAL, DEPLOYMENT_STARTED, f"deployment/{p['deployment']}",
                       f"deploying {template.source} as {p['deployment']} ({p['mode']}) with "
                       f"the parameters of the last deployment", rid, version)

    # --- events -----------------------------------------------------------------------------

    def events(self, old: Progress | None, new: Progress | None, version: str) -> None:
        """Phase events for what changed between the stored progress and the next one."""
        if new is None or not new.phase:
            return
        rid = new.rollout_id
        same = old is not None and old.rollout_id == rid
        order = pg.ROLLOUT_PHASES
        before = (old.phase or pg.PHASE_NODES) if same and old is not None else ""
        at = order.index(before) if before else -1
        now = order.index(new.phase)

        def emit(reason: str, obj: str, message: str) -> None:
            self.sink.emit(ev.NORMAL, reason, obj, message, rid, version)

        if same and old is not None and new.resources is not None and new.resources.finished \
                and not (old.resources is not None and old.resources.finished) \
                and new.resources.item:
            emit(DEPLOYMENT_SUCCEEDED, f"deployment/{new.resources.item}",
                 f"deployment {new.resources.item} succeeded")
        done_before = set(old.services.done) if same and old and old.services else set()
        for service in new.services.done if new.services else ():
            if service not in done_before:
                emit(SERVICE_UPDATED, f"service/{service}",
                     f"platform service {service} runs the image of {new.target_version}")
        for index in range(max(at, 0), now):
            emit(PHASE_COMPLETED, ev.rollout_object(rid),
                 f"phase {order[index]} of {new.target_version} is done")
        if now > at and new.phase in _DESCRIBE:
            emit(PHASE_STARTED, ev.rollout_object(rid),
                 f"phase {new.phase} of {new.target_version}: {_DESCRIBE[new.phase]}")
