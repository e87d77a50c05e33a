"""ARM REST for the five scale-set operations the controller uses, on azure-mgmt-core's pipeline.

Why not the generated `azure.mgmt.compute.aio` client: importing it costs ~20 MB of RSS and
~0.25 s of CPU (about 6 MB of generated source: every Compute operation and model, and the sync
operations module the async one builds its requests with), for five operations — a quarter of
the controller's footprint (docs/performance.md §4). This module sends exactly those requests as
the generated client 39 (api-version 2026-04-01) does — same paths, query, bodies, accepted
status codes and LRO polling — through the same azure-core / azure-mgmt-core pipeline (request
id, user agent, redirects, retries honouring Retry-After, ARM bearer-challenge authentication,
logging with secrets redacted), and returns ARM's JSON. Errors are azure-core's exceptions with
ARM's error body parsed (`err.error.code`), as the generated client raises them.

`ArmTransport` is azure-core's aiohttp transport with ONE TLS context for every request: given
`connection_verify=<CA file>`, azure-core builds a new `SSLContext` per request, which defeats
aiohttp's connection reuse (a TLS handshake and a new pooled connection per ARM call).

`ArmBudget` / `ArmPacing` keep the controller under ARM's throttling instead of being answered
429: a request waits for a token of a client-side bucket at 80 % of Azure's per-subscription
ones (reads 250 + 25/s, writes 200 + 10/s), lowered to 80 % of what ARM's
`x-ms-ratelimit-remaining-subscription-*` headers say is left (other clients count too).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import aiohttp
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse, policies
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.polling import AsyncLROPoller
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.mgmt.core import AsyncARMPipelineClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import (
    ARMHttpLoggingPolicy,
    AsyncARMAutoResourceProviderRegistrationPolicy,
    AsyncARMChallengeAuthenticationPolicy,
)
from azure.mgmt.core.polling.async_arm_polling import AsyncARMPolling

JSON = dict[str, Any]
Client = AsyncARMPipelineClient[HttpRequest, AsyncHttpResponse]
API_VERSION = "2026-04-01"  # what azure-mgmt-compute 39 sends
SCOPE = "https://management.azure.com/.default"
ERROR_MAP: Mapping[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


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


def pipeline_client(credential: Any, *, base_url: str, retry_total: int,
                    context: ssl.SSLContext | None, budget: ArmBudget) -> Client:
    """The generated clients' policy list (azure-mgmt-compute 39), with our transport and the
    pacing after the retry policy (as azure-core places `per_retry_policies`)."""
    kw: dict[str, Any] = {"retry_total": retry_total, "sdk_moniker": "swarm-upgrade-controller"}
    redirect = policies.AsyncRedirectPolicy(**kw)
    chain = [
        policies.RequestIdPolicy(**kw),
        policies.HeadersPolicy(**kw),
        policies.UserAgentPolicy(**kw),
        policies.ProxyPolicy(**kw),
        policies.ContentDecodePolicy(**kw),
        AsyncARMAutoResourceProviderRegistrationPolicy(),
        redirect,
        policies.AsyncRetryPolicy(**kw),
        ArmPacing(budget),
        AsyncARMChallengeAuthenticationPolicy(credential, SCOPE, **kw),
        policies.CustomHookPolicy(**kw),
        policies.NetworkTraceLoggingPolicy(**kw),
        policies.DistributedTracingPolicy(**kw),
        policies.SensitiveHeaderCleanupPolicy(**kw),
        ARMHttpLoggingPolicy(**kw),
    ]
    return AsyncARMPipelineClient(base_url=base_url, policies=chain,
                                  transport=ArmTransport(context))


class ComputeRest:
    """VirtualMachineScaleSets_Get/Update/UpdateInstances, VirtualMachineScaleSetVMs_Get/List."""

    def __init__(self, credential: Any, subscription_id: str, *, base_url: str,
                 polling_interval: float, retry_total: int,
                 context: ssl.SSLContext | None, budget: ArmBudget) -> None:
        self.polling_interval = polling_interval
        self._prefix = (f"/subscriptions/{quote(subscription_id, safe='')}/resourceGroups/"
                        "{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}")
        self._client = pipeline_client(credential, base_url=base_url, retry_total=retry_total,
                                       context=context, budget=budget)

    async def close(self) -> None:
        await self._client.close()

    def _url(self, rg: str, name: str, tail: str = "") -> str:
        path = self._prefix.format(rg=quote(rg, safe=""), name=quote(name, safe="")) + tail
        return str(self._client.format_url(path))

    async def _send(self, method: str, url: str, ok: tuple[int, ...], body: Any = None,
                    params: Mapping[str, str] | None = None) -> Any:
        """One request; the pipeline response if its status is in `ok`, else the SDK error."""
        headers = {"Accept": "application/json"}
        query = {"api-version": API_VERSION, **(params or {})}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body)
        request = HttpRequest(method, url, params=query, headers=headers, content=content)
        result = await self._client._pipeline.run(request, stream=False)
        response = result.http_response
        if response.status_code not in ok:
            map_error(status_code=response.status_code, response=response, error_map=ERROR_MAP)
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        return result

    async def get_scale_set(self, rg: str, name: str) -> JSON:
        result = await self._send("GET", self._url(rg, name), (200,))
        return dict(result.http_response.json())

    async def get_vm(self, rg: str, name: str, instance_id: str) -> JSON:
        url = self._url(rg, name, f"/virtualMachines/{quote(instance_id, safe='')}")
        result = await self._send("GET", url, (200,), params={"$expand": "instanceView"})
        return dict(result.http_response.json())

    async def list_vms(self, rg: str, name: str) -> list[JSON]:
        """Every VM of the scale set with its instance view (all pages)."""
        out: list[JSON] = []
        page = await self._send("GET", self._url(rg, name, "/virtualMachines"), (200,),
                                params={"$expand": "instanceView"})
        while True:
            data = page.http_response.json()
            out.extend(data.get("value") or [])
            link = data.get("nextLink")
            if not link:
                return out
            # As the generated client: the next link's own query, with our api-version.
            parts = urlsplit(link)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            query["api-version"] = API_VERSION
            request = HttpRequest("GET", urlunsplit(parts._replace(query="")), params=query,
                                  headers={"Accept": "application/json"})
            page = await self._client._pipeline.run(request, stream=False)
            if page.http_response.status_code != 200:
                response = page.http_response
                map_error(status_code=response.status_code, response=response,
                          error_map=ERROR_MAP)
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)

    def _poller(self, initial: Any) -> AsyncLROPoller[None]:
        method = AsyncARMPolling(self.polling_interval)
        return AsyncLROPoller(self._client, initial, lambda _response: None, method)

    async def begin_update(self, rg: str, name: str, body: JSON) -> AsyncLROPoller[None]:
        """PATCH the scale set (the generated client accepts only 200 here)."""
        initial = await self._send("PATCH", self._url(rg, name), (200,), body)
        return self._poller(initial)

    async def begin_update_instances(self, rg: str, name: str,
                                     instance_ids: list[str]) -> AsyncLROPoller[None]:
        """POST …/manualupgrade {"instanceIds": [...]}: the manual upgrade (200 or 202)."""
        initial = await self._send("POST", self._url(rg, name, "/manualupgrade"), (200, 202),
                                   {"instanceIds": list(instance_ids)})
        return self._poller(initial)
