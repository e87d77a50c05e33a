"""The resources and services phases of a rollout, one pure decision each.

An upgrade of Docker for Azure (the seed) is three parts, run in this order:

1. resources — the release's ARM template, deployed incrementally as `swarm-upgrade-<version>`
   with the parameters derived from the resource group's last deployment (arm_template.py), after
   ARM validated it (the runtime puts ARM's verdict in the snapshot's `templateCheck`);
2. nodes — the VHD under every node (planner.py, steps.py);
3. services — every platform service (label `com.docker.azure.system=true`, catalog name in
   `com.docker.azure.system.name`) updated to the release's image, one at a time, with a safe
   update config (parallelism 1, a monitor window, failure action rollback).

Each function re-derives the phase from the snapshot and the phase's `PhaseRecord` (what was
issued last, since when), so it is idempotent and resumable like the node steps: a request that
was recorded but never executed is sent again after `REISSUE_AFTER`; an outcome older than the
request (a stale failure or rollback) is not mistaken for the request's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from controller import arm_template
from controller import decision as d
from controller.catalog import Release
from controller.decision import Action, Reason
from controller.model import Strategy
from controller.observed import DEPLOYMENT_TERMINAL, Deployment, Observed, Service
from controller.progress import PhaseRecord

SYSTEM_LABEL: Final = "com.docker.azure.system"  # "true" on every platform service
SYSTEM_NAME_LABEL: Final = "com.docker.azure.system.name"  # its name in the catalog
REISSUE_AFTER: Final = 15.0  # a recorded request not visible after this long is sent again
CLOCK_SLACK: Final = 5.0  # tolerance between the controller's clock and ARM's / swarm's
UPDATE_MONITOR: Final = 10.0  # seconds swarm watches each updated task before the next one
INCREMENTAL: Final = "Incremental"


@dataclass(frozen=True)
class PhaseOutcome:
    """One phase's answer: `verdict` is a decision verdict (done = the phase is finished)."""

    verdict: str
    reasons: tuple[Reason, ...]
    record: PhaseRecord
    actions: tuple[Action, ...] = ()


def _out(
    verdict: str, code: str, message: str, record: PhaseRecord, *actions: Action
) -> PhaseOutcome:
    severity = d.WARNING if verdict in (d.HALTED, d.REFUSED) else d.NORMAL
    return PhaseOutcome(verdict, (Reason(code, message, severity),), record, actions)


# ---- resources ------------------------------------------------------------------------------


def last_deployment(deployments: tuple[Deployment, ...], exclude: str) -> Deployment | None:
    """The newest Succeeded deployment of the resource group other than `exclude`: the one whose
    parameters the next deployment starts from."""
    done = [x for x in deployments if x.provisioning_state == "Succeeded" and x.name != exclude]
    return max(done, key=lambda x: (x.timestamp, x.name)) if done else None


def deployment_request(
    release: Release, deployments: tuple[Deployment, ...]
) -> tuple[str, dict[str, Any], list[str]]:
    """The deployment name, parameter values and parameter problems of `release`'s template
    (shared by the planner and the runtime's template check, so both derive the same)."""
    assert release.template is not None
    name = arm_template.deployment_name(release.version)
    old = last_deployment(deployments, name)
    values, problems = arm_template.derive_parameters(
        release.template, old.parameters if old else None
    )
    return name, values, problems


def what_if_summary(observed: Observed) -> str:
    """`2 Create, 1 Modify` from the template check's what-if (empty without one)."""
    check = observed.template_check
    if check is None or not check.changes:
        return ""
    counts = Counter(c.change_type for c in check.changes)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def resources_phase(
    release: Release,
    observed: Observed,
    record: PhaseRecord | None,
    strategy: Strategy,
    now: float,
) -> PhaseOutcome:
    """Deploy the release's template unless its deployment already succeeded."""
    rec = record or PhaseRecord(started_at=now)
    template = release.template
    if template is None:
        return _out(d.DONE, d.PHASE_COMPLETED,
                    f"resources: {release.version} declares no template",
                    replace(rec, finished=True))
    if observed.deployments is None:
        return _out(d.WAIT, d.NOT_OBSERVED, "resources: the deployments were not observed", rec)
    name, values, problems = deployment_request(release, observed.deployments)
    current = next((x for x in observed.deployments if x.name == name), None)
    ours = rec.item == name
    if current is not None and current.provisioning_state == "Succeeded":
        return _out(d.DONE, d.PHASE_COMPLETED, f"resources: deployment {name} succeeded",
                    replace(rec, finished=True))
    if current is not None and current.provisioning_state not in DEPLOYMENT_TERMINAL:
        if ours and now - rec.since > strategy.node_ready_timeout:
            return _out(d.HALTED, d.DEPLOYMENT_TIMEOUT,
                        f"deployment {name} still {current.provisioning_state} after "
                        f"{strategy.node_ready_timeout:g}s", replace(rec, item=""))
        rec = rec if ours else replace(rec, item=name, target=template.digest, since=now)
        return _out(d.WAIT, d.DEPLOYING,
                    f"resources: deployment {name} is {current.provisioning_state}", rec)
    if current is not None and ours and current.timestamp >= rec.since - CLOCK_SLACK:
        error = f"{current.error_code}: {current.error_message}".strip(": ")
        return _out(d.HALTED, d.DEPLOYMENT_FAILED,
                    f"deployment {name} ended {current.provisioning_state}: {error or 'no error'}",
                    replace(rec, item=""))
    # Not deployed yet (or an older attempt failed): check, then deploy.
    if problems:
        return _out(d.REFUSED, d.INVALID_TEMPLATE,
                    f"template {template.source} of {release.version}: {problems[0]}", rec)
    check = observed.template_check
    if check is None or (check.deployment, check.template_digest) != (name, template.digest):
        return _out(d.WAIT, d.TEMPLATE_CHECK_PENDING,
                    f"resources: waiting for ARM to validate {template.source} as {name}", rec)
    if not check.valid:
        return _out(d.REFUSED, d.INVALID_TEMPLATE,
                    f"ARM refused template {template.source} of {release.version}: "
                    f"{check.code}: {check.message}", rec)
    if ours and now - rec.since < REISSUE_AFTER:
        return _out(d.WAIT, d.DEPLOYING, f"resources: deployment {name} requested", rec)
    params = {
        "deployment": name,
        "channel": release.channel,
        "version": release.version,
        "templateDigest": template.digest,
        "mode": INCREMENTAL,
        "parameters": values,
    }
    summary = what_if_summary(observed)
    return _out(d.PROCEED, d.DEPLOYING,
                f"resources: deploying {template.source} as {name} (incremental"
                f"{'; what-if: ' + summary if summary else ''})",
                replace(rec, item=name, target=template.digest, since=now),
                Action(d.DEPLOY_TEMPLATE, params=params))


