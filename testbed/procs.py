"""Finding, killing and unmounting what a testbed left on the machine, scoped to one directory.

Everything a testbed node starts (dockerd, its managed containerd, containerd shims and the
container processes below them) either names the node's directory on its command line or
descends from a process that does. Mounts (the data-root bind mount, network namespaces) live
under that directory. These helpers never touch anything outside the directory they are given.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import time
from pathlib import Path

_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _read_proc(pid: int) -> tuple[str, int] | None:
    """(cmdline with spaces, ppid) of `pid`, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # ppid is the 2nd field after the parenthesised command name (which may contain spaces).
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    return raw.replace(b"\0", b" ").decode(errors="replace"), ppid


def processes_under(directory: str | Path) -> list[int]:
    """Pids of every process whose command line names `directory`, and all their descendants."""
    marker = str(Path(directory).resolve()).rstrip("/") + "/"
    table: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _read_proc(int(entry))
            if info is not None:
                table[int(entry)] = info
    me = os.getpid()
    roots = {pid for pid, (cmd, _) in table.items() if marker in cmd + " " and pid != me}
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, (_, ppid) in table.items():
            if ppid in found and pid not in found and pid != me:
                found.add(pid)
                changed = True
    return sorted(found)


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is our child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kill_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    """Send `sig` to each pid, ignoring the ones already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until no pid is alive (reaping our children); return the survivors."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while True:
        for pid in alive:
            reap(pid)
        alive = [p for p in alive if pid_alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def kill_under(directory: str | Path, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process belonging to `directory` (repeatedly, to catch late forks).

    Returns the pids that still survive after `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        pids = processes_under(directory)
        if not pids:
            return []
        kill_all(pids)
        left = wait_gone(pids, max(0.0, min(1.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            return left + [p for p in processes_under(directory) if p not in left]


def mounts_under(directory: str | Path) -> list[str]:
    """Mount points at or below `directory` in this mount namespace, deepest first."""
    base = str(Path(directory).resolve()).rstrip("/")
    points: list[str] = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == base or point.startswith(base + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_under(directory: str | Path) -> list[str]:
    """Lazily unmount everything under `directory`; return what could not be unmounted."""
    failed: list[str] = []
    for _ in range(5):  # stacked mounts need several passes
        points = mounts_under(directory)
        if not points:
            return []
        failed = []
        for point in points:
            if _libc.umount2(point.encode(), _MNT_DETACH) != 0:
                failed.append(point)
    return failed


def cmdline_names(pid: int, text: str) -> bool:
    """True if `pid` is alive and its command line contains `text` (guards against pid reuse)."""
    info = _read_proc(pid)
    return info is not None and text in info[0] and pid_alive(pid)


def remove_tree(directory: str | Path, scope: str | Path | None = None) -> None:
    """Kill what runs under `scope` (default: `directory`), unmount `directory`, delete it."""
    kill_under(scope or directory)
    unmount_under(directory)
    shutil.rmtree(directory, ignore_errors=True)
    if Path(directory).exists():  # a mount that appeared late, retry once
        unmount_under(directory)
        shutil.rmtree(directory, ignore_errors=True)
