"""The runtime's I/O seam: what the loop, executor, store, sources and observe call on the swarm,
on the scale sets and on the clock — and nothing more.

`controller.adapters.swarm.SwarmClient` and `controller.adapters.azure.ScaleSetClient` satisfy
these protocols structurally (mypy strict checks it where the runtime is wired, see app.py);
`SystemClock` is the real clock. A scale simulation (bench/) plugs in-memory fakes and a virtual
clock in here instead; the end-to-end tests always use the real adapters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from controller.adapters.swarm import SelfInfo

JSON = dict[str, Any]


class SwarmPort(Protocol):
    """The swarm as the runtime uses it (see adapters/swarm.py for the semantics and errors)."""

    async def info(self) -> SelfInfo: ...

    async def nodes(self) -> list[JSON]: ...

    async def node(self, node_id: str) -> JSON: ...

    async def patch_node(self, node_id: str, **changes: str) -> bool: ...

    async def remove_node(self, node_id: str, force: bool = False) -> None: ...

    async def services(self) -> list[JSON]: ...

    async def service(self, service_id: str) -> JSON: ...

    async def update_service(self, service_id: str, version: int,
                             spec: Mapping[str, Any]) -> None: ...

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None) -> Any: ...

    async def tasks(self, filters: Mapping[str, list[str]] | None = None) -> list[JSON]: ...

    async def configs(self, label: str | None = None, name: str | None = None) -> list[JSON]: ...

    async def config(self, config_id: str) -> JSON: ...

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str: ...

    async def update_config_labels(
        self, config_id: str, version: int, spec: Mapping[str, Any], labels: Mapping[str, str]
    ) -> None: ...

    def events(self, filters: Mapping[str, list[str]]) -> AsyncIterator[JSON]: ...

    async def close(self) -> None: ...


class ReimagePort(Protocol):
    """A reimage ARM accepted: `wait()` returns when it is done or raises AzureFailure."""

    async def wait(self) -> None: ...


class ScaleSetPort(Protocol):
    """The scale sets as the runtime uses them (see adapters/azure.py)."""

    def portal_url(self, scale_set: str) -> str: ...

    async def observe(self, roles: Mapping[str, str]) -> list[JSON]: ...

    async def instance(self, name: str, instance_id: str) -> JSON: ...

    async def set_model_image(self, name: str, image: Mapping[str, str]) -> bool: ...

    async def start_reimage(self, name: str, instance_ids: list[str]) -> ReimagePort: ...

    async def close(self) -> None: ...


class Clock(Protocol):
    """Wall-clock time (epoch seconds, what the planner and the lease compare) and sleeping."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
