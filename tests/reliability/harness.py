"""The campaign's machinery: a testbed reused for a chain of rollouts, and one run on it.

`Bed` owns a testbed (3 managers + 2 workers by default, a 4-replica `sample` service) and the
release it runs; every rollout moves it to the catalog's next release of its channel, so one
testbed serves up to eight runs (stable: 17.03.0 → … → 17.12.0). `Run` drives one rollout the
way an operator does: three controller replicas supervised like a global manager-only service
(tests/e2e/replicas.py), the referee sampling every manager, a declaration file the test edits.
`Run.finish()` collects the referee report, the events and the ARM log window for the judges
(tests/reliability/invariants.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.catalog import load_catalog
from testbed.config import TestbedConfig
from testbed.control import TestbedHandle, down, up
from testbed.fixtures import make_testbed_config
from testbed.probe import docker_get
from testbed.referee import Referee
from tests.e2e.replicas import Replica, Replicas

# The replicas are `swarm-upgrade` processes: the one installed next to this Python (the venv's),
# also when pytest or the campaign runs without the venv on PATH.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

CHANNEL = "stable"
FIRST = "17.03.0-ce-azure1"
SERVICE = "sample"
STATE_NAME = "swarm-upgrade-state"
REPLICA_ARGS = ["--metrics-port", "-1", "--lease-duration", "3", "--resync", "5",
                "--polling-interval", "0.2", "--swarm-timeout", "5"]


def declaration(version: str, *, drain: str = "2m", ready: str = "3m", extra: str = "") -> str:
    """A SwarmUpgrade declaration for `version` of the stable channel."""
    return ("apiVersion: swarm-upgrade.io/v1alpha1\nkind: SwarmUpgrade\nmetadata:\n"
            f"  name: reliability\nspec:\n  channel: {CHANNEL}\n  version: {version}\n"
            f"  strategy:\n    drainTimeout: {drain}\n    nodeReadyTimeout: {ready}\n" + extra)


def short(version: str) -> str:
    """17.06.1-ce-azure1 -> 17.06.1 (the image version the engine labels carry)."""
    return version.split("-", 1)[0]


class Bed:
    """A running testbed and the release its nodes run."""

    def __init__(self, handle: TestbedHandle, version: str) -> None:
        self.handle = handle
        self.version = version
        self.catalog = load_catalog(None)
        self.broken = False  # a run left it in a state the next run cannot start from

    @classmethod
    def start(cls, version: str = FIRST, **options: Any) -> Bed:
        options.setdefault("reimage_seconds", 0.5)
        config: TestbedConfig = make_testbed_config(channel=CHANNEL, version=version, **options)
        handle = up(config, wait_s=180)
        bed = cls(handle, version)
        handle.create_service(SERVICE, 4)
        return bed

    def next_version(self) -> str | None:
        release = self.catalog.next_release(CHANNEL, self.version)
        return release.version if release is not None else None

    @property
    def usable(self) -> bool:
        return not self.broken and self.next_version() is not None

    def close(self) -> list[str]:
        return down(self.handle.dir)

    @property
    def managers(self) -> dict[str, str]:
        return self.handle.manager_hosts

    def any_manager(self) -> str:
        return next(iter(self.managers.values()))

    async def progress(self) -> dict[str, Any]:
        """The progress record in the swarm's raft store ({} if none / unreadable)."""
        for host in self.managers.values():
            try:
                configs = await docker_get(
                    host, f'/configs?filters={{"name":["{STATE_NAME}"]}}', wait_s=2)
            except Exception:
                continue
            for config in configs:
                labels = (config.get("Spec") or {}).get("Labels") or {}
                raw = labels.get("swarm-upgrade.progress")
                return dict(json.loads(raw)) if raw else {}
        return {}

    async def nodes(self) -> list[dict[str, Any]]:
        status = await self.handle.astatus()
        return list(status["nodes"])


