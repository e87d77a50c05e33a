"""A minimal async Docker Engine API client over a unix socket, every call with a timeout.

The testbed needs only a handful of calls (swarm init/join, nodes, services, tasks, image import)
and must never hang on a leaderless swarm, so it talks HTTP directly through aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

API_VERSION = "v1.41"


class DockerAPIError(Exception):
    """A non-2xx answer, a timeout (status 0, message 'timeout') or a connection failure."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class DockerAPI:
    """Talks to one dockerd at `socket_path`. Create inside a running event loop."""

    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path, force_close=True)
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        data: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        wait_s: float | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON answer (or text, or None if empty)."""
        url = f"http://docker/{API_VERSION}{path}"
        kwargs: dict[str, Any] = {"params": params, "headers": headers or {}}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            kwargs["headers"]["Content-Type"] = "application/json"
        elif data is not None:
            kwargs["data"] = data
        total = self.timeout if wait_s is None else wait_s
        try:
            async with asyncio.timeout(total):
                async with self._get_session().request(method, url, **kwargs) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError as exc:
            raise DockerAPIError(0, "timeout") from exc
        except aiohttp.ClientError as exc:
            raise DockerAPIError(0, f"connection failed: {exc}") from exc
        text = raw.decode(errors="replace")
        if status >= 400:
            try:
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text
            raise DockerAPIError(status, message.strip())
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def get(self, path: str, **kwargs: Any) -> Any:
        """GET `path`."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """POST `path` with a JSON `body`."""
        return await self.request("POST", path, body=body, **kwargs)

    async def ping(self, wait_s: float = 1.0) -> bool:
        """True if the daemon answers /_ping."""
        try:
            await self.request("GET", "/_ping", wait_s=wait_s)
        except DockerAPIError:
            return False
        return True

    async def import_image(self, tar: bytes, repo: str, tag: str, wait_s: float = 30.0) -> None:
        """`docker import` of a rootfs tar."""
        text = await self.request(
            "POST",
            "/images/create",
            params={"fromSrc": "-", "repo": repo, "tag": tag},
            data=tar,
            headers={"Content-Type": "application/x-tar"},
            wait_s=wait_s,
        )
        if isinstance(text, str) and '"error"' in text:
            raise DockerAPIError(500, text)

    async def load_archive(self, archive: Path, wait_s: float = 180.0) -> None:
        """`docker load` of a `docker save` tarball, streamed from the file."""
        with archive.open("rb") as stream:
            text = await self.request(
                "POST",
                "/images/load",
                params={"quiet": "1"},
                data=stream,
                headers={"Content-Type": "application/x-tar"},
                wait_s=wait_s,
            )
        if isinstance(text, str) and '"error' in text:
            raise DockerAPIError(500, f"loading {archive}: {text.strip()}")
