"""Swarm adapter: every Docker API call the controller makes, each under its own timeout.

No decisions here. Errors are translated into four exception types the runtime understands:
`SwarmUnavailable` (temporary: no leader, deadline exceeded, timeout, connection refused),
`Conflict` (a compare-and-swap lost: "update out of sequence", or a duplicate name),
`NotFound` (404) and `SwarmError` (anything else, permanent for that request).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

JSON = dict[str, Any]
T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
CONTROLLER_SERVICE_LABEL = "swarm-upgrade.controller"


class SwarmError(Exception):
    """A swarm request failed; `status` is the HTTP status (900 = could not connect)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"[{status}] {message}")
        self.status = status
        self.message = message


class SwarmUnavailable(SwarmError):
    """Temporary: the swarm has no leader, a request timed out or the daemon is unreachable."""


class Conflict(SwarmError):
    """A compare-and-swap lost ("update out of sequence") or the name already exists."""


class NotFound(SwarmError):
    """The object does not exist (404)."""


_TEMPORARY = re.compile(
    r"does not have a leader|DeadlineExceeded|deadline exceeded|context deadline|"
    r"Unavailable|connection refused|Cannot connect|transport is closing|leadership",
    re.IGNORECASE,
)


def translate(err: DockerError) -> SwarmError:
    """Map an aiodocker error onto the adapter's exception types."""
    status, message = int(err.status), str(err.message)
    if "update out of sequence" in message or status == 409:
        return Conflict(status, message)
    if status == 404:
        return NotFound(status, message)
    if status >= 900 or (status >= 500 and _TEMPORARY.search(message)) or status == 503:
        return SwarmUnavailable(status, message)
    return SwarmError(status, message)


def parse_time(value: str | None) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds, 'Z') as epoch seconds; 0.0 when absent."""
    if not value:
        return 0.0
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if not m:
        return 0.0
    base, frac, zone = m.group(1), m.group(2) or "", m.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    stamp = datetime.fromisoformat(base + zone).timestamp()
    return stamp + (float("0" + frac) if frac else 0.0)


@dataclass(frozen=True)
class SelfInfo:
    """What the daemon the controller talks to says about itself."""

    hostname: str
    node_id: str
    is_manager: bool
    swarm_error: str


class SwarmClient:
    """Typed async wrapper over aiodocker with a timeout on every call."""

    def __init__(
        self,
        url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_call: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._docker: aiodocker.Docker | None = None
        self._on_call = on_call

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self.url)
        return self._docker

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def __aenter__(self) -> SwarmClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _guard(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        ok = False
        try:
            async with asyncio.timeout(self.timeout):
                result = await call()
            ok = True
            return result
        except TimeoutError as err:
            raise SwarmUnavailable(0, f"{what}: no answer within {self.timeout:g}s") from err
        except DockerError as err:
            raise translate(err) from err
        except (aiohttp.ClientError, OSError) as err:
            raise SwarmUnavailable(900, f"{what}: {err}") from err
        finally:
            if self._on_call is not None:
                self._on_call(what, ok)

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """One raw API call (JSON in, JSON out) under the adapter's timeout."""
        what = f"{method} /{path.split('/')[0]}"
        return await self._guard(
            what,
            lambda: self.docker._query_json(
                path, method, params=dict(params) if params else None, data=body
            ),
        )

    # --- system -------------------------------------------------------------------------------

    async def info(self) -> SelfInfo:
        info = cast(JSON, await self.request("GET", "info"))
        swarm = info.get("Swarm") or {}
        return SelfInfo(
            hostname=str(info.get("Name", "")),
            node_id=str(swarm.get("NodeID", "")),
            is_manager=bool(swarm.get("ControlAvailable")),
            swarm_error=str(swarm.get("Error", "")),
        )

    async def swarm_inspect(self) -> JSON:
        return cast(JSON, await self.request("GET", "swarm"))

    # --- nodes --------------------------------------------------------------------------------

    async def nodes(self) -> list[JSON]:
        return cast(list[JSON], await self.request("GET", "nodes"))

    async def node(self, node_id: str) -> JSON:
        return cast(JSON, await self.request("GET", f"nodes/{node_id}"))

    async def update_node(self, node_id: str, version: int, spec: Mapping[str, Any]) -> None:
        """Replace the node's full spec, compare-and-swap on `version`."""
        await self.request(
            "POST", f"nodes/{node_id}/update", params={"version": version}, body=dict(spec)
        )

    async def patch_node(self, node_id: str, **changes: str) -> bool:
        """Set spec fields (Role, Availability) on the node if they differ; True if it wrote."""
        node = await self.node(node_id)
        spec = dict(node["Spec"])
        if all(spec.get(k) == v for k, v in changes.items()):
            return False
        spec.update(changes)
        await self.update_node(node_id, int(node["Version"]["Index"]), spec)
        return True

    async def remove_node(self, node_id: str, force: bool = False) -> None:
        await self.request(
            "DELETE", f"nodes/{node_id}", params={"force": "true" if force else "false"}
        )

    # --- services and tasks -------------------------------------------------------------------

    async def services(self) -> list[JSON]:
        return cast(list[JSON], await self.request("GET", "services"))

    async def service(self, service_id: str) -> JSON:
        return cast(JSON, await self.request("GET", f"services/{service_id}"))

    async def update_service(self, service_id: str, version: int, spec: Mapping[str, Any]) -> None:
        """A general service spec update, compare-and-swap on `version`."""
        await self.request(
            "POST", f"services/{service_id}/update", params={"version": version}, body=dict(spec)
        )

    async def tasks(self, filters: Mapping[str, list[str]] | None = None) -> list[JSON]:
        params = {"filters": json.dumps(filters)} if filters else None
        return cast(list[JSON], await self.request("GET", "tasks", params=params))

    # --- configs ------------------------------------------------------------------------------

    async def configs(self, label: str | None = None, name: str | None = None) -> list[JSON]:
        filters: dict[str, list[str]] = {}
        if label:
            filters["label"] = [label]
        if name:
            filters["name"] = [name]
        params = {"filters": json.dumps(filters)} if filters else None
        return cast(list[JSON], await self.request("GET", "configs", params=params))

    async def config(self, config_id: str) -> JSON:
        return cast(JSON, await self.request("GET", f"configs/{config_id}"))

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        body = {"Name": name, "Data": base64.b64encode(data).decode(), "Labels": dict(labels)}
        reply = cast(JSON, await self.request("POST", "configs/create", body=body))
        return str(reply["ID"])

    async def update_config_labels(
        self, config_id: str, version: int, spec: Mapping[str, Any], labels: Mapping[str, str]
    ) -> None:
        """Replace the config's labels (its data is immutable), compare-and-swap on `version`."""
        body = dict(spec)
        body["Labels"] = dict(labels)
        await self.request(
            "POST", f"configs/{config_id}/update", params={"version": version}, body=body
        )

    async def remove_config(self, config_id: str) -> None:
        await self.request("DELETE", f"configs/{config_id}")

    # --- events -------------------------------------------------------------------------------

    async def events(self, filters: Mapping[str, list[str]]) -> AsyncIterator[JSON]:
        """Stream events matching `filters`; the connection itself is under the timeout.

        The stream ends (the iterator returns) when the daemon closes it; callers resubscribe.
        """
        params = {"filters": json.dumps(dict(filters))}
        no_total = aiohttp.ClientTimeout(total=None, sock_read=None, connect=self.timeout)
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.docker._do_query(
                    "events", "GET", params=params, timeout=no_total
                )
        except TimeoutError as err:
            raise SwarmUnavailable(0, "GET /events: no answer") from err
        except DockerError as err:
            raise translate(err) from err
        except (aiohttp.ClientError, OSError) as err:
            raise SwarmUnavailable(900, f"GET /events: {err}") from err
        try:
            async for line in response.content:
                line = line.strip()
                if line:
                    yield cast(JSON, json.loads(line))
        except (aiohttp.ClientError, OSError) as err:
            raise SwarmUnavailable(900, f"GET /events: {err}") from err
        finally:
            response.close()


