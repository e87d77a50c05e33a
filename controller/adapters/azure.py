"""Azure adapter: the scale sets of the swarm through `azure.mgmt.compute.aio`.

No decisions here. Credentials come from `azure.identity.aio.DefaultAzureCredential` (managed
identity in production, environment credentials in the testbed); the ARM endpoint, the LRO
polling interval and the retry policy (Retry-After is honoured by azure-core) are configurable.
Errors become `AzureTemporary` (throttling, 5xx, network, token endpoint outages) or
`AzurePermanent` (403 AuthorizationFailed, 404, a long-running operation that ended Failed).
Tokens and secrets are never logged or put into messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.polling import AsyncLROPoller
from azure.identity.aio import DefaultAzureCredential
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachineScaleSetUpdate

from controller.adapters.arm import ArmBudget, ArmPacing, ArmTransport, tls_context

JSON = dict[str, Any]
T = TypeVar("T")

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
IMAGE_KEYS = ("publisher", "offer", "sku", "version")


class AzureFailure(Exception):
    """An ARM request failed. `code` is ARM's error code (or the exception type)."""

    def __init__(self, operation: str, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message
        self.status = status


class AzureTemporary(AzureFailure):
    """Worth retrying later: throttling, server errors, the network, the token endpoint."""


class AzurePermanent(AzureFailure):
    """Retrying will not help: no permission, no such resource, an operation that Failed."""


# What an identity endpoint says when the credentials themselves are wrong (not an outage).
_AUTH_REFUSALS = ("invalid_client", "unauthorized_client", "invalid_grant", "AADSTS700016",
                  "AADSTS7000215", "AADSTS90002")


def translate(operation: str, err: Exception) -> AzureFailure:
    """Map an azure-core exception onto temporary / permanent."""
    if isinstance(err, ClientAuthenticationError):
        status = int(err.status_code or 0)
        refused = status in (400, 401) or any(m in str(err.message) for m in _AUTH_REFUSALS)
        kind = AzurePermanent if refused else AzureTemporary
        return kind(operation, "AuthenticationFailed", _first_line(err.message), status)
    if isinstance(err, HttpResponseError):
        status = int(err.status_code or 0)
        code = (err.error.code if err.error is not None else None) or f"HTTP{status}"
        message = _first_line(err.error.message if err.error is not None else err.message)
        if status == 0 or status == 429 or status >= 500 or status == 408:
            # status 0: a long-running operation that ended Failed carries no HTTP status
            if status == 0:
                return AzurePermanent(operation, code, message, status)
            return AzureTemporary(operation, code, message, status)
        return AzurePermanent(operation, code, message, status)
    if isinstance(err, ServiceRequestError | ServiceResponseError | OSError | TimeoutError):
        return AzureTemporary(operation, type(err).__name__, _first_line(str(err)))
    return AzurePermanent(operation, type(err).__name__, _first_line(str(err)))


async def guarded(
    operation: str,
    call: Callable[[], Awaitable[T]],
    limit: float,
    on_call: Callable[[str, bool], None] | None,
) -> T:
    """Run one ARM call within `limit` seconds; errors become AzureFailure, and `on_call`
    (metrics) hears of every call and whether it succeeded."""
    ok = False
    try:
        async with asyncio.timeout(limit):
            result = await call()
        ok = True
        return result
    except AzureFailure:
        raise
    except (AzureError, OSError, TimeoutError) as err:
        raise translate(operation, err) from err
    finally:
        if on_call is not None:
            on_call(operation, ok)


def _first_line(text: str | None) -> str:
    line = (text or "").strip().splitlines()
    return line[0][:300] if line else ""


def image_dict(reference: Any) -> JSON | None:
    """An SDK ImageReference as {publisher, offer, sku, version}; None if absent."""
    if reference is None:
        return None
    out = {k: getattr(reference, k, None) for k in IMAGE_KEYS}
    if not all(out.values()):
        return None
    return {k: str(v) for k, v in out.items()}


POWER_STATES = ("running", "stopped", "deallocated", "starting", "stopping")
PROVISIONING_STATES = ("Succeeded", "Updating", "Creating", "Deleting", "Failed")


def _power_state(instance_view: Any) -> str:
    for status in getattr(instance_view, "statuses", None) or []:
        code = str(getattr(status, "code", "") or "")
        if code.startswith("PowerState/"):
            state = code.split("/", 1)[1]
            return state if state in POWER_STATES else "unknown"
    return "unknown"


def _provisioning_state(value: object) -> str:
    """ARM's provisioningState, folded onto the snapshot's five values (Canceled → Failed)."""
    text = str(value or "Succeeded")
    for known in PROVISIONING_STATES:
        if text.lower() == known.lower():
            return known
    return "Failed" if text.lower() == "canceled" else "Updating"


def instance_fields(vm: Any) -> JSON:
    """One scale-set VM (listed with instanceView) as a snapshot `instances[]` entry."""
    props = vm.properties
    view = getattr(props, "instance_view", None)
    computer = getattr(getattr(props, "os_profile", None), "computer_name", None) or getattr(
        view, "computer_name", ""
    )
    storage = getattr(props, "storage_profile", None)
    out: JSON = {
        "instanceId": str(vm.instance_id),
        "computerName": str(computer or ""),
        "latestModelApplied": bool(getattr(props, "latest_model_applied", True)),
        "provisioningState": _provisioning_state(getattr(props, "provisioning_state", None)),
        "powerState": _power_state(view),
    }
    image = image_dict(getattr(storage, "image_reference", None))
    if image is not None:
        out["image"] = image
    return out


@dataclass
class Reimage:
    """A manual upgrade in flight: `wait()` returns when ARM says it is done, or raises."""

    scale_set: str
    instance_ids: tuple[str, ...]
    poller: AsyncLROPoller[Any]
    client: ScaleSetClient

    async def wait(self) -> None:
        try:
            await self.client._guard("VirtualMachineScaleSets_UpdateInstances/result",
                                     self.poller.result)
        finally:
            self.client.invalidate(self.scale_set, self.instance_ids)


class ScaleSetClient:
    """The controller's view of, and hands on, the swarm's scale sets."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        *,
        base_url: str = DEFAULT_ARM_ENDPOINT,
        polling_interval: float = 15.0,
        retry_total: int = 3,
        timeout: float = 60.0,
        connection_verify: str | None = None,
        credential: Any = None,
        on_call: Callable[[str, bool], None] | None = None,
        observe_cache: float = 0.0,
        budget: ArmBudget | None = None,
    ) -> None:
        self.subscription_id = subscription_id
        # ARM's throttling budget, shared with the controller's other ARM clients (arm.py).
        self.budget = budget or ArmBudget()
        # observe() keeps each scale set for up to `observe_cache` seconds (0: no cache), and
        # re-reads single instances instead: the ones this client wrote to, and busy ones
        # (Updating, ...) with a back-off — see `observe`.
        self.observe_cache = observe_cache
        self._cache: dict[str, _Cached] = {}
        self.resource_group = resource_group
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._on_call = on_call
        extra: dict[str, Any] = {}
        if connection_verify:
            extra["connection_verify"] = connection_verify
        self._credential = credential or DefaultAzureCredential(
            exclude_cli_credential=True,
            exclude_powershell_credential=True,
            exclude_developer_cli_credential=True,
            exclude_visual_studio_code_credential=True,
            exclude_shared_token_cache_credential=True,
            exclude_interactive_browser_credential=True,
            **extra,
        )
        self._client = ComputeManagementClient(
            self._credential,
            subscription_id,
            base_url=self.base_url,
            polling_interval=polling_interval,
            retry_total=retry_total,
            # One TLS context for every request (arm.py: azure-core would make one per request).
            transport=ArmTransport(tls_context(connection_verify)),
            # Paced under ARM's throttling, in the budget shared with the deployments client.
            per_retry_policies=[ArmPacing(self.budget)],
        )

    @property
    def credential(self) -> Any:
        """The credential, for other ARM clients of the controller (resource group)."""
        return self._credential

    async def close(self) -> None:
        await self._client.close()
        close = getattr(self._credential, "close", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> ScaleSetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _guard(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await guarded(operation, call, self.timeout, self._on_call)

    def portal_url(self, scale_set: str) -> str:
        """The Azure portal blade of a scale set's instances (the seed's format)."""
        return (
            f"https://portal.azure.com/#resource/subscriptions/{self.subscription_id}"
            f"/resourceGroups/{self.resource_group}/providers/Microsoft.Compute"
            f"/virtualMachineScaleSets/{scale_set}/instances"
        )

    async def observe(self, roles: Mapping[str, str]) -> list[JSON]:
        """The scale sets named in `roles` (name → manager|worker) in snapshot shape.

        With `observe_cache`, a scale set is listed in full (1 GET + the list pages) only when
        it was never read, after a model change by this client, or `observe_cache` seconds
        after its last listing; in between, single instances are re-read (1 GET each): those
        this client sent an operation to (on acceptance and when it ended), and busy ones
        (provisioningState not Succeeded/Failed) after a back-off of a quarter of the time
        they have been busy (2 s to 60 s). So waiting for a reimage costs a few reads, not a
        listing of every instance on every pass.
        """
        return list(await asyncio.gather(*(self._observe(n, r) for n, r in roles.items())))

    async def instance(self, name: str, instance_id: str) -> JSON:
        """One instance (with its instance view) in snapshot shape."""
        rg = self.resource_group
        vm = await self._guard(
            "VirtualMachineScaleSetVMs_Get",
            lambda: self._client.virtual_machine_scale_set_vms.get(
                rg, name, instance_id, expand="instanceView"),
        )
        return instance_fields(vm)

    def invalidate(self, scale_set: str, instance_ids: tuple[str, ...] | None = None) -> None:
        """Re-read these instances (None: the whole scale set) at the next `observe`."""
        cached = self._cache.get(scale_set)
        if cached is None:
            return
        if instance_ids is None:
            del self._cache[scale_set]
        else:
            cached.stale.update(instance_ids)

    async def _observe(self, name: str, role: str) -> JSON:
        now = asyncio.get_running_loop().time()
        cached = self._cache.get(name)
        if self.observe_cache <= 0 or cached is None or now - cached.at > self.observe_cache:
            fresh = await self.scale_set(name, role)
            if self.observe_cache > 0:
                self._cache[name] = _Cached(fresh, now)
            return fresh
        instances = cached.data["instances"]
        due = set(cached.stale)
        for inst in instances:
            iid = inst["instanceId"]
            if inst["provisioningState"] in ("Succeeded", "Failed"):
                cached.busy_since.pop(iid, None)
                continue
            since = cached.busy_since.setdefault(iid, now)
            wait = min(60.0, max(2.0, (now - since) / 4))
            if now - cached.read_at.get(iid, cached.at) >= wait:
                due.add(iid)
        for iid in sorted(due):
            fields = await self.instance(name, iid)
            cached.data["instances"] = [fields if i["instanceId"] == iid else i
                                        for i in cached.data["instances"]]
            cached.read_at[iid] = now
            cached.stale.discard(iid)
        return {**cached.data, "instances": [dict(i) for i in cached.data["instances"]]}

    async def scale_set(self, name: str, role: str) -> JSON:
        rg = self.resource_group
        ss = await self._guard(
            "VirtualMachineScaleSets_Get",
            lambda: self._client.virtual_machine_scale_sets.get(rg, name),
        )

        async def listing() -> list[Any]:
            pages = self._client.virtual_machine_scale_set_vms.list(rg, name, expand="instanceView")
            return [vm async for vm in pages]

        vms = await self._guard("VirtualMachineScaleSetVMs_List", listing)
        profile = getattr(ss.properties, "virtual_machine_profile", None)
        storage = getattr(profile, "storage_profile", None)
        out: JSON = {
            "name": name,
            "role": role,
            "tags": dict(ss.tags or {}),
            "instances": [instance_fields(vm) for vm in vms],
        }
        model = image_dict(getattr(storage, "image_reference", None))
        if model is not None:
            out["model"] = model
        return out

    async def set_model_image(self, name: str, image: Mapping[str, str]) -> bool:
        """PATCH the scale set's model image; False (nothing sent) if it already is `image`."""
        rg = self.resource_group
        ss = await self._guard(
            "VirtualMachineScaleSets_Get",
            lambda: self._client.virtual_machine_scale_sets.get(rg, name),
        )
        profile = getattr(ss.properties, "virtual_machine_profile", None)
        current = image_dict(getattr(getattr(profile, "storage_profile", None),
                                     "image_reference", None))
        wanted = {k: str(image[k]) for k in IMAGE_KEYS}
        if current == wanted:
            return False
        body = VirtualMachineScaleSetUpdate({"properties": {"virtualMachineProfile": {
            "storageProfile": {"imageReference": wanted}}}})

        async def update() -> Any:
            poller = await self._client.virtual_machine_scale_sets.begin_update(rg, name, body)
            return await poller.result()

        await self._guard("VirtualMachineScaleSets_Update", update)
        self.invalidate(name)
        return True

    async def start_reimage(self, name: str, instance_ids: list[str]) -> Reimage:
        """Send the manual upgrade of `instance_ids`; returns once ARM accepted the request."""
        rg = self.resource_group
        poller = await self._guard(
            "VirtualMachineScaleSets_UpdateInstances",
            lambda: self._client.virtual_machine_scale_sets.begin_update_instances(
                rg, name, {"instanceIds": list(instance_ids)}
            ),
        )
        self.invalidate(name, tuple(instance_ids))
        return Reimage(name, tuple(instance_ids), poller, self)


@dataclass
class _Cached:
    """One scale set as last observed, and which instances to re-read."""

    data: JSON
    at: float
    stale: set[str] = field(default_factory=set)
    busy_since: dict[str, float] = field(default_factory=dict)
    read_at: dict[str, float] = field(default_factory=dict)