@dataclass
class Run:
    """One rollout on a Bed, watched by the referee, driven by three replicas."""

    bed: Bed
    dir: Path
    args: list[str] = field(default_factory=list)
    source_args: list[str] | None = None
    started: float = 0.0
    replicas: Replicas | None = None
    referee: Referee | None = None
    desired: Path | None = None
    windows: list[Any] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    async def start(self, text: str | None = None) -> None:
        """Replicas up on a declaration of what runs now (nothing to do), referee on."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.desired = self.dir / "desired.yaml"
        self.desired.write_text(text or declaration(self.bed.version))
        env = {k: v for k, v in os.environ.items() if k not in self.bed.handle.env}
        source = self.source_args if self.source_args is not None else [
            "--desired-file", str(self.desired)]
        self.replicas = Replicas(self.bed.managers, env, [
            "--env-file", str(self.bed.handle.env_file), *source, *REPLICA_ARGS, *self.args,
        ], self.dir)
        self.referee = Referee(self.bed.managers)
        self.started = time.time()
        await self.referee.start()
        self.replicas.start()

    def declare(self, text: str) -> None:
        assert self.desired is not None
        tmp = self.desired.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.desired)

    def events(self) -> list[dict[str, Any]]:
        assert self.replicas is not None
        return self.replicas.events()

    async def wait_for(self, predicate: Any, wait_s: float, what: str) -> list[dict[str, Any]]:
        assert self.replicas is not None
        return await self.replicas.wait_for(predicate, wait_s, what)

    async def wait_reason(self, reason: str, wait_s: float, obj: str | None = None,
                          after: float = 0.0) -> dict[str, Any]:
        """The first event with `reason` (and `object`) later than `after` (epoch)."""
        from tests.reliability.invariants import epoch

        def found(events: list[dict[str, Any]]) -> bool:
            return any(e.get("reason") == reason and (obj is None or e.get("object") == obj)
                       and epoch(e["time"]) >= after for e in events if e.get("time"))

        events = await self.wait_for(found, wait_s, f"{reason} {obj or ''}")
        return next(e for e in events if e.get("reason") == reason
                    and (obj is None or e.get("object") == obj) and e.get("time")
                    and epoch(e["time"]) >= after)

    def running(self, label: str) -> Replica | None:
        """The running replica `<host>-g<generation>`, if that generation still runs."""
        assert self.replicas is not None
        host = label.rsplit("-g", 1)[0]
        replica = self.replicas.running.get(host)
        if replica is None or f"{host}-g{replica.generation}" != label:
            return None
        return replica if replica.proc.poll() is None else None

    def kill9(self, host: str) -> None:
        assert self.replicas is not None
        self.replicas.kill9(host)

    async def finish(self) -> dict[str, Any]:
        """Stop replicas and referee; returns the referee report."""
        if self.replicas is not None:
            await asyncio.to_thread(self.replicas.stop)
        if self.referee is not None:
            await self.referee.stop()
            self.report = self.referee.report()
            (self.dir / "referee.json").write_text(json.dumps(self.report, indent=1))
        return self.report

    def arm_log(self) -> list[dict[str, Any]]:
        return [e for e in self.bed.handle.arm_requests() if e["time"] >= self.started - 1]


def holder(events: list[dict[str, Any]]) -> str:
    """The replica label (`host-gN`) that acquired the lease last and has not given it up."""
    last = ""
    for e in events:
        if e.get("reason") == "LeaseAcquired":
            last = str(e.get("replica", ""))
        elif e.get("reason") in ("LeaseHandedOver", "LeaseLost") and e.get("replica") == last:
            last = ""
    return last


async def settle_status(bed: Bed, target: str, wait_s: float = 60) -> list[str]:
    """What is wrong with the swarm after a rollout to `target` (empty when all is well)."""
    deadline = time.monotonic() + wait_s
    problems: list[str] = ["never checked"]
    while time.monotonic() < deadline:
        status = await bed.handle.astatus()
        problems = []
        versions = sorted(i["image"]["version"] for i in status["instances"])
        if any(v != short(target) for v in versions):
            problems.append(f"instance images {versions}")
        nodes = status["nodes"]
        if len(nodes) != len(status["instances"]):
            problems.append(f"{len(nodes)} node entries for {len(status['instances'])} "
                            f"instances")
        for n in nodes:
            if n["state"] != "ready" or n["availability"] != "active" \
                    or n["version"] != short(target):
                problems.append(f"{n['hostname']} {n['state']}/{n['availability']}/"
                                f"{n['version']}")
        roles = sorted(str(n["role"]) for n in nodes)
        wanted = sorted(str(i["role"]) for i in status["instances"])
        if roles != wanted:
            problems.append(f"roles {roles}, scale-set roles {wanted}")
        if not problems:
            return []
        await asyncio.sleep(2)
    return problems
