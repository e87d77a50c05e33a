"""Long-running operations (LROs) as ARM serves them, and the routes the SDK pollers poll.

A write that takes time answers ``202 Accepted`` with two headers:

- ``Azure-AsyncOperation``: ``.../providers/Microsoft.Compute/locations/{loc}/operations/{id}``,
  whose body is ``{"name", "status": "InProgress"|"Succeeded"|"Failed", "startTime",
  "endTime", "error": {"code", "message"}}`` — what azure-core's ARM poller follows first;
- ``Location``: the same URL with ``monitor=true``: 202 while running, then 200 with an empty
  body (the final GET of a POST LRO), or the ARM error of a failed operation.

Another resource provider (e.g. Microsoft.Resources deployments) makes its own registry with
``provider=`` and adds its `routes()` to the server. The work of an operation is a coroutine run
as a task; raising `OperationFailed` ends it Failed
with that Azure error code, any other exception ends it Failed ``InternalOperationError``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testbed.arm.routing import SUBSCRIPTION, ArmRequest, ArmRoute, arm_error, json_response

log = logging.getLogger(__name__)

OPERATION_PATH = (SUBSCRIPTION + "/providers/{provider}/locations/{location}"
                  "/operations/{operationId}")


class OperationFailed(Exception):
    """Ends an LRO Failed with an Azure error `code` (e.g. ``OSProvisioningTimedOut``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Operation:
    """One LRO: what it is, its status and its error."""

    id: str
    name: str
    status: str = "InProgress"
    start_time: str = field(default_factory=_now)
    end_time: str | None = None
    error: dict[str, str] | None = None
    task: asyncio.Task[None] | None = None
    targets: list[str] = field(default_factory=list)  # "scaleSet/instanceId" it works on

    def body(self) -> dict[str, object]:
        """The Azure-AsyncOperation status body."""
        body: dict[str, object] = {"name": self.id, "status": self.status,
                                   "startTime": self.start_time}
        if self.end_time is not None:
            body["endTime"] = self.end_time
        if self.error is not None:
            body["error"] = dict(self.error)
        return body


class Operations:
    """The registry of LROs of one server: starts them, answers their status URLs."""

    def __init__(self, subscription_id: str, location: str, retry_after: int | None = None,
                 provider: str = "Microsoft.Compute") -> None:
        self.provider = provider
        self.subscription_id = subscription_id
        self.location = location
        self.retry_after = retry_after
        self.by_id: dict[str, Operation] = {}

    def start(self, name: str, work: Coroutine[Any, Any, None]) -> Operation:
        """Run `work` as the LRO `name` in the background."""
        operation = Operation(id=str(uuid.uuid4()), name=name)
        self.by_id[operation.id] = operation
        operation.task = asyncio.create_task(self._run(operation, work),
                                             name=f"lro-{name}-{operation.id}")
        return operation

    async def _run(self, operation: Operation, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except OperationFailed as failure:
            operation.error = {"code": failure.code, "message": failure.message}
            operation.status = "Failed"
        except asyncio.CancelledError:
            operation.error = {"code": "OperationCanceled", "message": "Server stopped."}
            operation.status = "Canceled"
            raise
        except Exception as exc:  # a bug or a driver crash: visible to the client, logged here
            log.exception("LRO %s %s crashed", operation.name, operation.id)
            operation.error = {"code": "InternalOperationError", "message": repr(exc)}
            operation.status = "Failed"
        else:
            operation.status = "Succeeded"
        finally:
            operation.end_time = _now()

    def accepted(self, request: web.Request, operation: Operation,
                 headers: dict[str, str] | None = None, body: object = None) -> web.Response:
        """The 202 answer that hands `operation` to the client's poller."""
        status_url = self.status_url(request, operation)
        all_headers = {
            "Azure-AsyncOperation": status_url,
            "Location": status_url + "&monitor=true",
            **(headers or {}),
        }
        if self.retry_after is not None:
            all_headers["Retry-After"] = str(self.retry_after)
        if body is None:
            return web.Response(status=202, headers=all_headers)
        return json_response(body, status=202, headers=all_headers)

    def status_url(self, request: web.Request, operation: Operation) -> str:
        """Absolute URL of the operation's status resource (keeps the request's api-version)."""
        api_version = request.query.get("api-version", "")
        return (f"{request.scheme}://{request.host}/subscriptions/{self.subscription_id}"
                f"/providers/{self.provider}/locations/{self.location}/operations/"
                f"{operation.id}?api-version={api_version}")

    def log(self) -> list[dict[str, object]]:
        """Every operation with its targets (for benchmarks: how long each reimage took)."""
        return [{**op.body(), "operation": op.name, "targets": list(op.targets)}
                for op in self.by_id.values()]

    def routes(self) -> list[ArmRoute]:
        """The status route (both the Azure-AsyncOperation and the Location form)."""
        path = OPERATION_PATH.replace("{provider}", self.provider)
        return [ArmRoute("GET", path, "Operations_Get",
                         f"{self.provider}/locations/operations/read", self.get_status)]

    async def get_status(self, arm: ArmRequest) -> web.StreamResponse:
        """Status body, or for ``monitor=true`` the Location semantics (202 / 200 / error)."""
        operation = self.by_id.get(arm.param("operationId"))
        if operation is None:
            return arm_error(404, "NotFound", f"Operation {arm.param('operationId')} not found.")
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        if arm.query.get("monitor", "").lower() != "true":
            if operation.status != "InProgress":
                headers = {}
            return json_response(operation.body(), headers=headers)
        if operation.status == "InProgress":
            return web.Response(status=202, headers={"Location": str(arm.request.url), **headers})
        if operation.status == "Succeeded":
            return web.Response(status=200)
        error = operation.error or {"code": "Failed", "message": "Operation failed."}
        return arm_error(409 if operation.status == "Canceled" else 500, error["code"],
                         error["message"])

    async def stop(self) -> None:
        """Cancel every running operation and wait for the cancellations."""
        tasks = [op.task for op in self.by_id.values() if op.task and not op.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_all(self) -> None:
        """Wait until no operation is running (tests and orderly shutdown)."""
        while True:
            tasks = [op.task for op in self.by_id.values() if op.task and not op.task.done()]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)
