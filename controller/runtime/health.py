"""`/healthz` and `/metrics` over HTTP (read-only: other methods get 405).

`Metrics` owns a private prometheus-client registry: nodes total/upgraded, the rollout phase
(one gauge per verdict, 1 for the current one), lease holder, step durations, and the number of
ARM and swarm calls and errors by operation. `/healthz` answers 200 while the reconcile loop has
completed a pass recently (within `stale_after` seconds), 503 otherwise, with a JSON body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

VERDICTS = ("proceed", "wait", "done", "refused", "halted")


class Metrics:
    """The controller's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.nodes_total = Gauge("swarm_upgrade_nodes_total", "Nodes of the rollout", registry=r)
        self.nodes_upgraded = Gauge(
            "swarm_upgrade_nodes_upgraded", "Nodes running the target image", registry=r)
        self.phase = Gauge("swarm_upgrade_rollout_phase",
                           "1 for the verdict of the last reconcile pass", ["verdict"], registry=r)
        self.leader = Gauge("swarm_upgrade_lease_held", "1 while this replica holds the lease",
                            registry=r)
        self.passes = Counter("swarm_upgrade_reconcile_passes", "Reconcile passes", registry=r)
        self.step_seconds = Histogram(
            "swarm_upgrade_step_duration_seconds", "Duration of executed steps", ["action"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800), registry=r)
        self.arm_calls = Counter("swarm_upgrade_arm_calls", "ARM requests", ["operation"],
                                 registry=r)
        self.arm_errors = Counter("swarm_upgrade_arm_errors", "Failed ARM requests",
                                  ["operation"], registry=r)
        self.swarm_calls = Counter("swarm_upgrade_swarm_calls", "Swarm API calls", ["operation"],
                                   registry=r)
        self.swarm_errors = Counter("swarm_upgrade_swarm_errors", "Failed swarm API calls",
                                    ["operation"], registry=r)
        for verdict in VERDICTS:
            self.phase.labels(verdict).set(0)

    def arm_call(self, operation: str, ok: bool) -> None:
        self.arm_calls.labels(operation).inc()
        if not ok:
            self.arm_errors.labels(operation).inc()

    def swarm_call(self, operation: str, ok: bool) -> None:
        self.swarm_calls.labels(operation).inc()
        if not ok:
            self.swarm_errors.labels(operation).inc()

    def verdict(self, verdict: str) -> None:
        for v in VERDICTS:
            self.phase.labels(v).set(1 if v == verdict else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """An aiohttp server for /healthz and /metrics on `host:port` (port 0 = any free port)."""

    def __init__(self, metrics: Metrics, status: Callable[[], dict[str, Any]],
                 host: str = "0.0.0.0", port: int = 9100, stale_after: float = 300.0) -> None:
        self.metrics = metrics
        self.status = status
        self.host = host
        self.port = port
        self.stale_after = stale_after
        self._runner: web.AppRunner | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        info = dict(self.status())
        last = float(info.get("lastPassAt") or 0.0)
        healthy = last > 0 and time.time() - last < self.stale_after
        info["healthy"] = healthy
        return web.Response(status=200 if healthy else 503, text=json.dumps(info),
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/healthz", self._healthz)
        app.router.add_route("*", "/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
