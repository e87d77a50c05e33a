"""Reaction: declaration edit → the controller's first action event, for the file source and the
config-object source, on the testbed (3 managers + 2 workers, one replica per manager).

    python -m bench.reaction [--samples 10]

Each sample is an edit that makes work appear: `paused: true → false` (the next node starts) or
a new version once a rollout is done (whose first action is the deployment of its template, the
resources phase). Between samples the declaration is paused again and the node in flight, if
one started, is allowed to finish. The edit time is taken right before the file write / the
config create; the action time is the event's own timestamp (same machine clock). Prints a
table and writes bench/results/reaction.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.overhead import epoch
from bench.supervisor import Replicas
from testbed.cluster import random_ip_base
from testbed.config import TestbedConfig
from testbed.control import TestbedHandle, down, up
from testbed.dockerapi import DockerAPI
from tests.e2e.common import declaration

VERSIONS = ["17.06.0", "17.06.1", "17.06.2", "17.09.0", "17.09.1", "17.12.0"]
NODE_ACTIONS = ("NodeDraining", "NodeDrained", "NodeDemoted", "ScaleSetModelUpdated",
                "InstanceReimaging", "OldNodeRemoved", "AvailabilityRestored", "DownNodeRemoved")
# A new version starts with the resources phase: its first action is the template's deployment.
ACTIONS = (*NODE_ACTIONS, "DeploymentStarted", "ServiceUpdating")
LABEL = "swarm-upgrade.desired"


def text(version: str, paused: bool) -> str:
    return declaration("stable", f"{version}-ce-azure1",
                       f"  paused: {'true' if paused else 'false'}\n")


class Editor:
    """Writes declarations through one source kind."""

    def __init__(self, kind: str, tb: TestbedHandle, path: Path) -> None:
        self.kind, self.tb, self.path, self.n = kind, tb, path, 0

    async def write(self, body: str) -> float:
        if self.kind == "file":
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(body)
            at = time.time()
            tmp.replace(self.path)
            return at
        self.n += 1
        api = DockerAPI(self.tb.manager_hosts["swarm-manager000001"].removeprefix("unix://"))
        try:
            data = base64.b64encode(body.encode()).decode()
            at = time.time()
            await api.post("/configs/create", {"Name": f"desired-{os.getpid()}-{self.n}",
                                               "Data": data, "Labels": {LABEL: "true"}})
            return at
        finally:
            await api.close()

    def args(self) -> list[str]:
        if self.kind == "file":
            return ["--desired-file", str(self.path)]
        return ["--desired-config-label", LABEL]


def count(events: list[dict[str, Any]], reason: str) -> int:
    return sum(1 for e in events if e.get("reason") == reason)


async def measure(tb: TestbedHandle, kind: str, samples: int, version: int, work: Path
                  ) -> tuple[list[float], int]:
    """`samples` reaction times through source `kind`; returns them and the version index."""
    editor = Editor(kind, tb, work / "desired.yaml")
    await editor.write(text(VERSIONS[version], paused=True))
    env = {k: v for k, v in os.environ.items() if k not in tb.env}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # swarm-upgrade
    replicas = Replicas(tb.manager_hosts, env, ["--env-file", str(tb.env_file), *editor.args(),
                                                "--metrics-port", "-1", "--swarm-timeout", "5"],
                        work / kind)
    (work / kind).mkdir()
    replicas.start()
    out: list[float] = []
    try:
        await replicas.wait_for(lambda ev: count(ev, "LeaseAcquired") > 0, 120, "a holder")
        await asyncio.sleep(2)
        while len(out) < samples:
            events = replicas.events()
            if _all_done(events, VERSIONS[version]):
                version += 1
                await editor.write(text(VERSIONS[version], paused=True))
                await asyncio.sleep(1.5)
            at = await editor.write(text(VERSIONS[version], paused=False))
            events = await replicas.wait_for(
                lambda ev, at=at: any(e.get("reason") in ACTIONS and epoch(e["time"]) >= at
                                      for e in ev), 120, "an action")
            first = min(epoch(e["time"]) for e in events
                        if e.get("reason") in ACTIONS and epoch(e["time"]) >= at)
            out.append(first - at)
            upgraded = count(events, "NodeUpgraded")
            await editor.write(text(VERSIONS[version], paused=True))
            await asyncio.sleep(3)  # a deployment (0.3 s on the testbed) ends by itself
            if any(e.get("reason") in NODE_ACTIONS and epoch(e["time"]) >= at
                   for e in replicas.events()):  # a node started: let it finish
                await replicas.wait_for(lambda ev, u=upgraded: count(ev, "NodeUpgraded") > u,
                                        300, "the node in flight")
                await asyncio.sleep(1.5)
        if _all_done(replicas.events(), VERSIONS[version]):
            version += 1
    finally:
        replicas.stop()
    return out, version


def _all_done(events: list[dict[str, Any]], version: str) -> bool:
    """The rollout to `version` succeeded (nothing left of it)."""
    return any(e.get("reason") == "RolloutSucceeded"
               and str(e.get("version", "")).startswith(f"{version}-") for e in events)


async def run(samples: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-reaction-"))
    config = TestbedConfig(dir=tempfile.mkdtemp(prefix="tb-", dir="/tmp"), managers=3,
                           workers=2, reimage_seconds=0.0, ip_base=random_ip_base(),
                           owner_pid=os.getpid())
    tb = up(config)
    try:
        results: dict[str, Any] = {}
        version = 1
        for kind in ("file", "config"):
            load = common.load()
            values, version = await measure(tb, kind, samples, version, work)
            results[kind] = {"samplesS": [round(v, 3) for v in values],
                             "medianS": round(common.median(values), 3),
                             "maxS": round(max(values), 3), "loadAvgAtStart": load,
                             "loadAvgAtEnd": common.load()}
        return results
    finally:
        left = down(tb.dir)
        if left:
            print(f"testbed teardown left: {left}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reaction", description=__doc__)
    p.add_argument("--samples", type=int, default=10)
    args = p.parse_args(argv)
    result = asyncio.run(run(args.samples))
    print(f"Reaction: declaration edit -> first action event (testbed 3m+2w; load now "
          f"{common.load()})")
    print(common.table([(k, v["medianS"], v["maxS"], len(v["samplesS"]), v["loadAvgAtStart"],
                         "<= 1 s") for k, v in result.items()],
                       ("source", "median s", "max s", "samples", "load at start", "goal")))
    print(f"\nwrote {common.write('reaction', {'sources': result})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
