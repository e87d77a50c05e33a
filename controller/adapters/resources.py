"""Resource-group adapter: the ARM deployments of the swarm's resource group through
`azure.mgmt.resource.deployments.aio` (deployments left azure-mgmt-resource in its version 24).

No decisions here. Same conventions as the compute adapter (controller/adapters/azure.py): the
credential, ARM endpoint, polling interval, retry policy and per-call timeout are the caller's,
and errors become `AzureTemporary` / `AzurePermanent` through the same `translate`. Reads are in
snapshot shape (`deployments[]`, `templateCheck`, docs/architecture.md "Phases").
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError
from azure.mgmt.resource.deployments.aio import DeploymentsMgmtClient
from azure.mgmt.resource.deployments.models import Deployment, DeploymentWhatIf

from controller.adapters.arm import ArmBudget, ArmPacing, ArmTransport, tls_context
from controller.adapters.azure import DEFAULT_ARM_ENDPOINT, AzureFailure, guarded, translate

JSON = dict[str, Any]
T = TypeVar("T")
# ARM's code for a template it refuses at validation (400).
INVALID_CODES = ("InvalidTemplate", "InvalidTemplateDeployment", "DeploymentFailed")
# The template check (validate, what-if) is polled at most this far apart: it blocks the pass
# that starts a rollout, and ARM answers it in seconds (a Retry-After it sends still wins).
CHECK_POLL_S = 1.0
FINISHED = ("Succeeded", "Failed", "Canceled")  # a deployment in another state is still running


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _text(value: Any) -> str:
    """An SDK enum member's value (str() of a str-Enum is `Class.MEMBER`), or the string."""
    return str(getattr(value, "value", value) or "")


def deployment_fields(dep: Any) -> JSON:
    """One SDK DeploymentExtended as a snapshot `deployments[]` entry."""
    props = dep.properties
    params = {}
    for name, entry in ((getattr(props, "parameters", None) or {}).items()):
        if isinstance(entry, Mapping) and "value" in entry:  # secure values are not returned
            params[str(name)] = entry["value"]
    out: JSON = {
        "name": str(dep.name),
        "provisioningState": _text(getattr(props, "provisioning_state", None)) or "Unknown",
        "timestamp": _epoch(getattr(props, "timestamp", None)),
        "parameters": params,
    }
    error = getattr(props, "error", None)
    if error is not None:
        out["error"] = {"code": str(error.code or ""), "message": str(error.message or "")}
    return out


def _body(template: Mapping[str, Any], parameters: Mapping[str, Any], mode: str) -> JSON:
    return {"properties": {"template": dict(template), "mode": mode,
                           "parameters": {k: {"value": v} for k, v in parameters.items()}}}


