"""Small async helpers for tests that look at a testbed swarm directly.

nodes = await swarm_nodes(testbed.env["DOCKER_HOST"])
node = await wait_for(lambda: ready_node(testbed.env["DOCKER_HOST"], "swarm-worker000001"))
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from testbed.dockerapi import DockerAPI, DockerAPIError

T = TypeVar("T")


async def docker_get(docker_host: str, path: str, wait_s: float = 5.0) -> Any:
    """GET `path` from the dockerd at `docker_host` (unix://...)."""
    api = DockerAPI(docker_host.removeprefix("unix://"), timeout=wait_s)
    try:
        return await api.get(path)
    finally:
        await api.close()


async def docker_post(docker_host: str, path: str, body: Any, **kwargs: Any) -> Any:
    """POST JSON `body` to `path` on the dockerd at `docker_host`."""
    api = DockerAPI(docker_host.removeprefix("unix://"))
    try:
        return await api.post(path, body, **kwargs)
    finally:
        await api.close()


async def docker_delete(docker_host: str, path: str) -> Any:
    """DELETE `path` on the dockerd at `docker_host`."""
    api = DockerAPI(docker_host.removeprefix("unix://"))
    try:
        return await api.request("DELETE", path)
    finally:
        await api.close()


async def swarm_nodes(docker_host: str) -> list[dict[str, Any]]:
    """`docker node ls` as raw API objects."""
    nodes: list[dict[str, Any]] = await docker_get(docker_host, "/nodes")
    return nodes


def hostname(node: dict[str, Any]) -> str:
    """The node's hostname."""
    return str(node["Description"]["Hostname"])


def engine_labels(node: dict[str, Any]) -> dict[str, str]:
    """The node's dockerd engine labels."""
    return dict(node["Description"]["Engine"].get("Labels") or {})


def state(node: dict[str, Any]) -> str:
    """ready | down | unknown | disconnected."""
    return str(node["Status"]["State"])


async def ready_node(
    docker_host: str, name: str, exclude: Collection[str] = ()
) -> dict[str, Any] | None:
    """The Ready node entry with hostname `name` whose id is not in `exclude`, or None.

    (Right after a reimage the old entry stays Ready for about a heartbeat, next to the new one.)
    """
    try:
        nodes = await swarm_nodes(docker_host)
    except DockerAPIError:
        return None
    for node in nodes:
        if hostname(node) == name and state(node) == "ready" and node["ID"] not in exclude:
            return node
    return None


async def wait_for(
    check: Callable[[], Awaitable[T | None] | T | None], wait_s: float = 30.0, every: float = 0.2
) -> T:
    """Call (and await, if async) `check()` until it returns something truthy; AssertionError
    after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {wait_s}s")
        await asyncio.sleep(every)
