"""pytest plugin: a running testbed per test module (`pytest_plugins = ["testbed.fixtures"]`).

    def test_something(testbed):            # TestbedHandle: .env, .dir, .fault(), .status() ...
        subprocess.run([...], env=testbed.subprocess_env())

A module customises its testbed with a module-level dict, e.g.
`TESTBED = {"managers": 3, "workers": 2, "with_arm": False, "reimage_seconds": 1}`
(keys: the fields of testbed.config.TestbedConfig). The testbed runs in a detached daemon
process, so it is independent of the tests' event loops and survives controller subprocesses;
teardown is `down` (parallel SIGKILL, unmount, remove) and fails the module if anything is left.
Each testbed gets its own /tmp dir and a random 127.A.B loopback prefix; its daemon tears
everything down by itself if the pytest process dies.

`controller_image` (session scope) builds the controller image once per pytest run, offline, in
a throwaway dockerd, and keeps it as a `docker save` archive that tests load where they need it
(a testbed's `image_archives`, a standalone daemon).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed import procs
from testbed.cluster import random_ip_base
from testbed.config import TestbedConfig
from testbed.control import TestbedHandle, down, up
from testbed.image import REPO_ROOT, build_controller_image
from testbed.node import DockerNode

CONTROLLER_TAG = "swarm-upgrade-controller:test"


def make_testbed_config(**options: Any) -> TestbedConfig:
    """A TestbedConfig in a fresh /tmp dir with a random loopback prefix, plus `options`."""
    missing = [tool for tool in ("dockerd", "unshare", "busybox") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"testbed needs {', '.join(missing)}: run scripts/test.sh (installs them)")
    directory = tempfile.mkdtemp(prefix="tb-", dir="/tmp")
    options.setdefault("ip_base", random_ip_base())
    options.setdefault("never_boots_seconds", 1.0)
    options.setdefault("owner_pid", os.getpid())  # a killed pytest run leaves nothing behind
    return TestbedConfig(dir=directory, **options)


@pytest.fixture(scope="module")
def testbed_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The module's `TESTBED` dict; a module may override this fixture to compute options
    from other fixtures (e.g. `image_archives` from `controller_image`)."""
    return dict(getattr(request.module, "TESTBED", {}))


@pytest.fixture(scope="module")
def testbed(testbed_options: dict[str, Any]) -> Iterator[TestbedHandle]:
    """A running testbed for the whole module (see the module docstring for options)."""
    config = make_testbed_config(**testbed_options)
    handle = up(config)
    try:
        yield handle
    finally:
        left = down(handle.dir)
        if left:
            pytest.fail(f"testbed teardown left: {left}")


@dataclass(frozen=True)
class ControllerImage:
    """The controller image built for this pytest run: its tag and a `docker save` archive."""

    tag: str
    archive: Path
    build_seconds: float


@pytest.fixture(scope="session")
def controller_image(tmp_path_factory: pytest.TempPathFactory) -> ControllerImage:
    """Builds the controller image once per session (testbed.image: debootstrap base cached in
    .cache/, wheels from the host, no network in the build) and saves it to an archive."""
    root = Path(tempfile.mkdtemp(prefix="img-", dir="/tmp"))
    node = DockerNode("image-builder", root / "n", "127.0.0.1", root / "dockerd.log")
    archive = tmp_path_factory.mktemp("controller-image") / "controller.tar"
    started = time.monotonic()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(node.start({}, wait_s=60))
        build_controller_image(node.docker_host, CONTROLLER_TAG, REPO_ROOT / ".cache")
        subprocess.run(["docker", "-H", node.docker_host, "save", "-o", str(archive),
                        CONTROLLER_TAG], check=True, capture_output=True, timeout=300)
    finally:
        try:
            loop.run_until_complete(node.stop())
        finally:
            loop.close()
            procs.remove_tree(root)
    took = time.monotonic() - started
    print(f"\n[controller image built and saved in {took:.1f} s]")
    return ControllerImage(CONTROLLER_TAG, archive, took)