class ResourceGroupClient:
    """The controller's view of, and hands on, the resource group's deployments."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        *,
        credential: Any,
        base_url: str = DEFAULT_ARM_ENDPOINT,
        polling_interval: float = 15.0,
        retry_total: int = 3,
        timeout: float = 60.0,
        connection_verify: str | None = None,
        on_call: Callable[[str, bool], None] | None = None,
        observe_cache: float = 0.0,
        budget: ArmBudget | None = None,
    ) -> None:
        # deployments() keeps the listing up to `observe_cache` seconds (0: no cache); see there.
        self.observe_cache = observe_cache
        self._listing: list[JSON] | None = None
        self._listed_at = 0.0
        self._busy_since: float | None = None
        self.resource_group = resource_group
        self.check_polling = min(polling_interval, CHECK_POLL_S)
        self.timeout = timeout
        self._on_call = on_call
        # One TLS context for every request (arm.py: azure-core would make one per request).
        self._client = DeploymentsMgmtClient(
            credential,
            subscription_id,
            base_url=base_url.rstrip("/"),
            polling_interval=polling_interval,
            retry_total=retry_total,
            transport=ArmTransport(tls_context(connection_verify)),
            # Paced under ARM's throttling, in the budget shared with the compute client.
            per_retry_policies=[ArmPacing(budget or ArmBudget())],
        )

    async def close(self) -> None:
        """Close the HTTP session (the credential belongs to the caller)."""
        await self._client.close()

    async def __aenter__(self) -> ResourceGroupClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _guard(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await guarded(operation, call, self.timeout, self._on_call)

    async def deployments(self) -> list[JSON]:
        """Every deployment of the resource group, in snapshot shape.

        With `observe_cache`, the listing is re-read only when it is older than that, after a
        `deploy` by this client, and while a deployment is not finished (Accepted, Running, …)
        after a back-off of a quarter of the time it has been so (2 s to 60 s) — so every
        reconcile pass of a long rollout does not cost an ARM read for a resource group that
        changes only when the controller deploys.
        """
        now = asyncio.get_running_loop().time()
        if self._listing is not None and self.observe_cache > 0 \
                and now - self._listed_at <= self.observe_cache:
            if self._busy_since is None:
                return [dict(x) for x in self._listing]
            wait = min(60.0, max(2.0, (now - self._busy_since) / 4))
            if now - self._listed_at < wait:
                return [dict(x) for x in self._listing]

        async def listing() -> list[Any]:
            pages = self._client.deployments.list_by_resource_group(self.resource_group)
            return [x async for x in pages]

        found = [deployment_fields(x)
                 for x in await self._guard("Deployments_ListByResourceGroup", listing)]
        busy = any(x["provisioningState"] not in FINISHED for x in found)
        self._busy_since = (self._busy_since or now) if busy else None
        self._listing, self._listed_at = found, now
        return [dict(x) for x in found]

    def invalidate(self) -> None:
        """List the deployments again at the next `deployments()`."""
        self._listing = None

    async def check_template(
        self,
        name: str,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        digest: str,
        mode: str = "Incremental",
    ) -> JSON:
        """ARM's validation of deploying `template` as `name`, then its what-if: a snapshot
        `templateCheck`. A template ARM refuses gives `valid: false` with ARM's code and message
        (not an exception); throttling, outages and the like raise as usual."""
        body = Deployment(_body(template, parameters, mode))
        out: JSON = {"deployment": name, "templateDigest": digest, "valid": True, "changes": []}

        async def validate() -> Any:
            poller = await self._client.deployments.begin_validate(
                self.resource_group, name, body, polling_interval=self.check_polling)
            return await poller.result()

        try:
            result = await self._guard("Deployments_Validate", validate)
        except AzureFailure as failure:
            if failure.status == 400 or failure.code in INVALID_CODES:
                out.update(valid=False, error={"code": failure.code, "message": failure.message})
                return out
            raise
        if getattr(result, "error", None) is not None:
            out.update(valid=False, error={"code": str(result.error.code or ""),
                                           "message": str(result.error.message or "")})
            return out

        async def what_if() -> Any:
            poller = await self._client.deployments.begin_what_if(
                self.resource_group, name, DeploymentWhatIf(_body(template, parameters, mode)),
                polling_interval=self.check_polling)
            return await poller.result()

        changes = await self._guard("Deployments_WhatIf", what_if)
        out["changes"] = [
            {"resourceId": str(c.resource_id or ""), "changeType": _text(c.change_type)}
            for c in (getattr(changes.properties, "changes", None) or [])
        ]
        return out

    async def deploy(
        self,
        name: str,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        mode: str = "Incremental",
    ) -> None:
        """Start the deployment `name` (returns once ARM accepted it; the planner follows its
        state through `deployments()`). A deployment of that name still running is left alone."""
        body = Deployment(_body(template, parameters, mode))
        try:
            await self._guard(
                "Deployments_CreateOrUpdate",
                lambda: self._client.deployments.begin_create_or_update(
                    self.resource_group, name, body, polling=False),
            )
        except AzureFailure as failure:
            if failure.code == "DeploymentActive":
                return
            raise
        except HttpResponseError as err:  # pragma: no cover - _guard translates every error
            raise translate("Deployments_CreateOrUpdate", err) from err
        finally:
            self.invalidate()