def node_fields(node: Mapping[str, Any], running_tasks: int) -> JSON:
    """One swarm node as a snapshot `nodes[]` entry (docs/architecture.md)."""
    desc = node.get("Description") or {}
    status = node.get("Status") or {}
    spec = node.get("Spec") or {}
    manager = node.get("ManagerStatus")
    out: JSON = {
        "id": node["ID"],
        "hostname": desc.get("Hostname", ""),
        "role": spec.get("Role", "worker"),
        "state": status.get("State", "unknown"),
        "availability": spec.get("Availability", "active"),
        "engineLabels": dict((desc.get("Engine") or {}).get("Labels") or {}),
        "createdAt": parse_time(node.get("CreatedAt")),
        "runningTasks": running_tasks,
    }
    if manager:
        out["reachability"] = manager.get("Reachability", "unknown")
        out["leader"] = bool(manager.get("Leader", False))
    else:
        out["leader"] = False
    return out


class NodeLister(Protocol):
    """What `observe_nodes` reads (SwarmClient, or an in-memory swarm of a scale simulation)."""

    async def nodes(self) -> list[JSON]: ...

    async def services(self) -> list[JSON]: ...

    async def tasks(self, filters: Mapping[str, list[str]] | None = None) -> list[JSON]: ...


async def observe_nodes(client: NodeLister) -> list[JSON]:
    """All nodes in snapshot shape, with running tasks of non-controller services counted."""
    nodes, services, tasks = await asyncio.gather(
        client.nodes(), client.services(), client.tasks({"desired-state": ["running"]})
    )
    own = {
        s["ID"] for s in services
        if CONTROLLER_SERVICE_LABEL in ((s.get("Spec") or {}).get("Labels") or {})
    }
    counts: dict[str, int] = {}
    for task in tasks:
        state = (task.get("Status") or {}).get("State")
        if state == "running" and task.get("ServiceID") not in own and task.get("NodeID"):
            counts[task["NodeID"]] = counts.get(task["NodeID"], 0) + 1
    return [node_fields(n, counts.get(n["ID"], 0)) for n in nodes]
