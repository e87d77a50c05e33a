"""`swarm-testbed up` / `down` through the real CLI: down leaves nothing behind (issue 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed import procs
from testbed.cluster import random_ip_base
from testbed.config import read_state
from testbed.control import up
from testbed.fixtures import make_testbed_config


def swarm_testbed(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed console script."""
    exe = Path(sys.executable).with_name("swarm-testbed")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, check=check, timeout=120
    )


def test_up_prints_the_env_file_and_down_removes_every_process_mount_and_dir() -> None:
    directory = Path(tempfile.mkdtemp(prefix="tb-", dir="/tmp"))
    up = swarm_testbed(
        "up",
        "--dir",
        str(directory),
        "--managers",
        "1",
        "--workers",
        "1",
        "--no-arm",
        "--ip-base",
        random_ip_base(),
        "--sample-service",
        "2",
    )
    try:
        env = dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
        assert env["DOCKER_HOST"] == f"unix://{directory}/n/swarm-manager000000/docker.sock"
        assert env["TESTBED_DIR"] == str(directory)
        assert (directory / "testbed.env").read_text() == up.stdout
        state = read_state(directory)
        pids = [state["pid"], *state["pids"]]
        assert len(state["pids"]) == 2 and all(procs.pid_alive(p) for p in pids)
        status = swarm_testbed("status", "--dir", str(directory)).stdout
        assert "swarm-worker000000" in status and "manager*" in status
        # a crash leaves containerd shims and containers running: down must still get them all
        deadline = time.monotonic() + 30
        while len(procs.processes_under(directory / "n")) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)  # 2 dockerd + 2 containerd + shims/containers of the sample tasks
        swarm_testbed("fault", "--dir", str(directory), "crash", "swarm-worker000000")
        assert procs.mounts_under(directory)
    finally:
        started = time.monotonic()
        down = swarm_testbed("down", "--dir", str(directory), check=False)
        took = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert not directory.exists()
    assert procs.processes_under(directory) == []
    assert procs.mounts_under(directory) == []
    assert not any(procs.cmdline_names(p, str(directory)) for p in pids)
    # down asks the daemon to stop, then kills what is left: seconds, not a graceful dockerd stop
    # per node (the limit leaves room for a stalled 2-core machine).
    assert took < 30, took


def test_down_of_a_missing_dir_is_a_no_op() -> None:
    result = swarm_testbed("down", "--dir", f"/tmp/tb-missing-{os.getpid()}")
    assert result.returncode == 0


def test_bad_input_is_one_line_naming_the_field() -> None:
    result = swarm_testbed("up", "--dir", "/tmp/tb-bad", "--version", "9.9.9", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "swarm-testbed: version: '9.9.9' is not a release of channel 'stable'"
    ]
    assert not Path("/tmp/tb-bad").exists()


def test_a_testbed_whose_owner_dies_removes_itself() -> None:
    owner = subprocess.Popen(["sleep", "60"])
    config = make_testbed_config(managers=1, workers=0, with_arm=False, owner_pid=owner.pid)
    handle = up(config)
    pids = [handle.daemon_pid, *read_state(handle.dir)["pids"]]
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 15
    while handle.dir.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not handle.dir.exists()
    assert procs.processes_under(handle.dir) == []
    assert procs.mounts_under(handle.dir) == []
    assert procs.wait_gone(pids, 5) == []


def test_down_refuses_a_directory_that_is_not_a_testbed() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="tb-", dir="/tmp"))
    (tmp_path / "precious.txt").write_text("keep me")
    result = swarm_testbed("down", "--dir", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "is not a testbed directory" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    result = swarm_testbed("up", "--dir", str(tmp_path), "--no-arm", check=False)
    assert result.returncode == 1
    assert "is not empty and not a testbed directory" in result.stderr
    (tmp_path / "precious.txt").unlink()
    tmp_path.rmdir()
