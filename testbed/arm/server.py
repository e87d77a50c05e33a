"""The local ARM endpoint: an aiohttp HTTPS server the real Azure SDKs talk to.

`ArmServer` serves the token endpoints (identity.py) and the ARM routes of its resource
providers (compute.py, vms.py, operations.py; more through `add_routes`). Every ARM request
passes, in order: route match (404/405), bearer token (401), subscription (404), api-version
(400), injected throttle storm (429), token buckets (429 when enforced), role actions (403),
injected errors, the handler. Every answer carries ``x-ms-ratelimit-remaining-*`` headers and is
appended to `request_log`. Instances are driven through an `InstanceDriver`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web

from testbed.arm.certs import server_tls
from testbed.arm.compute import ComputeProvider
from testbed.arm.deployments import DeploymentsProvider
from testbed.arm.faults import Faults
from testbed.arm.identity import MANAGED_IDENTITY_PATH, IdentityEndpoints, TokenStore, aad_error
from testbed.arm.operations import Operations
from testbed.arm.ratelimit import Throttle
from testbed.arm.rbac import RoleCheck
from testbed.arm.requestlog import RequestLog, RequestLogEntry
from testbed.arm.routing import ArmError, ArmRequest, ArmRoute, Router, arm_error
from testbed.arm.state import Context, ScaleSet, normalize_image
from testbed.arm.vms import VmRoutes
from testbed.driver import InstanceDriver

# The operation name of the request being answered (set by the dispatcher, read by the logger).
_OPERATION: contextvars.ContextVar[list[str]] = contextvars.ContextVar("arm_operation")


# The instance ids named in the body of the write being answered (read by the logger).
_INSTANCES: contextvars.ContextVar[list[str]] = contextvars.ContextVar("arm_instances")


def _name_operation(operation: str) -> None:
    holder = _OPERATION.get(None)
    if holder is not None:
        holder[0] = operation


class ArmServer:
    """A fake Azure Resource Manager (Microsoft.Compute scale sets) over real HTTPS."""

    def __init__(
        self,
        driver: InstanceDriver,
        *,
        subscription_id: str,
        resource_group: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        cert_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        role_actions: list[str] | None = None,
        enforce_throttling: bool = False,
        location: str = "westeurope",
        page_size: int = 100,
        boot_timeout: float = 600.0,
        lro_retry_after: int | None = None,
        identity_header: str | None = None,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.cert_dir = Path(cert_dir)
        self.host = host
        self.port = port
        self.faults = Faults()
        self.request_log = RequestLog()
        self.throttle = Throttle(enforce=enforce_throttling)
        self.rbac = RoleCheck(role_actions)
        self.tokens = TokenStore()
        self.identity_header = identity_header or secrets.token_urlsafe(16)
        self.identity = IdentityEndpoints(self.tokens, tenant_id=tenant_id, client_id=client_id,
                                          client_secret=client_secret,
                                          identity_header=self.identity_header)
        self.operations = Operations(subscription_id, location, lro_retry_after)
        self.compute = ComputeProvider(Context(subscription_id, resource_group, location), driver,
                                       self.faults, self.operations, boot_timeout=boot_timeout,
                                       page_size=page_size)
        self.router = Router()
        self.router.add(self.operations.routes())
        self.router.add(self.compute.routes())
        self.router.add(VmRoutes(self.compute).routes())
        self.deployments = DeploymentsProvider(self.compute.ctx, self.operations, self.faults,
                                               scale_sets=self.compute.scale_sets,
                                               allows=lambda action: self.rbac.allows(action))
        self.router.add(self.deployments.routes())
        self.url = ""
        self.ca_path = self.cert_dir / "ca.pem"
        self._runner: web.AppRunner | None = None
        self._pending_boots: list[ScaleSet] = []

    # -- public API ---------------------------------------------------------------------------

    def add_routes(self, routes: Iterable[ArmRoute]) -> None:
        """Serve more ARM routes (another resource provider, e.g. Microsoft.Resources)."""
        self.router.add(routes)

    def add_scale_set(self, name: str, role: str, tags: dict[str, str], image: dict[str, str],
                      capacity: int, computer_name_prefix: str, booted: bool = True) -> ScaleSet:
        """Register a scale set with instances "0".."capacity-1" on `image`.

        With `booted` the nodes already run (the cluster booted them) and ARM only records them;
        otherwise the server boots them through the driver when it starts (provisioningState
        Creating until then).
        """
        ss = ScaleSet(name=name, role=role, tags=dict(tags), image=normalize_image(image),
                      computer_name_prefix=computer_name_prefix)
        for _ in range(capacity):
            instance = ss.new_instance()
            if not booted:
                instance.set_state("Creating")
        self.compute.add(ss)
        if not booted:
            self._pending_boots.append(ss)
            if self._runner is not None:
                self._boot_pending()
        return ss

    @property
    def boot_timeout(self) -> float:
        """Seconds a driver boot/reimage/start may take before the LRO fails
        ``OSProvisioningTimedOut``."""
        return self.compute.actions.boot_timeout

    @boot_timeout.setter
    def boot_timeout(self, seconds: float) -> None:
        self.compute.actions.boot_timeout = seconds

    def scale_set(self, name: str) -> ScaleSet:
        """The live state of scale set `name` (model, instances); KeyError if unknown."""
        return self.compute.scale_sets[name.lower()]

    def counts(self) -> dict[str, dict[str, int]]:
        """Request counts per operation (reads, writes, throttled, errors) and a "*" total."""
        return self.request_log.counts()

    def environment(self, *, managed_identity: bool = False) -> dict[str, str]:
        """Environment variables that point azure-identity and the controller at this server."""
        env = {
            "AZURE_SUBSCRIPTION_ID": self.subscription_id,
            "AZURE_RESOURCE_GROUP": self.resource_group,
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_AUTHORITY_HOST": self.url,
            "AZURE_ARM_ENDPOINT": self.url,
            "SSL_CERT_FILE": str(self.ca_path),
        }
        if managed_identity:
            env["IDENTITY_ENDPOINT"] = self.url + MANAGED_IDENTITY_PATH
            env["IDENTITY_HEADER"] = self.identity_header
        else:
            env["AZURE_CLIENT_SECRET"] = self.client_secret
        return env

    async def start(self) -> str:
        """Listen over HTTPS; return the base URL ``https://HOST:PORT``."""
        tls = server_tls(self.cert_dir, self.host)
        self.ca_path = tls.ca_path
        app = web.Application(middlewares=[self._log_middleware], client_max_size=16 * 2**20)
        for method, path, operation, handler in self.identity.routes():
            app.router.add_route(method, path, self._identity_handler(operation, handler))
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=tls.server_context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None)
        if not sockets:
            raise RuntimeError(f"ARM endpoint did not bind {self.host}:{self.port}")
        self.port = sockets[0].getsockname()[1]
        self.url = f"https://{self.host}:{self.port}"
        self.identity.base_url = self.url
        self._boot_pending()
        return self.url

    async def stop(self) -> None:
        """Cancel running operations and close the listener."""
        await self.operations.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ArmServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- internals ----------------------------------------------------------------------------

    def _boot_pending(self) -> None:
        for ss in self._pending_boots:
            targets = [i for i in ss.instances.values() if i.provisioning_state == "Creating"
                       and not i.busy]
            for instance in targets:
                self.compute.actions.mark_pending("Testbed_Boot", "boot", instance)
            if targets:
                self.operations.start("Testbed_Boot", self.compute.actions.run_many(
                    "Testbed_Boot", "boot", ss, targets))
        self._pending_boots.clear()

    @web.middleware
    async def _log_middleware(
        self, request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started, wall = time.monotonic(), time.time()
        status = 500
        holder = ["Unmatched"]
        _OPERATION.set(holder)
        instances: list[str] = []
        _INSTANCES.set(instances)
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.request_log.append(RequestLogEntry(
                time=wall, method=request.method, path=request.path,
                operation=holder[0],
                kind="read" if request.method in ("GET", "HEAD") else "write",
                status=status, duration=time.monotonic() - started,
                instances=tuple(instances)))

    def _identity_handler(self, operation: str,
                          handler: Callable[[web.Request], Awaitable[web.Response]],
                          ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            _name_operation(operation)
            fault = self.faults.take_error(operation)
            if fault is not None:
                return aad_error(fault.status, fault.code, 50000 + fault.status, fault.message)
            return await handler(request)

        return wrapped

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        found = self.router.match(request.method, request.path)
        if found is None:
            if self.router.path_known(request.path):
                return arm_error(405, "MethodNotAllowed",
                                 f"The method '{request.method}' is not allowed on "
                                 f"'{request.path}'.")
            return arm_error(404, "InvalidResourceType",
                             f"The testbed serves no resource at '{request.path}'.")
        route, params = found
        _name_operation(route.operation)
        response = await self._guarded(request, route, params)
        response.headers.update(self.throttle.headers(route.is_write, route.operation))
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        response.headers.setdefault("x-ms-correlation-request-id", str(uuid.uuid4()))
        return response

    async def _guarded(self, request: web.Request, route: ArmRoute, params: dict[str, str]
                       ) -> web.StreamResponse:
        principal = self.tokens.principal(request.headers.get("Authorization"))
        if principal is None:
            code = ("AuthenticationFailed" if "Authorization" not in request.headers
                    else "InvalidAuthenticationToken")
            return arm_error(401, code, "Authentication failed: missing or invalid bearer token "
                                        "(tokens come from this server's token endpoints).")
        subscription = params.get("subscriptionId")
        if subscription is not None and subscription != self.subscription_id:
            return arm_error(404, "SubscriptionNotFound",
                             f"The subscription '{subscription}' could not be found.")
        if route.needs_api_version and not request.query.get("api-version"):
            return arm_error(400, "MissingApiVersionParameter",
                             "The api-version query parameter (?api-version=) is required for "
                             "all requests.")
        retry_after = self.faults.take_throttle(route.operation)
        if retry_after is None:
            retry_after = self.throttle.admit(route.is_write)
        if retry_after is not None:
            kind = "Write" if route.is_write else "Read"
            return arm_error(429, "TooManyRequests",
                             f"The request is being throttled as the limit has been reached for "
                             f"operation type - {kind}. Retry after {retry_after} seconds.",
                             headers={"Retry-After": str(retry_after)})
        if not self.rbac.allows(route.action):
            return self.rbac.refusal(principal, route.action, request.path)
        fault = self.faults.take_error(route.operation)
        if fault is not None:
            return arm_error(fault.status, fault.code, fault.message)
        if not route.is_write:
            delay = self.faults.delay(route.operation)
            if delay:
                await asyncio.sleep(delay)
        body: object = None
        if request.can_read_body:
            text = await request.text()
            if text.strip():
                try:
                    body = json.loads(text)
                except ValueError:
                    return arm_error(400, "InvalidRequestContent",
                                     f"The request content is not valid JSON: {text[:80]!r}")
        if isinstance(body, dict) and isinstance(body.get("instanceIds"), list):
            named = _INSTANCES.get(None)
            if named is not None:
                named.extend(str(i) for i in body["instanceIds"])
        arm = ArmRequest(request=request, params=params, operation=route.operation, body=body,
                         query=request.query)
        try:
            return await route.handler(arm)
        except ArmError as error:
            return error.response()
