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
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.cluster import random_ip_base
from testbed.config import TestbedConfig
from testbed.control import TestbedHandle, down, up


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
def testbed(request: pytest.FixtureRequest) -> Iterator[TestbedHandle]:
    """A running testbed for the whole module (see the module docstring for options)."""
    options = dict(getattr(request.module, "TESTBED", {}))
    config = make_testbed_config(**options)
    handle = up(config)
    try:
        yield handle
    finally:
        left = down(handle.dir)
        if left:
            pytest.fail(f"testbed teardown left: {left}")
