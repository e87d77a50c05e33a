"""One testbed node: a real dockerd in its own UTS namespace, with its own dirs and socket.

A node is what one scale-set instance's disk and OS would be: `start` boots dockerd on the node's
data-root (same root = same swarm node id), `stop` shuts it down (SIGTERM, then SIGKILL, then
the containerd shims it leaves; it drops containerd's stale pidfile), `crash` is `kill -9` of
dockerd alone (the shims and containers keep running, as on a real crash; the next start on the
same data-root cleans them up), and `wipe` unmounts and deletes the disk.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

from testbed import procs
from testbed.dockerapi import DockerAPI

BUSYBOX_REPO = "local/busybox"
BUSYBOX_TAG = "latest"
BUSYBOX_IMAGE = f"{BUSYBOX_REPO}:{BUSYBOX_TAG}"
_BUSYBOX_APPLETS = ("sh", "sleep", "echo", "cat", "ls", "true", "false", "hostname", "env", "wget")
_rootfs_cache: dict[str, bytes] = {}


class NodeError(Exception):
    """A node failed to start or stop."""


def busybox_rootfs_tar(without: tuple[str, ...] = ()) -> bytes:
    """A minimal rootfs (busybox-static + symlinks, minus the applets `without`) as an
    uncompressed tar, built once."""
    binary = shutil.which("busybox") or "/bin/busybox"
    key = binary + "|" + ",".join(without)
    if key in _rootfs_cache:
        return _rootfs_cache[key]
    if not Path(binary).exists():
        raise NodeError("busybox not found: apt-get install busybox-static")
    buf = BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(binary, arcname="bin/busybox")
        for applet in (a for a in _BUSYBOX_APPLETS if a not in without):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    _rootfs_cache[key] = buf.getvalue()
    return _rootfs_cache[key]


class DockerNode:
    """A dockerd process rooted at `root`, hostname `hostname`, swarm address `addr`."""

    def __init__(self, hostname: str, root: Path, addr: str, log_path: Path) -> None:
        self.hostname = hostname
        self.root = root
        self.addr = addr
        self.log_path = log_path
        self.data_root = root / "data"
        self.exec_root = root / "x"
        self.socket = root / "docker.sock"
        self.pidfile = root / "dockerd.pid"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = DockerAPI(str(self.socket))
        if len(str(self.exec_root / "containerd" / "containerd.sock.ttrpc")) > 100:
            raise NodeError(f"node dir too long for unix sockets: {root}")

    @property
    def docker_host(self) -> str:
        """The DOCKER_HOST value that reaches this node."""
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        """Pid of the running dockerd, or None."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return None

    def running(self) -> bool:
        """True while dockerd is alive."""
        return self.pid is not None

    def command(self, labels: dict[str, str]) -> list[str]:
        """The full command line: unshare a UTS namespace, set the hostname, exec dockerd."""
        args = [
            "dockerd",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--host=unix://{self.socket}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--bridge=none",
            "--storage-driver=vfs",
            "--shutdown-timeout=2",
            "--log-level=warn",
        ]
        args += [f"--label={k}={v}" for k, v in sorted(labels.items())]
        script = 'hostname "$0" && exec "$@"'
        return ["unshare", "--uts", "sh", "-c", script, self.hostname, *args]

    def _spawn(self, labels: dict[str, str]) -> None:
        """Fork dockerd (in its own session, so a terminal's ^C does not reach it)."""
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, DOCKER_SERVICE_PREFER_OFFLINE_IMAGE="1")
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} {labels}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(labels),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )

    async def start(self, labels: dict[str, str], wait_s: float = 20.0) -> None:
        """Start dockerd with engine `labels` and wait until it answers on its socket."""
        if self.running():
            raise NodeError(f"{self.hostname}: already running")
        self._spawn(labels)
        await self.wait_ready(wait_s)

    async def wait_ready(self, wait_s: float) -> None:
        """Wait until /_ping answers; raise NodeError (with the log tail) if dockerd dies."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not self.running():
                raise NodeError(f"{self.hostname}: dockerd exited: {self.log_tail()}")
            if self.socket.exists() and await self.api.ping(wait_s=1.0):
                return
            await asyncio.sleep(0.05)
        raise NodeError(f"{self.hostname}: dockerd not ready after {wait_s}s")

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of this node's dockerd log."""
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def load_image(self, tags: Sequence[str] = (), broken: Sequence[str] = ()) -> None:
        """`docker import` the busybox rootfs as local/busybox:latest and as every `tags`
        (`repo:tag`), and the rootfs without `sleep` as every `broken` tag."""
        await self.api.import_image(busybox_rootfs_tar(), BUSYBOX_REPO, BUSYBOX_TAG)
        for ref in tags:
            repo, _, tag = ref.rpartition(":")
            await self.api.import_image(busybox_rootfs_tar(), repo, tag)
        for ref in broken:
            repo, _, tag = ref.rpartition(":")
            await self.api.import_image(busybox_rootfs_tar(("sleep",)), repo, tag)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM dockerd, SIGKILL after `grace` s, then kill leftover shims and containers and
        drop containerd's pidfile."""
        await self.api.close()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        await asyncio.to_thread(procs.kill_under, self.root)
        # Nothing of this node runs now, so containerd's pidfile is stale (a VM's reboot empties
        # /run). Left in place after a `crash`, it names a zombie until init reaps it; dockerd
        # takes that for a running containerd (kill(pid, 0) succeeds on a zombie), waits 15 s
        # and exits: "timeout waiting for containerd to start".
        (self.exec_root / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def crash(self) -> None:
        """kill -9 dockerd only (its containerd dies with it; shims and containers survive)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def kill_now(self) -> None:
        """SIGKILL dockerd without waiting (fast teardown; follow with `procs.remove_tree`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    async def wipe(self) -> None:
        """Delete the node's disk (must be stopped): kill leftovers, unmount, remove the dir."""
        if self.running():
            raise NodeError(f"{self.hostname}: wipe while running")
        await self.api.close()
        await asyncio.to_thread(procs.remove_tree, self.root)
        if self.root.exists():
            raise NodeError(f"{self.hostname}: could not remove {self.root}")
