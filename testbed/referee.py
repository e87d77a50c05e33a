"""The referee: watches a swarm during a run and reports what an upgrade did to it.

Every manager's socket is sampled on a fixed schedule (10 Hz by default; calls overlap, each with
a short timeout, so a blocked manager is still sampled at the full rate). The report (a JSON-safe
dict) holds: the maximum number of managers simultaneously not Ready+Reachable, every leaderless
answer with its time (HTTP 500 "does not have a leader", DeadlineExceeded, a timeout), per
service the minimum number of running tasks, and each hostname's version timeline (engine label
azure.image.version of Ready nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from testbed.dockerapi import DockerAPI, DockerAPIError

VERSION_LABEL = "azure.image.version"
MAX_INFLIGHT = 16
Sampler = Callable[[str], Coroutine[Any, Any, None]]
CONTROLLER_LABEL = "swarm-upgrade.controller"


def classify(exc: DockerAPIError) -> str | None:
    """'no-leader' | 'deadline' | 'timeout' for an answer that means "no leader", else None."""
    if exc.status == 0 and exc.message == "timeout":
        return "timeout"
    if "does not have a leader" in exc.message:
        return "no-leader"
    if "DeadlineExceeded" in exc.message or "context deadline exceeded" in exc.message:
        return "deadline"
    return None


def managers_out(nodes: list[dict[str, Any]]) -> tuple[int, int]:
    """(manager entries not Ready+Reachable, manager entries) in one /nodes answer."""
    out = total = 0
    for node in nodes:
        if node.get("Spec", {}).get("Role") != "manager":
            continue
        total += 1
        ready = node.get("Status", {}).get("State") == "ready"
        reachable = node.get("ManagerStatus", {}).get("Reachability") == "reachable"
        out += not (ready and reachable)
    return out, total


class Referee:
    """Samples the managers in `docker_hosts` (hostname -> unix://socket) until stopped."""

    def __init__(
        self,
        docker_hosts: dict[str, str],
        *,
        interval: float = 0.1,
        call_timeout: float = 1.0,
        exclude_label: str = CONTROLLER_LABEL,
    ) -> None:
        if not docker_hosts:
            raise ValueError("docker_hosts: at least one manager is needed")
        self.apis = {
            name: DockerAPI(host.removeprefix("unix://"), timeout=call_timeout)
            for name, host in docker_hosts.items()
        }
        self.interval = interval
        self.exclude_label = exclude_label
        self.started = 0.0
        self.ended: float | None = None
        self.node_samples = 0
        self.task_samples = 0
        self.max_out = 0
        self.max_out_at: float | None = None
        self.out_timeline: list[dict[str, Any]] = []
        self.leaderless: list[dict[str, Any]] = []
        self.unanswered = 0
        self.skipped = 0
        self.errors: dict[str, int] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self._last_ok: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Referee:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start one sampling loop per manager plus one for services and tasks."""
        self.started = time.time()
        self._tasks = [asyncio.create_task(self._every(n, self._sample_nodes)) for n in self.apis]
        self._tasks.append(asyncio.create_task(self._every(None, self._sample_tasks)))

    async def stop(self) -> None:
        """Stop sampling (the report stays readable)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for api in self.apis.values():
            await api.close()
        self.ended = time.time()

    def _rel(self, now: float) -> float:
        return round(now - self.started, 3)

    def _record_error(self, manager: str, exc: DockerAPIError, now: float, path: str) -> None:
        kind = classify(exc)
        if kind is None:
            self.unanswered += 1
            key = f"{manager}: {exc.status} {exc.message[:80]}"
            self.errors[key] = self.errors.get(key, 0) + 1
            return
        self.leaderless.append(
            {
                "t": self._rel(now),
                "at": now,
                "manager": manager,
                "path": path,
                "kind": kind,
                "error": exc.message[:200],
            }
        )

    async def _every(
        self, manager: str | None, sample: Callable[[str], Coroutine[Any, Any, None]]
    ) -> None:
        """Start `sample(manager)` every interval without waiting for the previous one (a blocked
        manager keeps being sampled at the full rate; at most MAX_INFLIGHT calls in flight)."""
        inflight: set[asyncio.Task[None]] = set()
        try:
            while True:
                began = time.monotonic()
                if len(inflight) < MAX_INFLIGHT:
                    task = asyncio.create_task(sample(manager or self._pick_manager()))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                else:
                    self.skipped += 1
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        finally:
            for task in list(inflight):
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    async def _sample_nodes(self, manager: str) -> None:
        try:
            nodes = await self.apis[manager].get("/nodes")
        except DockerAPIError as exc:
            self._record_error(manager, exc, time.time(), "/nodes")
        else:
            self._last_ok[manager] = time.monotonic()
            self._on_nodes(nodes, time.time())

    def _on_nodes(self, nodes: list[dict[str, Any]], now: float) -> None:
        self.node_samples += 1
        out, total = managers_out(nodes)
        if out > self.max_out:
            self.max_out, self.max_out_at = out, self._rel(now)
        last = self.out_timeline[-1] if self.out_timeline else None
        if last is None or (last["out"], last["managers"]) != (out, total):
            self.out_timeline.append({"t": self._rel(now), "out": out, "managers": total})
        by_host: dict[str, list[tuple[str, str]]] = {}
        for node in nodes:
            host = node.get("Description", {}).get("Hostname", "?")
            entries = by_host.setdefault(host, [])
            if node.get("Status", {}).get("State") == "ready":
                labels = node.get("Description", {}).get("Engine", {}).get("Labels") or {}
                entries.append((labels.get(VERSION_LABEL, "?"), node["ID"]))
        for host, entries in by_host.items():
            versions = sorted({v for v, _ in entries})
            timeline = self.versions.setdefault(host, [])
            if not timeline or timeline[-1]["versions"] != versions:
                ids = sorted(i for _, i in entries)
                timeline.append({"t": self._rel(now), "versions": versions, "nodeIds": ids})

    def _pick_manager(self) -> str:
        """The manager that answered most recently (round-robin among ties)."""
        if not self._last_ok:
            names = list(self.apis)
            return names[self.task_samples % len(names)]
        return max(self._last_ok, key=lambda n: self._last_ok[n])

    async def _sample_tasks(self, manager: str) -> None:
        api = self.apis[manager]
        try:
            services = await api.get("/services")
            flt = json.dumps({"desired-state": ["running"]})
            tasks = await api.get("/tasks", params={"filters": flt})
        except DockerAPIError as exc:
            self._record_error(manager, exc, time.time(), "/tasks")
            self._last_ok.pop(manager, None)
        else:
            self._on_tasks(services, tasks, time.time())

    def _on_tasks(
        self, services: list[dict[str, Any]], tasks: list[dict[str, Any]], now: float
    ) -> None:
        self.task_samples += 1
        running: dict[str, int] = {}
        for task in tasks:
            if task.get("Status", {}).get("State") == "running":
                running[task["ServiceID"]] = running.get(task["ServiceID"], 0) + 1
        for svc in services:
            spec = svc.get("Spec", {})
            if self.exclude_label in (spec.get("Labels") or {}):
                continue
            name = spec.get("Name", svc["ID"])
            count = running.get(svc["ID"], 0)
            desired = spec.get("Mode", {}).get("Replicated", {}).get("Replicas")
            entry = self.services.setdefault(
                name,
                {
                    "minRunning": count,
                    "minRunningAt": self._rel(now),
                    "maxRunning": count,
                    "minRunningAfterConverged": None,
                    "converged": False,
                    "samples": 0,
                },
            )
            entry["samples"] += 1
            entry["desired"] = desired
            entry["lastRunning"] = count
            entry["maxRunning"] = max(entry["maxRunning"], count)
            if count < entry["minRunning"]:
                entry["minRunning"], entry["minRunningAt"] = count, self._rel(now)
            if desired is not None and count >= desired:
                entry["converged"] = True
            if entry["converged"]:
                low = entry["minRunningAfterConverged"]
                if low is None or count < low:
                    entry["minRunningAfterConverged"] = count

    def report(self) -> dict[str, Any]:
        """Everything observed so far, JSON-safe."""
        end = self.ended or time.time()
        duration = max(end - self.started, 1e-9)
        return {
            "startedAt": self.started,
            "endedAt": end,
            "durationS": round(duration, 3),
            "managers": sorted(self.apis),
            "samples": {
                "nodes": self.node_samples,
                "tasks": self.task_samples,
                "nodesHz": round(self.node_samples / duration, 2),
                "intervalS": self.interval,
                "skipped": self.skipped,
                "unanswered": self.unanswered,
            },
            "errors": self.errors,
            "maxManagersOut": self.max_out,
            "maxManagersOutAt": self.max_out_at,
            "managersOutTimeline": self.out_timeline,
            "leaderless": self.leaderless,
            "services": self.services,
            "versions": self.versions,
        }

    def write(self, path: str | Path) -> dict[str, Any]:
        """Write the report as JSON to `path` and return it."""
        data = self.report()
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
        return data
