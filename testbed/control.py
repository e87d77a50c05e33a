"""Client side of a testbed: start the daemon (`up`), talk to its admin API, tear it down.

`up(config)` spawns `python -m testbed.daemon --dir D` detached, waits for D/state.json to say
ready and returns a `TestbedHandle`. `down(D)` asks the daemon to stop, falls back to killing the
recorded pids, kills whatever still runs under D, unmounts, removes D and verifies that nothing is
left (returns what was left, empty when clean).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import procs
from testbed.config import (
    ADMIN_SOCKET,
    CONFIG_FILE,
    DAEMON_LOG,
    ENV_FILE,
    ConfigError,
    TestbedConfig,
    read_state,
)


class TestbedError(RuntimeError):
    """The testbed could not start or an admin call failed."""

    __test__ = False


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def admin_call(
    directory: str | Path, method: str, path: str, body: Any = None, wait_s: float = 120.0
) -> Any:
    """One admin API call (blocking); raises TestbedError with the daemon's message."""
    conn = _UnixHTTPConnection(str(Path(directory) / ADMIN_SOCKET), wait_s)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if payload else {}
        conn.request(method, f"/_testbed/{path.lstrip('/')}", body=payload, headers=headers)
        resp = conn.getresponse()
        data = json.loads(resp.read() or b"null")
    except OSError as exc:
        raise TestbedError(f"admin API of {directory} unreachable: {exc}") from exc
    finally:
        conn.close()
    if resp.status >= 400:
        raise TestbedError(data.get("error", str(data)) if isinstance(data, dict) else str(data))
    return data


@dataclass
class TestbedHandle:
    """A running testbed: its dir, env (for subprocesses) and admin helpers."""

    __test__ = False

    dir: Path
    env: dict[str, str]
    daemon_pid: int
    up_seconds: float = 0.0

    @property
    def env_file(self) -> Path:
        """D/testbed.env."""
        return self.dir / ENV_FILE

    @property
    def manager_hosts(self) -> dict[str, str]:
        """Hostname (lower-case) -> DOCKER_HOST of every manager."""
        return {
            k.removeprefix("DOCKER_HOST_").lower().replace("_", "-"): v
            for k, v in self.env.items()
            if k.startswith("DOCKER_HOST_")
        }

    def subprocess_env(self) -> dict[str, str]:
        """os.environ plus the testbed's variables, with this interpreter's bin dir first on
        PATH (so `swarm-upgrade` and `swarm-testbed` of this install are found even when the
        venv is not activated): pass as env= to a controller subprocess."""
        bindir = str(Path(sys.executable).parent)
        path = os.environ.get("PATH", os.defpath)
        if bindir not in path.split(os.pathsep):
            path = bindir + os.pathsep + path
        return {**os.environ, **self.env, "PATH": path}

    def status(self) -> dict[str, Any]:
        """Instances and swarm nodes."""
        result: dict[str, Any] = admin_call(self.dir, "GET", "status")
        return result

    def fault(self, fault: str, instance: str, version: str | None = None) -> dict[str, Any]:
        """A node fault/operation on the instance with computer name `instance`."""
        body: dict[str, Any] = {"fault": fault, "instance": instance}
        if version:
            body["version"] = version
        result: dict[str, Any] = admin_call(self.dir, "POST", "fault", body)
        return result

    async def astatus(self) -> dict[str, Any]:
        """`status` without blocking the event loop."""
        return await asyncio.to_thread(self.status)

    async def afault(self, fault: str, instance: str, version: str | None = None) -> dict[str, Any]:
        """`fault` without blocking the event loop (a referee may be sampling in it)."""
        return await asyncio.to_thread(self.fault, fault, instance, version)

    def arm_fault(self, name: str, **args: Any) -> None:
        """Call `name(**args)` on the ARM server's fault API."""
        admin_call(self.dir, "POST", "arm-fault", {"name": name, "args": args})

    def arm_role(self, actions: list[str] | None) -> None:
        """Make the ARM endpoint enforce a role with `actions` (None: allow everything)."""
        admin_call(self.dir, "POST", "arm-role", {"actions": actions})

    def arm_requests(self) -> list[dict[str, Any]]:
        """The ARM request log."""
        result: list[dict[str, Any]] = admin_call(self.dir, "GET", "arm-requests")
        return result

    def arm_operations(self) -> list[dict[str, Any]]:
        """The ARM endpoint's long-running operations (status, startTime, endTime, targets)."""
        result: list[dict[str, Any]] = admin_call(self.dir, "GET", "arm-operations")
        return result

    def create_service(self, name: str = "sample", replicas: int = 4) -> str:
        """A busybox `sleep` service; returns its id."""
        return str(
            admin_call(self.dir, "POST", "service", {"name": name, "replicas": replicas})["id"]
        )

    def down(self) -> list[str]:
        """Tear the testbed down; returns leftovers (empty when clean)."""
        return down(self.dir)


