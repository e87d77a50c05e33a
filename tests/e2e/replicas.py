"""Controller replicas for the end-to-end tests: one `swarm-upgrade run` subprocess per manager.

Like a global, manager-only swarm service: a supervisor polls every manager's dockerd; while it
answers as a swarm manager, that node has a replica (started again if it died); when the node
stops being a manager (demoted) or its dockerd goes away (reimage), the replica is killed.
Each replica talks to its own manager's socket and writes its events to its own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.runtime.localswarm import api


@dataclass
class Replica:
    hostname: str
    docker_host: str
    generation: int
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Replicas:
    """Supervises one replica per manager (see the module docstring)."""

    hosts: dict[str, str]  # hostname -> unix://socket of that manager
    env: dict[str, str]
    args: list[str]
    dir: Path
    running: dict[str, Replica] = field(default_factory=dict)
    history: list[Replica] = field(default_factory=list)
    supervise: bool = True
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _state(docker_host: str) -> str:
        """manager | other (answers, but not as a swarm manager) | gone (no daemon) | unknown."""
        try:
            info = api(docker_host.removeprefix("unix://"), "GET", "/info", timeout=2)
        except (FileNotFoundError, ConnectionRefusedError):
            return "gone"
        except (OSError, RuntimeError):
            return "unknown"  # a slow answer (an election, a loaded machine) proves nothing
        swarm = info.get("Swarm") or {}
        manager = swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))
        return "manager" if manager else "other"

    def _loop(self) -> None:
        while not self._stop.is_set():
            for host, docker_host in self.hosts.items():
                state = self._state(docker_host)
                with self._lock:
                    replica = self.running.get(host)
                    alive = replica is not None and replica.proc.poll() is None
                    if state == "manager" and not alive and self.supervise:
                        self._spawn(host, docker_host)
                    elif state in ("other", "gone") and alive and replica is not None:
                        self._kill(replica)
            self._stop.wait(0.2)

    def _spawn(self, host: str, docker_host: str) -> None:
        generation = sum(1 for r in self.history if r.hostname == host)
        log = self.dir / f"{host}.{generation}.jsonl"
        out = open(log, "wb")
        proc = subprocess.Popen(
            ["swarm-upgrade", "run", "--docker-host", docker_host,
             "--replica-id", f"{host}-g{generation}", *self.args],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        replica = Replica(host, docker_host, generation, proc, log)
        self.running[host] = replica
        self.history.append(replica)

    @staticmethod
    def _kill(replica: Replica) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(replica.proc.pid, signal.SIGKILL)
        replica.proc.wait(10)

    def kill9(self, host: str) -> Replica:
        """kill -9 the replica on `host` (the supervisor starts a new one, like swarm would)."""
        with self._lock:
            replica = self.running[host]
            self._kill(replica)
            return replica

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            for replica in self.running.values():
                if replica.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(replica.proc.pid, signal.SIGTERM)
            for replica in self.running.values():
                try:
                    replica.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._kill(replica)

    def events(self) -> list[dict[str, Any]]:
        """Every event of every replica (non-JSON lines are kept as `raw`), by time."""
        out: list[dict[str, Any]] = []
        for replica in list(self.history):
            for line in replica.log.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"raw": line, "time": ""}
                if isinstance(event, dict):
                    event["replica"] = f"{replica.hostname}-g{replica.generation}"
                    out.append(event)
        return sorted(out, key=lambda e: str(e.get("time", "")))

    async def wait_for(self, predicate: Any, wait_s: float, what: str) -> list[dict[str, Any]]:
        """Poll the events until `predicate(events)` is true; AssertionError after `wait_s`."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            await asyncio.sleep(0.3)
        tail = "\n".join(json.dumps(e) for e in self.events()[-40:])
        raise AssertionError(f"timed out after {wait_s:g}s waiting for {what}; last events:\n"
                             f"{tail}")
