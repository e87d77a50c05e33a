"""Platform services adapter: the swarm services in snapshot shape and the image update of one
service with the update config the planner chose (controller/phases.py). No decisions here.

A general service spec update needs a raw request (aiodocker only updates the image), so this
goes through `SwarmClient.request` with the full spec and the service's version index, under the
swarm adapter's timeout and error mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from controller.adapters.swarm import parse_time

JSON = dict[str, Any]
NS = 1_000_000_000  # swarm durations are nanoseconds


class ServiceClient(Protocol):
    """What this module calls on the swarm (SwarmClient, or an in-memory swarm of a scale
    simulation)."""

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None) -> Any: ...

    async def tasks(self, filters: Mapping[str, list[str]] | None = None) -> list[JSON]: ...

    async def service(self, service_id: str) -> JSON: ...

    async def update_service(self, service_id: str, version: int,
                             spec: Mapping[str, Any]) -> None: ...


def service_fields(svc: Mapping[str, Any]) -> JSON:
    """One swarm service (listed with `status=true`) as a snapshot `services[]` entry."""
    spec = svc.get("Spec") or {}
    container = ((spec.get("TaskTemplate") or {}).get("ContainerSpec")) or {}
    update = svc.get("UpdateStatus") or {}
    status = svc.get("ServiceStatus") or {}
    return {
        "id": str(svc["ID"]),
        "name": str(spec.get("Name", "")),
        "image": str(container.get("Image", "")),
        "labels": {str(k): str(v) for k, v in (spec.get("Labels") or {}).items()},
        "updateState": str(update.get("State", "")),
        "updateMessage": str(update.get("Message", "")),
        "updateStartedAt": parse_time(update.get("StartedAt")),
        "runningTasks": int(status.get("RunningTasks", 0) or 0),
        "desiredTasks": int(status.get("DesiredTasks", 0) or 0),
        "version": int((svc.get("Version") or {}).get("Index", 0)),
    }


async def observe_services(client: ServiceClient) -> list[JSON]:
    """Every service in snapshot shape, with running/desired task counts. For a service whose
    update swarm rolled back or paused, `updateMessage` also carries the error of its newest
    failed task (why the new image did not start)."""
    found = await client.request("GET", "services", params={"status": "true"})
    out = [service_fields(s) for s in cast(list[JSON], found)]
    for entry in out:
        if entry["updateState"].startswith("rollback") or entry["updateState"] == "paused":
            why = await task_failure(client, entry["id"])
            if why:
                entry["updateMessage"] = "; ".join(m for m in (entry["updateMessage"], why) if m)
    return out


async def task_failure(client: ServiceClient, service_id: str) -> str:
    """`task of IMAGE failed: ERR` for the newest failed or rejected task of the service."""
    tasks = await client.tasks({"service": [service_id]})
    failed = [t for t in tasks if (t.get("Status") or {}).get("State") in ("failed", "rejected")
              and (t.get("Status") or {}).get("Err")]
    if not failed:
        return ""
    newest = max(failed, key=lambda t: parse_time((t.get("Status") or {}).get("Timestamp")))
    status = newest["Status"]
    spec = ((newest.get("Spec") or {}).get("ContainerSpec")) or {}
    return f"a task of {spec.get('Image', '?')} {status['State']}: {status['Err']}"[:300]


def swarm_update_config(config: Mapping[str, Any]) -> JSON:
    """The planner's `updateConfig` (seconds, camelCase) as swarm's UpdateConfig."""
    return {
        "Parallelism": int(config.get("parallelism", 1)),
        "Delay": int(float(config.get("delay", 0.0)) * NS),
        "FailureAction": str(config.get("failureAction", "rollback")),
        "Monitor": int(float(config.get("monitor", 10.0)) * NS),
        "MaxFailureRatio": float(config.get("maxFailureRatio", 0.0)),
        "Order": str(config.get("order", "stop-first")),
    }


async def update_image(
    client: ServiceClient, service_id: str, image: str, config: Mapping[str, Any]
) -> bool:
    """Set the service's image with `config` as its update config (and a matching rollback
    config); False, sending nothing, when the spec already has that image."""
    svc = await client.service(service_id)
    spec = dict(svc["Spec"])
    template = dict(spec.get("TaskTemplate") or {})
    container = dict(template.get("ContainerSpec") or {})
    if container.get("Image") == image:
        return False
    container["Image"] = image
    template["ContainerSpec"] = container
    template["ForceUpdate"] = int(template.get("ForceUpdate", 0) or 0)
    spec["TaskTemplate"] = template
    update = swarm_update_config(config)
    spec["UpdateConfig"] = update
    spec["RollbackConfig"] = {**update, "FailureAction": "pause"}
    await client.update_service(service_id, int(svc["Version"]["Index"]), spec)
    return True
