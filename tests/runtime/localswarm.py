"""A tiny real swarm for the runtime's own tests: 1–3 dockerd manager processes on loopback.

Temporary stand-in until the testbed fixtures land: each dockerd gets its own dirs, its own UTS
namespace (hostname) and an address in 127.77.x.y; `stop()` kills only the processes it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from socket import AF_UNIX, SOCK_STREAM, socket
from typing import Any


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket(AF_UNIX, SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def api(sock: str, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
    """One synchronous Docker API call over a unix socket; raises on HTTP >= 400."""
    conn = _UnixConnection(sock, timeout)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    if resp.status >= 400:
        raise RuntimeError(f"{method} {path}: {resp.status} {raw.decode(errors='replace')}")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies (a killed pytest leaves no dockerd)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Daemon:
    hostname: str
    ip: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> str:
        return str(self.root / "sock")

    @property
    def docker_host(self) -> str:
        return f"unix://{self.sock}"


@dataclass
class LocalSwarm:
    base: Path
    daemons: list[Daemon] = field(default_factory=list)

    def start_daemon(self, d: Daemon) -> None:
        for sub in ("data", "exec"):
            (d.root / sub).mkdir(parents=True, exist_ok=True)
        cmd = (
            f"hostname {d.hostname}; exec dockerd --data-root {d.root}/data"
            f" --exec-root {d.root}/exec"
            f" --pidfile {d.root}/pid -H unix://{d.sock} --iptables=false --ip6tables=false"
            f" --bridge=none --storage-driver=vfs"
        )
        env = dict(os.environ, DOCKER_SERVICE_PREFER_OFFLINE_IMAGE="1")
        log = open(d.root / "log", "ab")
        d.proc = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", cmd], stdout=log, stderr=log, env=env,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, RuntimeError):
                api(d.sock, "GET", "/_ping", timeout=2)
                return
            time.sleep(0.05)
        tail = (d.root / "log").read_text()[-2000:]
        raise RuntimeError(f"dockerd {d.hostname} did not start: {tail}")

    def stop_daemon(self, d: Daemon, sig: int = signal.SIGTERM) -> None:
        if d.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(d.proc.pid, sig)
        try:
            d.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait(timeout=10)
        d.proc = None

    def stop(self) -> None:
        for d in self.daemons:
            if d.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(d.proc.pid, signal.SIGTERM)
        for d in self.daemons:
            self.stop_daemon(d)
        subprocess.run(
            f"grep ' {self.base}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l",
            shell=True, check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def start_swarm(managers: int, subnet: int) -> LocalSwarm:
    """Start `managers` dockerd processes (127.77.<subnet>.1x) joined as managers of one swarm."""
    base = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    swarm = LocalSwarm(base)
    try:
        for i in range(managers):
            d = Daemon(f"rt-manager{i:06d}", f"127.77.{subnet}.{11 + i}", base / f"m{i}")
            swarm.daemons.append(d)
            swarm.start_daemon(d)
        first = swarm.daemons[0]
        api(first.sock, "POST", "/swarm/init", {
            "ListenAddr": f"{first.ip}:2377", "AdvertiseAddr": f"{first.ip}:2377",
            "Spec": {"Dispatcher": {"HeartbeatPeriod": 1_000_000_000}},
        })
        token = api(first.sock, "GET", "/swarm")["JoinTokens"]["Manager"]
        for d in swarm.daemons[1:]:
            api(d.sock, "POST", "/swarm/join", {
                "ListenAddr": f"{d.ip}:2377", "AdvertiseAddr": f"{d.ip}:2377",
                "RemoteAddrs": [f"{first.ip}:2377"], "JoinToken": token,
            })
    except BaseException:
        swarm.stop()
        raise
    return swarm


__all__ = ["Daemon", "LocalSwarm", "api", "start_swarm"]