def up(config: TestbedConfig, wait_s: float = 90.0) -> TestbedHandle:
    """Start a testbed daemon for `config` and wait until it is ready."""
    config.validate()
    directory = Path(config.dir).resolve()
    if directory.exists() and any(directory.iterdir()) and not is_testbed_dir(directory):
        raise ConfigError(f"dir: {directory} is not empty and not a testbed directory")
    previous = read_state(directory)
    if previous.get("pid") and procs.cmdline_names(int(previous["pid"]), str(directory)):
        raise ConfigError(f"dir: a testbed already runs in {directory} (swarm-testbed down first)")
    if (directory / "n").exists():  # the remains of a testbed that died: clean them up first
        down(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.dir = str(directory)
    config.save()
    (directory / "state.json").unlink(missing_ok=True)
    with open(directory / DAEMON_LOG, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "testbed.daemon", "--dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    started = time.monotonic()
    deadline = started + wait_s
    while time.monotonic() < deadline:
        state = read_state(directory)
        if state.get("ready"):
            took = time.monotonic() - started
            return TestbedHandle(directory, dict(state["env"]), proc.pid, took)
        if state.get("error") or proc.poll() is not None:
            proc.wait(5)
            left = down(directory)
            raise TestbedError(f"testbed failed to start: {state.get('error')} {left or ''}")
        time.sleep(0.05)
    down(directory)
    raise TestbedError(f"testbed not ready after {wait_s}s (log: {directory / DAEMON_LOG})")


def attach(directory: str | Path) -> TestbedHandle:
    """A handle on the testbed already running in `directory`."""
    state = read_state(directory)
    if not state.get("ready"):
        raise TestbedError(f"no running testbed in {directory}")
    return TestbedHandle(Path(directory).resolve(), dict(state["env"]), int(state["pid"]))


def down(directory: str | Path, wait_s: float = 15.0) -> list[str]:
    """Stop the testbed in `directory`, remove everything; return leftovers (empty = clean)."""
    directory = Path(directory).resolve()
    if not directory.exists():
        return []
    if not is_testbed_dir(directory):
        raise ConfigError(f"dir: {directory} is not a testbed directory (no {CONFIG_FILE})")
    state = read_state(directory)
    daemon = [int(state["pid"])] if state.get("pid") else []
    daemon = [p for p in daemon if procs.cmdline_names(p, str(directory))]
    recorded = [int(p) for p in state.get("pids", [])]
    if daemon:
        try:
            admin_call(directory, "POST", "stop", wait_s=3)
        except TestbedError:
            procs.kill_all(daemon, signal.SIGTERM)
        if procs.wait_gone(daemon, wait_s):
            procs.kill_all(daemon)
            procs.wait_gone(daemon, 2)
    # In parallel: every recorded dockerd still ours and anything else under D/n, all at once.
    nodes = directory / "n"
    procs.kill_all([p for p in recorded if procs.cmdline_names(p, str(nodes))])
    procs.remove_tree(directory, scope=nodes)
    return leftovers(directory, daemon + recorded)


def is_testbed_dir(directory: Path) -> bool:
    """True if `directory` was made by `up` (so `down` may delete it)."""
    return (directory / CONFIG_FILE).is_file()


def leftovers(directory: Path, recorded: list[int]) -> list[str]:
    """What a torn-down testbed left: its processes, mounts, the dir itself."""
    left = [f"process {p} (recorded)" for p in recorded if procs.cmdline_names(p, str(directory))]
    left += [f"process {p} (under dir)" for p in procs.processes_under(directory / "n")]
    left += [f"mount {m}" for m in procs.mounts_under(directory)]
    if directory.exists():
        left.append(f"dir {directory}")
    return left