# ---- services -------------------------------------------------------------------------------


def bare_image(image: str) -> str:
    """`busybox:1@sha256:…` → `busybox:1` (swarm may pin the digest it resolved)."""
    return image.split("@", 1)[0]


def platform_services(services: tuple[Service, ...]) -> dict[str, list[Service]]:
    """Catalog name → the swarm services labelled as that platform service."""
    out: dict[str, list[Service]] = {}
    for svc in sorted(services, key=lambda s: s.name):
        if svc.labels.get(SYSTEM_LABEL) == "true":
            out.setdefault(svc.labels.get(SYSTEM_NAME_LABEL) or svc.name, []).append(svc)
    return out


def update_config() -> dict[str, Any]:
    """The update config of a platform service update: one task at a time, each watched for
    UPDATE_MONITOR seconds, any failure rolls the whole service back."""
    return {
        "parallelism": 1,
        "delay": 0.0,
        "monitor": UPDATE_MONITOR,
        "failureAction": "rollback",
        "maxFailureRatio": 0.0,
        "order": "stop-first",
    }


def services_phase(
    release: Release,
    observed: Observed,
    record: PhaseRecord | None,
    strategy: Strategy,
    now: float,
) -> PhaseOutcome:
    """Update the platform services to `release`'s images, one at a time."""
    rec = record or PhaseRecord(started_at=now)
    wanted: Mapping[str, str] = release.system_services
    if not wanted:
        return _out(d.DONE, d.PHASE_COMPLETED,
                    f"services: {release.version} declares no system services",
                    replace(rec, finished=True))
    if observed.services is None:
        return _out(d.WAIT, d.NOT_OBSERVED, "services: the swarm services were not observed", rec)
    present = platform_services(observed.services)
    for name, image in wanted.items():
        for svc in present.get(name, []):
            outcome = _service_step(svc, image, rec, strategy, now)
            if outcome is not None:
                return outcome
            if svc.name not in rec.done:
                rec = replace(rec, done=(*rec.done, svc.name))
    absent = [n for n in wanted if n not in present]
    note = f" ({len(absent)} not deployed in this swarm: {', '.join(absent)})" if absent else ""
    return _out(d.DONE, d.PHASE_COMPLETED,
                f"services: every platform service runs the images of {release.version}{note}",
                replace(rec, item="", finished=True))


def _service_step(
    svc: Service, image: str, rec: PhaseRecord, strategy: Strategy, now: float
) -> PhaseOutcome | None:
    """The next step of one platform service; None when it runs `image` and has converged."""
    ours = rec.item == svc.name and rec.target == image
    fresh = ours and svc.update_started_at >= rec.since - CLOCK_SLACK
    detail = f": {svc.update_message}" if svc.update_message else ""
    if fresh and svc.update_state.startswith("rollback"):
        return _out(d.HALTED, d.SERVICE_ROLLED_BACK,
                    f"swarm rolled back the update of service {svc.name} to {image} "
                    f"({svc.update_state}){detail}", replace(rec, item=""))
    if fresh and svc.update_state == "paused":
        return _out(d.HALTED, d.SERVICE_UPDATE_PAUSED,
                    f"swarm paused the update of service {svc.name} to {image}{detail}",
                    replace(rec, item=""))
    if bare_image(svc.image) == bare_image(image):
        converging = svc.update_state == "updating" or svc.running_tasks < svc.desired_tasks
        if not converging:
            return None
        if ours and now - rec.since > strategy.node_ready_timeout:
            return _out(d.HALTED, d.SERVICE_TIMEOUT,
                        f"service {svc.name} did not converge on {image} within "
                        f"{strategy.node_ready_timeout:g}s ({svc.running_tasks}/"
                        f"{svc.desired_tasks} tasks running)", replace(rec, item=""))
        return _out(d.WAIT, d.SERVICE_UPDATING,
                    f"services: {svc.name} converging on {image} "
                    f"({svc.running_tasks}/{svc.desired_tasks} tasks running)", rec)
    if ours and now - rec.since < REISSUE_AFTER:
        return _out(d.WAIT, d.SERVICE_UPDATING,
                    f"services: update of {svc.name} to {image} requested", rec)
    params = {
        "serviceId": svc.id,
        "service": svc.name,
        "image": image,
        "updateConfig": update_config(),
    }
    return _out(d.PROCEED, d.SERVICE_UPDATING,
                f"services: updating {svc.name} from {svc.image} to {image} "
                "(parallelism 1, rollback on failure)",
                replace(rec, item=svc.name, target=image, since=now),
                Action(d.UPDATE_SERVICE, params=params))
