"""The real image build, into a throwaway dockerd, and the stack deployed from it onto a swarm.

One standalone dockerd (own temp dir, vfs, no bridge, its own UTS hostname so the stack's
`{{.Node.Hostname}}` mount template resolves to its socket) serves the whole module. The image is
the session's `controller_image` (testbed.fixtures: built once per pytest run, ≈1.5 min on a fresh
machine with debootstrap ≈50 s, then cached in .cache/, ≈45 s after), loaded here (≈6 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import procs
from testbed.arm import ArmServer
from testbed.arm.fake_driver import FakeDriver
from testbed.fixtures import ControllerImage
from testbed.node import DockerNode

pytestmark = pytest.mark.image_build

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
HOSTNAME = "pk-manager"
IMPORTS = (
    "controller, aiodocker, azure.mgmt.compute.aio, azure.identity.aio, yaml, jsonschema, "
    "prometheus_client"
)


class Daemon:
    """A standalone testbed node (testbed.node.DockerNode): socket at D/n/<hostname>/docker.sock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = DockerNode(HOSTNAME, root / "n" / HOSTNAME, "127.0.0.1", root / "dockerd.log")
        self.socket = self.node.socket
        self.host = self.node.docker_host
        self.loop = asyncio.new_event_loop()

    def start(self) -> None:
        self.loop.run_until_complete(self.node.start({}, wait_s=30))

    def stop(self) -> None:
        """SIGTERM dockerd (it stops its containers), kill leftovers, unmount, wipe the dir."""
        try:
            self.loop.run_until_complete(self.node.stop())
        finally:
            self.loop.close()
            procs.remove_tree(self.root)

    def docker(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["docker", "-H", self.host, *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon(Path(tempfile.mkdtemp(prefix="pk-", dir="/tmp")))
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def image(daemon: Daemon, controller_image: ControllerImage) -> str:
    started = time.monotonic()
    daemon.docker("load", "-q", "-i", str(controller_image.archive))
    print(f"\n[image loaded into a fresh dockerd: {time.monotonic() - started:.1f} s]")
    return controller_image.tag


def test_image_runs_the_cli_and_imports_everything_without_network(
    daemon: Daemon, image: str
) -> None:
    run = ["run", "--rm", "--network", "none"]
    helped = daemon.docker(*run, "--entrypoint", "swarm-upgrade", image, "--help")
    assert "usage: swarm-upgrade" in helped.stdout
    imported = daemon.docker(
        *run, "--entrypoint", "python", image, "-c", f"import {IMPORTS}; print('ok')"
    )
    assert imported.stdout.strip() == "ok"
    user = daemon.docker(*run, "--entrypoint", "id", image, "-u")
    assert user.stdout.strip() == "0"  # root, for the engine socket (manifests/README.md)


def test_image_metadata_entrypoint_health_check_and_size(daemon: Daemon, image: str) -> None:
    (info,) = json.loads(daemon.docker("image", "inspect", image).stdout)
    config = info["Config"]
    assert config["Entrypoint"] == ["swarm-upgrade", "run"]
    kind, command = config["Healthcheck"]["Test"]
    assert kind == "CMD-SHELL" and "/healthz" in command
    size_mb = info["Size"] / 1e6
    print(f"\n[image size: {size_mb:.0f} MB]")
    assert size_mb < 300, f"image grew to {size_mb:.0f} MB"
    venv = daemon.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                         "ls /opt/venv/lib/python3.11/site-packages")  # fmt: skip
    assert "pip\n" not in venv.stdout and "setuptools\n" not in venv.stdout


def first_task_container(daemon: Daemon, service: str, timeout: float) -> dict[str, Any]:
    """`docker inspect` of the first container swarm started for `service`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = daemon.docker("service", "ps", "-q", "--no-trunc", service).stdout.split()
        for task_id in ids:
            (task,) = json.loads(daemon.docker("inspect", task_id).stdout)
            status = task["Status"]
            assert status["State"] != "rejected", status.get("Err")
            container = status.get("ContainerStatus", {}).get("ContainerID")
            if container:
                found = daemon.docker("inspect", container, check=False)
                if found.returncode == 0:
                    (inspected,) = json.loads(found.stdout)
                    return dict(inspected)
        time.sleep(0.5)
    raise AssertionError(f"no container for {service} in {timeout} s")


async def test_testbed_stack_runs_the_controller_against_the_local_arm_endpoint(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    """stack.yml + stack.sp-secret.yml + stack.testbed.yml on a one-node swarm: the replica
    binds its node's own socket, reaches the HTTPS ARM endpoint over the host network, trusts
    the testbed CA from a config, authenticates with the client secret from a Docker secret,
    reads the labelled declaration and narrates reconcile events."""
    addr = f"127.66.{random.randint(1, 254)}.1"
    docker = functools.partial(asyncio.to_thread, daemon.docker)
    await docker("swarm", "init", "--advertise-addr", addr, "--listen-addr", f"{addr}:2377")
    role = json.loads((MANIFESTS / "azure-role.json").read_text())
    arm = ArmServer(FakeDriver(), subscription_id="00000000-0000-0000-0000-0000000000cc",
                    resource_group="swarm-rg", tenant_id="tenant-1", client_id="app-1",
                    client_secret="stack-s3cret", cert_dir=tmp_path / "certs", host=addr,
                    role_actions=role["Actions"])  # fmt: skip
    old = {"publisher": "docker", "offer": "docker4azure", "sku": "stable", "version": "17.06.0"}
    arm.add_scale_set("swarm-manager-vmss", "manager", {"channel": "stable"}, old, 1, HOSTNAME)
    arm.add_scale_set("swarm-worker-vmss", "worker", {"channel": "stable"}, old, 0, "w")
    await arm.start()
    try:
        secret = tmp_path / "secret"
        secret.write_text(arm.client_secret)
        await docker("secret", "create", "swarm-upgrade-azure-client-secret", str(secret))
        env = {
            **os.environ,
            **arm.environment(),
            "SWARM_UPGRADE_IMAGE": image,
            "SWARM_UPGRADE_DESIRED": str(MANIFESTS / "desired.example.yaml"),
            "TESTBED_DIR": str(daemon.root),
        }
        del env["AZURE_CLIENT_SECRET"]  # it reaches the replica only through the secret
        argv = ["stack", "deploy", "--resolve-image", "never"]
        for name in ("stack.yml", "stack.sp-secret.yml", "stack.testbed.yml"):
            argv += ["-c", str(MANIFESTS / name)]
        await docker(*argv, "su", env=env)

        labelled = await docker("config", "ls", "-q", "--filter", "label=swarm-upgrade.desired")
        assert len(labelled.stdout.split()) == 1
        container = await asyncio.to_thread(first_task_container, daemon, "su_controller", 90)
        assert container["HostConfig"]["NetworkMode"] == "host"
        binds = {(m["Source"], m["Destination"]) for m in container["Mounts"]}
        assert (str(daemon.socket), "/var/run/docker.sock") in binds
        env_vars = dict(e.split("=", 1) for e in container["Config"]["Env"])
        assert env_vars["SSL_CERT_FILE"] == "/etc/swarm-upgrade/testbed-ca.pem"
        assert "AZURE_CLIENT_SECRET" not in env_vars

        # Authenticated, authorised ARM reads by the replica, then its events in the logs.
        deadline = time.monotonic() + 120
        while not any(e.operation == "VirtualMachineScaleSets_Get" and e.status == 200
                      for e in arm.request_log):  # fmt: skip
            assert time.monotonic() < deadline, f"no ARM read; {await service_logs(daemon)}"
            await asyncio.sleep(1)
        while not (events := [e for e in await controller_events(daemon) if e.get("reason")]):
            assert time.monotonic() < deadline, f"no event; {await service_logs(daemon)}"
            await asyncio.sleep(1)
        assert {"time", "type", "reason", "object", "message"} <= set(events[0])
        assert not [e for e in arm.request_log if e.status in (401, 403)]
        await docker("stack", "rm", "su")
    finally:
        await arm.stop()


async def service_logs(daemon: Daemon) -> str:
    logs = await asyncio.to_thread(
        daemon.docker, "service", "logs", "--raw", "su_controller", check=False
    )
    return logs.stdout + logs.stderr


async def controller_events(daemon: Daemon) -> list[dict[str, Any]]:
    """The JSON event lines the replica printed (other lines are library noise)."""
    events = []
    for line in (await service_logs(daemon)).splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events
