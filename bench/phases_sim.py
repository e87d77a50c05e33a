"""The resources and services phases in the scale simulation (never instead of the e2e tests).

`ResourceGroup` is an in-memory resource group with the three calls the runtime makes on
`controller.adapters.resources.ResourceGroupClient` (`deployments`, `check_template`, `deploy`),
counted as ARM reads and writes. It starts with the source release's deployment (Succeeded), as
a Docker for Azure resource group does; a deployment the controller starts is `Running` and
`Succeeded` `deploy_s` virtual seconds later.

`PlatformServices` are the release's platform services (catalog `systemServices`, labelled
`com.docker.azure.system=true` / `com.docker.azure.system.name`) in the simulated swarm: an image
update is `updating` and `completed` `service_s` later (swarm replacing the tasks one at a time,
each watched for the planner's monitor window). `SwarmView` lists them next to the sample
service and sends their updates here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller import arm_template
from controller.catalog import Release

JSON = dict[str, Any]
SYSTEM = "com.docker.azure.system"
SYSTEM_NAME = "com.docker.azure.system.name"


@dataclass
class PhaseTimings:
    deploy_s: float = 120.0  # an incremental deployment of the release's template
    service_s: float = 60.0  # one platform service's rolling update, until converged


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ResourceGroup:
    """In-memory deployments of the resource group (see the module docstring)."""

    now: Callable[[], float]  # epoch seconds (virtual)
    deploy_s: float
    entries: dict[str, JSON] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0
    log: list[tuple[float, str]] = field(default_factory=list)

    @classmethod
    def installed(cls, release: Release, now: Callable[[], float], deploy_s: float,
                  at: float) -> ResourceGroup:
        """A resource group whose last deployment is `release`'s own (Succeeded at `at`)."""
        rg = cls(now, deploy_s)
        if release.template is not None:
            values, _ = arm_template.derive_parameters(release.template, None)
            name = arm_template.deployment_name(release.version)
            rg.entries[name] = {"name": name, "provisioningState": "Succeeded",
                                    "timestamp": at, "parameters": values}
        return rg

    async def deployments(self) -> list[JSON]:
        self.reads += 1
        return [dict(x, parameters=dict(x["parameters"])) for x in self.entries.values()]

    async def check_template(self, name: str, template: Mapping[str, Any],
                             parameters: Mapping[str, Any], digest: str,
                             mode: str = "Incremental") -> JSON:
        self.reads += 2  # validate + what-if (each an LRO: its first answer counted only)
        return {"deployment": name, "templateDigest": digest, "valid": True, "changes": []}

    async def deploy(self, name: str, template: Mapping[str, Any],
                     parameters: Mapping[str, Any], mode: str = "Incremental") -> None:
        self.writes += 1
        current = self.entries.get(name)
        if current is not None and current["provisioningState"] == "Running":
            return
        entry = {"name": name, "provisioningState": "Running", "timestamp": self.now(),
                 "parameters": dict(parameters)}
        self.entries[name] = entry
        self.log.append((self.now(), name))
        asyncio.get_running_loop().create_task(self._finish(entry))

    async def _finish(self, entry: JSON) -> None:
        await asyncio.sleep(self.deploy_s)
        entry.update(provisioningState="Succeeded", timestamp=self.now())

    async def close(self) -> None:
        return None


@dataclass
class PlatformServices:
    """The release's platform services in the simulated swarm (see the module docstring)."""

    now: Callable[[], float]  # epoch seconds (virtual)
    service_s: float
    publish: Callable[[str, str, str], None]
    services: dict[str, JSON] = field(default_factory=dict)
    updates: list[tuple[float, str]] = field(default_factory=list)

    @classmethod
    def of(cls, release: Release, now: Callable[[], float], service_s: float,
           publish: Callable[[str, str, str], None], created: float) -> PlatformServices:
        ps = cls(now, service_s, publish)
        for n, (name, image) in enumerate(sorted(release.system_services.items()), 1):
            sid = f"platform{n:021d}"
            ps.services[sid] = {
                "ID": sid, "Version": {"Index": 1}, "CreatedAt": _stamp(created),
                "UpdatedAt": _stamp(created),
                "Spec": {"Name": f"docker4x-{name}", "Labels": {SYSTEM: "true",
                                                                SYSTEM_NAME: name},
                         "TaskTemplate": {"ContainerSpec": {"Image": image}},
                         "Mode": {"Replicated": {"Replicas": 1}}},
                "ServiceStatus": {"RunningTasks": 1, "DesiredTasks": 1},
            }
        return ps

    def listed(self) -> list[JSON]:
        return [_deep(s) for s in self.services.values()]

    def update(self, service_id: str, version: int, spec: Mapping[str, Any]) -> None:
        svc = self.services[service_id]
        if version != svc["Version"]["Index"]:
            raise ValueError(f"update out of sequence: {version} != {svc['Version']['Index']}")
        svc["Spec"] = _deep(dict(spec))
        svc["Version"]["Index"] += 1
        svc["UpdateStatus"] = {"State": "updating", "StartedAt": _stamp(self.now()),
                               "Message": "update in progress"}
        svc["ServiceStatus"] = {"RunningTasks": 0, "DesiredTasks": 1}
        self.updates.append((self.now(), str(spec.get("Name", service_id))))
        self.publish("service", service_id, str(spec.get("Name", "")))
        asyncio.get_running_loop().create_task(self._converge(svc))

    async def _converge(self, svc: JSON) -> None:
        await asyncio.sleep(self.service_s)
        svc["UpdateStatus"] = {**svc["UpdateStatus"], "State": "completed",
                               "CompletedAt": _stamp(self.now()), "Message": "update completed"}
        svc["ServiceStatus"] = {"RunningTasks": 1, "DesiredTasks": 1}
        self.publish("service", svc["ID"], svc["Spec"]["Name"])


def _deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep(v) for v in value]
    return value
