"""ARM request plumbing shared by the Azure adapters (compute and deployments clients).

`ArmTransport` is azure-core's aiohttp transport with ONE TLS context for every request: given
`connection_verify=<CA file>`, azure-core builds a new `SSLContext` per request, which defeats
aiohttp's connection reuse (a TLS handshake and a new pooled connection per ARM call).

`ArmBudget` / `ArmPacing` keep the controller under ARM's throttling instead of being answered
429: a request waits for a token of a client-side bucket at 80 % of Azure's per-subscription
ones (reads 250 + 25/s, writes 200 + 10/s), lowered to 80 % of what ARM's
`x-ms-ratelimit-remaining-subscription-*` headers say is left (other clients count too).
Both are handed to the generated SDK clients (`transport=`, `per_retry_policies=`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import aiohttp
from azure.core.pipeline import PipelineRequest, PipelineResponse, policies
from azure.core.pipeline.transport import AioHttpTransport


class Bucket:
    """A token bucket: `burst` tokens, refilled at `rate` per second."""

    def __init__(self, burst: float, rate: float, clock: Any = time.monotonic) -> None:
        self.burst, self.rate, self.clock = burst, rate, clock
        self.tokens, self.stamp = burst, clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self) -> float:
        """Take a token and return 0, or return how long until one is there."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def cap(self, tokens: float) -> None:
        """At most `tokens` left (what the server says is left, scaled)."""
        self._refill()
        self.tokens = min(self.tokens, tokens)


class ArmBudget:
    """The controller's share of ARM's request budget (see the module docstring)."""

    SHARE = 0.8

    def __init__(self, reads: tuple[float, float] = (250, 25),
                 writes: tuple[float, float] = (200, 10), clock: Any = time.monotonic) -> None:
        self.reads = Bucket(reads[0] * self.SHARE, reads[1] * self.SHARE, clock)
        self.writes = Bucket(writes[0] * self.SHARE, writes[1] * self.SHARE, clock)
        self.waited_s = 0.0  # total time requests waited for a token

    async def take(self, write: bool) -> None:
        bucket = self.writes if write else self.reads
        while (wait := bucket.wait_s()) > 0:
            self.waited_s += wait
            await asyncio.sleep(wait)

    def heard(self, write: bool, remaining: str | None) -> None:
        """ARM's `x-ms-ratelimit-remaining-subscription-reads|writes` of an answer."""
        if remaining and remaining.strip().isdigit():
            (self.writes if write else self.reads).cap(int(remaining) * self.SHARE)


class ArmPacing(policies.AsyncHTTPPolicy):  # type: ignore[type-arg]
    """Each attempt (after the retry policy) waits for a token of the `ArmBudget`."""

    def __init__(self, budget: ArmBudget) -> None:
        super().__init__()
        self.budget = budget

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        write = request.http_request.method.upper() not in ("GET", "HEAD")
        await self.budget.take(write)
        response: PipelineResponse[Any, Any] = await self.next.send(request)
        kind = "writes" if write else "reads"
        self.budget.heard(write, response.http_response.headers.get(
            f"x-ms-ratelimit-remaining-subscription-{kind}"))
        return response


def tls_context(cafile: str | None) -> ssl.SSLContext | None:
    """A verifying TLS context trusting `cafile` (None: aiohttp's default context)."""
    return ssl.create_default_context(cafile=cafile) if cafile else None


class ArmTransport(AioHttpTransport):  # type: ignore[misc]  # untyped base (aiohttp)
    """azure-core's aiohttp transport whose session verifies with one fixed TLS context."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        super().__init__()
        self._context = context

    async def open(self) -> None:
        if self.session is None and self._context is not None:  # type: ignore[has-type]
            # What AioHttpTransport.open() makes, plus the connector's TLS context (used for
            # every request sent with the default `ssl=True`).
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._context), trust_env=True,
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        await super().open()
