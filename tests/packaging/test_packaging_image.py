"""The real image build, into a throwaway dockerd, and the stack deployed from it onto a swarm.

One standalone dockerd (own temp dir, vfs, no bridge, its own UTS hostname so the stack's
`{{.Node.Hostname}}` mount template resolves to its socket) serves the whole module. The build
takes ≈1.5 min on a fresh machine (debootstrap ≈50 s, then cached in .cache/) and ≈45 s after.
"""

from __future__ import annotations

import asyncio
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
from testbed.image import build_controller_image
from testbed.node import DockerNode

pytestmark = pytest.mark.image_build

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
HOSTNAME = "pk-manager"
TAG = "swarm-upgrade-controller:test"
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
def image(daemon: Daemon) -> str:
    started = time.monotonic()
    build_controller_image(daemon.host, TAG, REPO / ".cache")
    print(f"\n[image build into a fresh dockerd: {time.monotonic() - started:.1f} s]")
    return TAG


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


def test_testbed_stack_deploys_each_node_socket_host_network_secret_and_ca(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    addr = f"127.66.{random.randint(1, 254)}.1"
    daemon.docker("swarm", "init", "--advertise-addr", addr, "--listen-addr", f"{addr}:2377")
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    daemon.docker("secret", "create", "swarm-upgrade-azure-client-secret", str(secret))
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    env = {
        **os.environ,
        "SWARM_UPGRADE_IMAGE": image,
        "SWARM_UPGRADE_DESIRED": str(MANIFESTS / "desired.example.yaml"),
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_RESOURCE_GROUP": "swarm-rg",
        "AZURE_TENANT_ID": "tenant",
        "AZURE_CLIENT_ID": "client",
        "TESTBED_DIR": str(daemon.root),
        "AZURE_ARM_ENDPOINT": f"https://{addr}:9",
        "AZURE_AUTHORITY_HOST": f"https://{addr}:9",
        "SSL_CERT_FILE": str(ca),
    }
    files = ("stack.yml", "stack.sp-secret.yml", "stack.testbed.yml")
    argv = ["stack", "deploy", "--resolve-image", "never"]
    for name in files:
        argv += ["-c", str(MANIFESTS / name)]
    daemon.docker(*argv, "su", env=env)

    configs = daemon.docker("config", "ls", "--format", "{{.Name}}").stdout.split()
    assert {"swarm-upgrade-desired-1", "swarm-upgrade-testbed-ca-1"} <= set(configs)
    labelled = daemon.docker("config", "ls", "-q", "--filter", "label=swarm-upgrade.desired")
    assert len(labelled.stdout.split()) == 1

    container = first_task_container(daemon, "su_controller", timeout=60)
    assert container["HostConfig"]["NetworkMode"] == "host"
    binds = {(m["Source"], m["Destination"]) for m in container["Mounts"] if m["Type"] == "bind"}
    assert (str(daemon.socket), "/var/run/docker.sock") in binds
    env_vars = dict(e.split("=", 1) for e in container["Config"]["Env"])
    assert env_vars["SSL_CERT_FILE"] == "/etc/swarm-upgrade/testbed-ca.pem"
    assert env_vars["SWARM_UPGRADE_DESIRED_CONFIG_LABEL"] == "swarm-upgrade.desired"
    assert "AZURE_CLIENT_SECRET" not in env_vars  # only in the process, from the secret file
    # The entrypoint read the secret: a missing file would show up as cat's error in the logs.
    time.sleep(1)
    logs = daemon.docker("logs", container["Id"], check=False)
    assert "azure-client-secret" not in logs.stdout + logs.stderr
    daemon.docker("stack", "rm", "su")
