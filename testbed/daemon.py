"""The testbed supervisor: owns the dockerd processes and serves the ARM endpoint.

`python -m testbed.daemon --dir D` reads D/config.json, boots the cluster, starts the ARM server
(testbed.arm) and the admin API (D/admin.sock) in one asyncio loop, writes D/testbed.env and
D/state.json ({"ready": true, "pid", "pids", "env", ...}; {"error": ...} if it could not start),
keeps the pids in state.json current, and on SIGTERM/SIGINT or POST /_testbed/stop kills every
dockerd it started and cleans up under D (the directory itself is removed by `down`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from aiohttp import web

from testbed import admin, procs
from testbed.cluster import MANAGER_VMSS, WORKER_VMSS, Cluster
from testbed.config import ADMIN_SOCKET, ENV_FILE, STATE_FILE, TestbedConfig, env_text, write_json


class Daemon:
    """One running testbed."""

    def __init__(self, config: TestbedConfig) -> None:
        self.config = config
        self.dir = Path(config.dir)
        self.cluster = Cluster(
            self.dir,
            ip_base=config.ip_base,
            reimage_seconds=config.reimage_seconds,
            never_boots_seconds=config.never_boots_seconds,
            image_tags=config.image_tags,
            broken_image_tags=config.broken_image_tags,
            image_archives=config.image_archives,
        )
        self.arm: Any = None
        self.arm_url: str | None = None
        self.env: dict[str, str] = {}
        self.stop_event = asyncio.Event()
        self.started = time.time()
        self._runner: web.AppRunner | None = None
        self.orphaned = False

    async def run(self) -> int:
        """Start everything, serve until asked to stop, tear down. Returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        try:
            await self.cluster.create(self.config.managers, self.config.workers, self.config.image)
            if self.config.with_arm:
                await self._start_arm()
            await self._start_admin()
            self.env = self.make_env()
            (self.dir / ENV_FILE).write_text(env_text(self.env))
            self.write_state(ready=True)
        except Exception as exc:
            traceback.print_exc()
            self.write_state(ready=False, error=f"{type(exc).__name__}: {exc}")
            await self.shutdown()
            return 1
        refresher = asyncio.create_task(self._refresh_state())
        await self.stop_event.wait()
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await self.shutdown()
        if self.orphaned:  # nobody will run `down`: remove the dir ourselves
            procs.remove_tree(self.dir, scope=self.dir / "n")
            return 0
        self.write_state(ready=False, stopped=True)
        return 0

    async def _start_arm(self) -> None:
        """Start the ARM endpoint (testbed.arm) with both scale sets, driven by the cluster."""
        # The tb-arm side, imported late: a testbed without ARM (with_arm=False) never needs it.
        arm_server = importlib.import_module("testbed.arm").ArmServer

        cfg = self.config
        self.arm = arm_server(
            self.cluster,
            subscription_id=cfg.subscription_id,
            resource_group=cfg.resource_group,
            tenant_id=cfg.tenant_id,
            client_id=cfg.client_id,
            client_secret=cfg.client_secret,
            cert_dir=self.dir / "certs",
            role_actions=cfg.role_actions,
        )
        tags = {"channel": cfg.channel}
        self.arm.add_scale_set(
            MANAGER_VMSS, "manager", tags, cfg.image, cfg.managers, "swarm-manager"
        )
        self.arm.add_scale_set(WORKER_VMSS, "worker", tags, cfg.image, cfg.workers, "swarm-worker")
        self.arm_url = str(await self.arm.start()).rstrip("/")

    async def _start_admin(self) -> None:
        sock = self.dir / ADMIN_SOCKET
        sock.unlink(missing_ok=True)
        self._runner = web.AppRunner(admin.make_app(self), access_log=None)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(sock)).start()

    def make_env(self) -> dict[str, str]:
        """The env file's variables (docs/architecture.md, Testbed conventions)."""
        cfg = self.config
        hosts = self.cluster.manager_hosts()
        env = {"DOCKER_HOST": hosts[self.cluster.computer_name(MANAGER_VMSS, "0")]}
        for name, host in sorted(hosts.items()):
            env[f"DOCKER_HOST_{name.upper().replace('-', '_')}"] = host
        env.update(
            AZURE_SUBSCRIPTION_ID=cfg.subscription_id,
            AZURE_RESOURCE_GROUP=cfg.resource_group,
            AZURE_TENANT_ID=cfg.tenant_id,
            AZURE_CLIENT_ID=cfg.client_id,
            AZURE_CLIENT_SECRET=cfg.client_secret,
        )
        if self.arm_url is not None:
            env["AZURE_AUTHORITY_HOST"] = self.arm_url
            env["AZURE_ARM_ENDPOINT"] = self.arm_url
            env["SSL_CERT_FILE"] = str(self.dir / "certs" / "ca.pem")
        env["TESTBED_DIR"] = str(self.dir)
        return env

    def write_state(self, **extra: Any) -> None:
        """Write D/state.json: our pid, dockerd pids, env, plus `extra`."""
        state = {
            "pid": os.getpid(),
            "pids": self.cluster.pids(),
            "startedAt": self.started,
            "armUrl": self.arm_url,
            "env": self.env,
            **extra,
        }
        write_json(self.dir / STATE_FILE, state)

    async def _refresh_state(self) -> None:
        """Keep state.json current; stop if the owner process (e.g. a pytest run) is gone."""
        while True:
            await asyncio.sleep(0.5)
            self.write_state(ready=True)
            owner = self.config.owner_pid
            if owner is not None and not procs.pid_alive(owner):
                print(f"owner {owner} is gone: tearing down", file=sys.stderr, flush=True)
                self.orphaned = True
                self.stop_event.set()

    async def shutdown(self) -> None:
        """Stop the ARM server and admin API, kill every dockerd, clean up under the dir."""
        if self.arm is not None:
            with contextlib.suppress(Exception):
                await self.arm.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.cluster.close(remove=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m testbed.daemon --dir D`."""
    parser = argparse.ArgumentParser(prog="testbed.daemon")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    config = TestbedConfig.load(args.dir)
    return asyncio.run(Daemon(config).run())


if __name__ == "__main__":
    sys.exit(main())
