"""Route table of the local ARM endpoint: case-insensitive path templates → named operations.

ARM matches paths case-insensitively (the SDK sends ``virtualMachines``, the docs often say
``virtualmachines``), which aiohttp's router does not, so the server dispatches through this table.
Each route names its operation (for the request log and fault injection), says whether it is a
read or a write (for the throttling buckets) and which Azure RBAC action it needs. Resource
providers live in their own modules and contribute routes through ``ArmServer.add_routes`` —
``compute.py`` today, Microsoft.Resources deployments later.

Also here: ARM's error body ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[["ArmRequest"], Awaitable[web.StreamResponse]]

SUBSCRIPTION = "/subscriptions/{subscriptionId}"
RESOURCE_GROUP = SUBSCRIPTION + "/resourceGroups/{resourceGroupName}"


@dataclass
class ArmRequest:
    """What a route handler gets: the aiohttp request, the path parameters and the JSON body."""

    request: web.Request
    params: dict[str, str]
    operation: str
    body: object = None
    query: Mapping[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str:
        """The path parameter `name` (as sent by the client, original case)."""
        return self.params[name]


@dataclass(frozen=True)
class ArmRoute:
    """One ARM operation: HTTP method, path template with ``{name}`` placeholders, and metadata.

    `operation` is a stable name such as ``VirtualMachineScaleSets_Get`` (the REST spec's
    operationId). `action` is the Azure RBAC action the caller's role must allow.
    """

    method: str
    template: str
    operation: str
    action: str
    handler: Handler
    needs_api_version: bool = True

    @property
    def is_write(self) -> bool:
        """ARM counts every non-GET/HEAD request against the write bucket."""
        return self.method.upper() not in ("GET", "HEAD")

    def compile(self) -> re.Pattern[str]:
        """The template as an anchored case-insensitive regex with named groups."""
        pattern = re.sub(
            r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(self.template)
        )
        return re.compile(f"^{pattern}/?$", re.IGNORECASE)


class Router:
    """Dispatch table: finds the route for a method and path; 404/405 otherwise."""

    def __init__(self) -> None:
        self._routes: list[tuple[ArmRoute, re.Pattern[str]]] = []

    def add(self, routes: Iterable[ArmRoute]) -> None:
        """Register `routes`; later modules may add more at any time before requests arrive."""
        for route in routes:
            self._routes.append((route, route.compile()))

    def match(self, method: str, path: str) -> tuple[ArmRoute, dict[str, str]] | None:
        """The route matching `method` and `path` with its parameters, or None."""
        for route, pattern in self._routes:
            if route.method.upper() != method.upper():
                continue
            found = pattern.match(path)
            if found:
                return route, found.groupdict()
        return None

    def path_known(self, path: str) -> bool:
        """True when some route matches `path` with another method (→ 405, not 404)."""
        return any(pattern.match(path) for _, pattern in self._routes)

    @property
    def routes(self) -> list[ArmRoute]:
        """Every registered route, in registration order."""
        return [route for route, _ in self._routes]


def arm_error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An ARM error response: ``{"error": {"code": ..., "message": ...}}`` with `status`."""
    return web.Response(
        status=status,
        text=json.dumps({"error": {"code": code, "message": message}}),
        content_type="application/json",
        headers=dict(headers or {}),
    )


class ArmError(Exception):
    """Raised by handlers to answer with an ARM error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        """The error as an HTTP response."""
        return arm_error(self.status, self.code, self.message)


def json_response(body: object, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> web.Response:
    """A JSON response with ARM's content type."""
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=dict(headers or {}),
    )
