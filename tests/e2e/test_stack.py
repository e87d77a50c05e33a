"""The shipped stack, end to end: the controller image built offline (once per pytest run), every
manager of a 3 + 2 testbed loading it at each boot (as a reimaged Docker for Azure VM pulls it),
`docker stack deploy` of manifests/stack.yml + stack.sp-secret.yml + stack.testbed.yml, then the
operator's `swarm-upgrade set-version` to the next release and the reconcile events read from
`docker service logs` until RolloutSucceeded — with the referee watching and a 4-replica sample
service running. Swarm itself must start a new controller task on every reimaged manager.

`docker service logs` only reaches the logs still on a live node: a reimage wipes the node's
disk with its containers' logs. So the whole story, for judging, is also streamed from each
controller container as it appears (`docker logs -f` on its own node's socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testbed.control import TestbedHandle
from testbed.dockerapi import DockerAPIError
from testbed.fixtures import ControllerImage
from testbed.probe import docker_get, wait_for
from testbed.referee import Referee
from tests.e2e.common import assert_self_last, declaration
from tests.reliability import invariants
from tests.reliability.invariants import reasons

pytestmark = pytest.mark.image_build

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
STACK = "su"
SERVICE = f"{STACK}_controller"
CURRENT, TARGET = "17.06.0-ce-azure1", "17.06.1-ce-azure1"
ROLLOUT_TIMEOUT = 360  # seconds; ≈2 min on an idle 2-core machine
HALTS = ("ControllerHalted", "NodeTimeout", "NodeLost")


@pytest.fixture(scope="module")
def testbed_options(controller_image: ControllerImage) -> dict[str, Any]:
    """3 managers + 2 workers; every manager boot (and reimage) loads the controller image."""
    return {"managers": 3, "workers": 2, "reimage_seconds": 0.5,
            "image_archives": {"manager": [str(controller_image.archive)]}}


def docker(host: str, *args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The docker CLI against `host` (unix://...); never raises on a non-zero exit."""
    return subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def parse_events(text: str) -> list[dict[str, Any]]:
    """The JSON reconcile events among log lines (other lines are library noise)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("reason"):
                    events.append(event)
    return events


class ContainerLogs:
    """Streams the output of every container of `service` on every manager, each into its own
    file, from the moment it is seen until its node's dockerd goes away (a reimage)."""

    def __init__(self, hosts: dict[str, str], service: str, directory: Path) -> None:
        self.hosts, self.service, self.directory = hosts, service, directory
        self.followers: dict[str, asyncio.subprocess.Process] = {}
        self.complete: set[str] = set()  # stopped containers whose whole log was read
        self.runs: dict[str, int] = {}
        self.where: dict[str, tuple[str, str]] = {}  # container -> (node hostname, host)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        label = json.dumps({"label": [f"com.docker.swarm.service.name={self.service}"]})
        while True:
            for name, host in self.hosts.items():
                with contextlib.suppress(DockerAPIError):
                    for c in await docker_get(host, f"/containers/json?all=1&filters={label}", 3):
                        await self._keep(name, host, c["Id"], c["State"] == "running")
            await asyncio.sleep(0.5)

    async def _keep(self, name: str, host: str, container: str, running: bool) -> None:
        """Follow a new container; a follower that ended while its container still exists (a
        dropped stream on a loaded dockerd, or the container stopped) is run again — `docker
        logs` prints the whole log from the start, so the file ends up complete."""
        proc = self.followers.get(container)
        if proc is None or (proc.returncode is not None and container not in self.complete):
            if not running and proc is not None:
                self.complete.add(container)  # this last run reads the stopped container's log
            await self._follow(name, host, container)

    async def _follow(self, name: str, host: str, container: str) -> None:
        with self._file(name, host, container).open("wb") as out:
            self.followers[container] = await asyncio.create_subprocess_exec(
                "docker", "-H", host, "logs", "-f", container,
                stdout=out, stderr=subprocess.STDOUT)

    def _file(self, name: str, host: str, container: str) -> Path:
        """A new file per read of a container's log (a read against a node that went away
        meanwhile writes nothing, and must not truncate what an earlier read got)."""
        self.where[container] = (name, host)
        runs = self.runs[container] = self.runs.get(container, -1) + 1
        return self.directory / f"{name}-{container[:12]}.{runs}.log"

    def reread(self) -> None:
        """Read the whole log of every container seen, where its node still answers (blocking:
        run it in a thread). A follower may lag or stall on a loaded dockerd."""
        for container, (name, host) in list(self.where.items()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                out = docker(host, "logs", container, timeout=30)
                if out.returncode == 0:
                    self._file(name, host, container).write_text(out.stdout + out.stderr)

    def events(self) -> list[dict[str, Any]]:
        """Every replica's events, in time order."""
        events: dict[tuple[str, ...], dict[str, Any]] = {}
        for path in self.directory.glob("*.log"):
            for event in parse_events(path.read_text(errors="replace")):
                event["replica"] = path.stem.rsplit(".", 1)[0]  # <hostname>-<container id>
                key = tuple(str(event.get(k)) for k in ("time", "reason", "object", "message",
                                                        "replica"))
                events[key] = event  # the same line read by two runs of a follower
        return sorted(events.values(), key=lambda e: str(e["time"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for proc in self.followers.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.followers.values():
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def until(check: Callable[[], Any], limit: float, what: str,
                logs: ContainerLogs, interval: float = 1.0) -> Any:
    """Polls `check` (sync, run in a thread) until truthy, for at most `limit` seconds; fails
    early on a halt event."""
    deadline = time.monotonic() + limit
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        halted = [e for e in logs.events() if e["reason"] in HALTS]
        assert not halted, f"the rollout halted waiting for {what}: {halted}"
        assert time.monotonic() < deadline, f"no {what} in {limit} s: {logs.events()[-15:]}"
        await asyncio.sleep(interval)


def stamp(text: str) -> float:
    """A Docker API time (nanoseconds, Z) as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


async def test_stack_deploy_then_set_version_upgrades_the_testbed(
    testbed: TestbedHandle, controller_image: ControllerImage, tmp_path: Path
) -> None:
    hosts = testbed.manager_hosts
    manager = hosts["swarm-manager000000"]
    env = testbed.subprocess_env()
    testbed.create_service("sample", 4)

    async def sample_running() -> bool:
        tasks = await docker_get(manager, '/tasks?filters={"service":["sample"]}')
        return sum(t["Status"]["State"] == "running" for t in tasks) == 4

    await wait_for(sample_running, 90)
    before = {n["Description"]["Hostname"]: n["ID"]
              for n in await docker_get(manager, "/nodes") if n["Spec"]["Role"] == "manager"}

    # The stack, as manifests/stack.testbed.yml documents it: the declaration in force (nothing
    # to do yet), the service principal's secret as a Docker secret, the testbed's env.
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("stable", CURRENT))
    secret = tmp_path / "secret"
    secret.write_text(testbed.env["AZURE_CLIENT_SECRET"])
    created = docker(manager, "secret", "create", "swarm-upgrade-azure-client-secret", str(secret))
    assert created.returncode == 0, created.stderr
    deploy_env = {**env, "DOCKER_HOST": manager, "SWARM_UPGRADE_IMAGE": controller_image.tag,
                  "SWARM_UPGRADE_DESIRED": str(desired), "SWARM_UPGRADE_RESYNC": "5s",
                  "SWARM_UPGRADE_LEASE_DURATION": "10s"}
    del deploy_env["AZURE_CLIENT_SECRET"]  # it reaches the replicas only through the secret
    argv = ["stack", "deploy", "--resolve-image", "never"]
    for name in ("stack.yml", "stack.sp-secret.yml", "stack.testbed.yml"):
        argv += ["-c", str(MANIFESTS / name)]
    deployed = await asyncio.to_thread(docker, manager, *argv, STACK, env=deploy_env)
    assert deployed.returncode == 0, deployed.stderr

    logs = ContainerLogs(hosts, SERVICE, tmp_path)
    referee = Referee(hosts)
    logs.start()
    await referee.start()
    started = time.monotonic()
    try:
        # One replica per manager, the lease holder saying the swarm is where it should be.
        await until(lambda: reasons(logs.events(), "UpToDate"), 180, "UpToDate", logs)
        print(f"\n[stack up, UpToDate after {time.monotonic() - started:.0f} s]")

        proc = await asyncio.to_thread(
            subprocess.run, ["swarm-upgrade", "set-version", TARGET],
            env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Published swarm-upgrade-desired-" in proc.stdout + proc.stderr

        def service_logs_succeeded() -> bool:
            # The operator's view, through any manager that answers (all are reimaged in turn).
            for host in hosts.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    out = docker(host, "service", "logs", "--raw", SERVICE, timeout=30)
                    if out.returncode == 0:
                        return bool(reasons(parse_events(out.stdout), "RolloutSucceeded"))
            return False

        rollout = time.monotonic()
        await until(service_logs_succeeded, ROLLOUT_TIMEOUT, "RolloutSucceeded in service logs",
                    logs, interval=3)
        print(f"[rollout: RolloutSucceeded after {time.monotonic() - rollout:.0f} s]")
        # The followed container logs may lag behind `docker service logs` on a loaded machine:
        # stopping them now could cut the last lines (the last node's NodeUpgraded); read the
        # whole log of every container still reachable too.
        def followed_succeeded() -> bool:
            if reasons(logs.events(), "RolloutSucceeded"):
                return True
            logs.reread()
            return bool(reasons(logs.events(), "RolloutSucceeded"))

        await until(followed_succeeded, 90, "RolloutSucceeded in the controller containers' logs",
                    logs, interval=2)
        await asyncio.to_thread(logs.reread)  # the last lines of every replica still reachable
    finally:
        await referee.stop()
        await logs.stop()
        report = referee.report()
        (tmp_path / "referee.json").write_text(json.dumps(report, indent=2))
        print("referee:", json.dumps({k: report[k] for k in
                                      ("maxManagersOut", "leaderless", "services")}))
    events = logs.events()

    # Every instance on the target, every node entry the new one, reimaged exactly once each.
    status = testbed.status()
    version = TARGET.split("-")[0]
    assert sorted(i["image"]["version"] for i in status["instances"]) == [version] * 5
    nodes = status["nodes"]
    assert len(nodes) == 5 and all(n["state"] == "ready" and n["version"] == version
                                   for n in nodes), nodes
    reimaged = invariants.reimages(testbed.arm_requests())
    assert len(reimaged) == 5 and set(reimaged.values()) == {1}, reimaged

    # The story, from the replicas' own logs; the referee's invariants; the sample kept running.
    upgraded = [e["object"].removeprefix("node/") for e in reasons(events, "NodeUpgraded")]
    assert sorted(upgraded) == sorted(n["hostname"] for n in nodes)
    for step in ("NodeDrained", "InstanceReimaging", "NodeRejoined", "OldNodeRemoved"):
        assert len({e["object"] for e in reasons(events, step)}) == 5, step
    # Nobody drains, demotes or reimages the node its own replica runs on; the self node goes
    # last, through a handover — or, if a stalled machine let the holder's lease expire, a takeover.
    assert_self_last(events, {n["hostname"] for n in nodes})
    # The referee, judged by the reliability campaign's code (leadership-move windows).
    verdict = invariants.referee(report, events)
    assert not verdict.violations, verdict.violations
    assert report["services"]["sample"]["minRunning"] >= 1
    assert SERVICE not in report["services"]  # the controller's own service is not workload

    # Swarm rescheduled the global service: on every (reimaged, new) manager node exactly one
    # running controller task, created after that node joined; the old node ids are gone. The
    # last manager rejoined just before RolloutSucceeded: its task may still be starting.
    now = await docker_get(manager, "/nodes")
    managers = {n["ID"]: n for n in now if n["Spec"]["Role"] == "manager"}
    assert len(managers) == 3 and not set(managers) & set(before.values())
    running: list[dict[str, Any]] = []

    async def one_replica_per_manager() -> bool:
        nonlocal running
        tasks = await docker_get(manager, f'/tasks?filters={{"service":["{SERVICE}"]}}')
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        return sorted(t["NodeID"] for t in running) == sorted(managers)

    with contextlib.suppress(AssertionError):
        await wait_for(one_replica_per_manager, 120, every=1)
    assert sorted(t["NodeID"] for t in running) == sorted(managers), running
    for task in running:
        assert stamp(task["CreatedAt"]) >= stamp(managers[task["NodeID"]]["CreatedAt"]), task
    service = await docker_get(manager, f"/services/{SERVICE}")
    assert "PreviousSpec" not in service  # nobody updated the service: swarm placed the tasks
    sample = await docker_get(manager, '/tasks?filters={"service":["sample"]}')
    assert sum(t["Status"]["State"] == "running" for t in sample) == 4
