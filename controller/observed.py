"""What the runtime observed for the resources and services phases (pure values, no I/O).

Three optional parts of the snapshot (docs/architecture.md, "Phases"):

- `deployments`: the resource group's ARM deployments (name, provisioning state, time, parameter
  values, error);
- `templateCheck`: ARM's validation (and what-if) of the target release's template with the
  derived parameters, for the deployment the planner would start;
- `services`: the swarm services with their labels, image, update status and task counts.

`None` means "not observed" (an older snapshot file); `()` means observed and empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from controller import fields as jf

# Swarm's UpdateStatus.State values ("" = the service was never updated).
UPDATE_STATES = (
    "",
    "updating",
    "paused",
    "completed",
    "rollback_started",
    "rollback_paused",
    "rollback_completed",
)
# ARM provisioning states of a deployment that will not change any more.
DEPLOYMENT_TERMINAL = ("Succeeded", "Failed", "Canceled")


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Deployment:
    """One ARM deployment of the resource group (`parameters`: name → value)."""

    name: str
    provisioning_state: str
    timestamp: float = 0.0
    parameters: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    error_code: str = ""
    error_message: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "provisioningState": self.provisioning_state,
            "timestamp": self.timestamp,
            "parameters": dict(self.parameters),
        }
        if self.error_code or self.error_message:
            d["error"] = {"code": self.error_code, "message": self.error_message}
        return d

    @classmethod
    def from_dict(cls, value: Any, where: str) -> Deployment:
        o = jf.obj(value, where)
        params = jf.get(o, "parameters", where, {})
        if not isinstance(params, Mapping):
            raise ValueError(f"{where}.parameters: expected an object, got {params!r}"[:200])
        error = jf.obj(jf.get(o, "error", where, {}), f"{where}.error")
        return cls(
            name=jf.string(o, "name", where),
            provisioning_state=jf.string(o, "provisioningState", where),
            timestamp=jf.number(o, "timestamp", where, default=0.0),
            parameters=MappingProxyType({str(k): v for k, v in params.items()}),
            error_code=jf.string(error, "code", f"{where}.error", default=""),
            error_message=jf.string(error, "message", f"{where}.error", default=""),
        )


@dataclass(frozen=True)
class Change:
    """One line of a what-if: a resource and what the deployment would do to it."""

    resource_id: str
    change_type: str  # Create | Delete | Modify | NoChange | Ignore | Deploy | Unsupported


@dataclass(frozen=True)
class TemplateCheck:
    """ARM's verdict on the deployment `deployment` of the template `template_digest`."""

    deployment: str
    template_digest: str
    valid: bool
    code: str = ""
    message: str = ""
    changes: tuple[Change, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "deployment": self.deployment,
            "templateDigest": self.template_digest,
            "valid": self.valid,
            "changes": [{"resourceId": c.resource_id, "changeType": c.change_type}
                        for c in self.changes],
        }
        if self.code or self.message:
            d["error"] = {"code": self.code, "message": self.message}
        return d

    @classmethod
    def from_dict(cls, value: Any, where: str) -> TemplateCheck:
        o = jf.obj(value, where)
        error = jf.obj(jf.get(o, "error", where, {}), f"{where}.error")
        changes = []
        for i, c in enumerate(jf.array(o, "changes", where)):
            at = f"{where}.changes[{i}]"
            co = jf.obj(c, at)
            changes.append(
                Change(jf.string(co, "resourceId", at), jf.string(co, "changeType", at))
            )
        return cls(
            deployment=jf.string(o, "deployment", where),
            template_digest=jf.string(o, "templateDigest", where),
            valid=jf.boolean(o, "valid", where),
            code=jf.string(error, "code", f"{where}.error", default=""),
            message=jf.string(error, "message", f"{where}.error", default=""),
            changes=tuple(changes),
        )


@dataclass(frozen=True)
class Service:
    """One swarm service as the services phase needs it.

    `image` is the spec's image (a `@sha256:` digest suffix is ignored when comparing);
    `update_started_at` is UpdateStatus.StartedAt (Unix time, 0 when never updated).
    """

    id: str
    name: str
    image: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    update_state: str = ""
    update_message: str = ""
    update_started_at: float = 0.0
    running_tasks: int = 0
    desired_tasks: int = 0
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "labels": dict(self.labels),
            "updateState": self.update_state,
            "updateMessage": self.update_message,
            "updateStartedAt": self.update_started_at,
            "runningTasks": self.running_tasks,
            "desiredTasks": self.desired_tasks,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, value: Any, where: str) -> Service:
        o = jf.obj(value, where)
        return cls(
            id=jf.string(o, "id", where),
            name=jf.string(o, "name", where),
            image=jf.string(o, "image", where),
            labels=jf.labels(o, "labels", where),
            update_state=jf.string(o, "updateState", where, default="", choices=UPDATE_STATES),
            update_message=jf.string(o, "updateMessage", where, default=""),
            update_started_at=jf.number(o, "updateStartedAt", where, default=0.0),
            running_tasks=jf.integer(o, "runningTasks", where, default=0),
            desired_tasks=jf.integer(o, "desiredTasks", where, default=0),
            version=jf.integer(o, "version", where, default=0),
        )


@dataclass(frozen=True)
class Observed:
    """The phases' part of one snapshot."""

    deployments: tuple[Deployment, ...] | None = None
    template_check: TemplateCheck | None = None
    services: tuple[Service, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.deployments is not None:
            d["deployments"] = [x.to_dict() for x in self.deployments]
        if self.template_check is not None:
            d["templateCheck"] = self.template_check.to_dict()
        if self.services is not None:
            d["services"] = [s.to_dict() for s in self.services]
        return d

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Observed:
        """The optional `deployments`, `templateCheck` and `services` keys of a snapshot."""
        deployments = services = None
        if obj.get("deployments") is not None:
            deployments = tuple(
                Deployment.from_dict(x, f"deployments[{i}]")
                for i, x in enumerate(jf.array(obj, "deployments", ""))
            )
        if obj.get("services") is not None:
            services = tuple(
                Service.from_dict(x, f"services[{i}]")
                for i, x in enumerate(jf.array(obj, "services", ""))
            )
        check = None
        if obj.get("templateCheck") is not None:
            check = TemplateCheck.from_dict(obj["templateCheck"], "templateCheck")
        return cls(deployments, check, services)
