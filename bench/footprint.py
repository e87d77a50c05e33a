"""Footprint of a controller replica on the testbed (3 managers + 2 workers, 4-task service).

    python -m bench.footprint [--idle-s 60] [--starts 5]

1. Start to first reconcile: `swarm-upgrade run --once` spawned `--starts` times; the time from
   the spawn to its first pass's verdict event (UpToDate), median; with where it goes (spawn →
   ControllerStarted: interpreter, imports, clients; → LeaseAcquired: declaration, swarm info,
   the lease's compare-and-swap; → UpToDate: observe + plan) and the CPU the process used.
   With `--optimize` every controller process runs with PYTHONOPTIMIZE=2 (docstrings and
   asserts dropped; the -OO bytecode is compiled first, as an image build would).
   With `--start-nice -10` the starts are timed a second time at that priority: on a shared
   machine, what the start costs when the process gets a core. Before them, `--once` passes
   until UpToDate: a fresh testbed first gets the release's
   resources deployed (the resources phase), which a restarted controller does not do.
2. Idle: one replica per manager (with its /healthz and /metrics server, as in production), the
   declaration = what runs; after the first pass, RSS and CPU (utime+stime from /proc) of every
   replica over `--idle-s` seconds.
3. During a rollout (17.06.0 → 17.06.1): RSS of every replica sampled every 0.5 s, the maximum.

Prints a table and writes bench/results/footprint.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
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
from tests.e2e.common import declaration

TICK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


OPTIMIZE = {"on": False}  # --optimize: the replicas run with PYTHONOPTIMIZE=2


def env_for(tb: TestbedHandle) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in tb.env}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    if OPTIMIZE["on"]:
        env["PYTHONOPTIMIZE"] = "2"
    return env


def compile_optimized() -> None:
    """The -OO bytecode of the venv and the controller, as an image build would make it
    (otherwise every start would compile, and with PYTHONDONTWRITEBYTECODE never keep it)."""
    import sysconfig
    for tree in (sysconfig.get_paths()["purelib"], str(Path(__file__).parents[1] / "controller")):
        subprocess.run([sys.executable, "-OO", "-m", "compileall", "-q", tree],
                       capture_output=True, check=False)


def run_once(tb: TestbedHandle, desired: Path, nice: int = 0
             ) -> tuple[float, float, list[dict[str, Any]]]:
    """`swarm-upgrade run --once`: (spawn time, CPU seconds it used, its events)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(
        [*(["nice", "-n", str(nice)] if nice else []), "swarm-upgrade", "run", "--once",
         "--env-file", str(tb.env_file), "--desired-file", str(desired),
         "--docker-host", tb.manager_hosts["swarm-manager000001"]],
        env=env_for(tb), capture_output=True, timeout=120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()
              if line.startswith("{")]
    return t0, cpu, events


def settle(tb: TestbedHandle, desired: Path, tries: int = 20) -> int:
    """Passes until one says UpToDate: a fresh testbed first gets the release's resources
    deployed (the resources phase), which is not what a restart of the controller does."""
    for n in range(1, tries + 1):
        _, _, events = run_once(tb, desired)
        if any(e.get("reason") == "UpToDate" for e in events):
            return n
        time.sleep(1)
    raise RuntimeError("the testbed never became UpToDate")


def starts(tb: TestbedHandle, desired: Path, n: int, nice: int = 0) -> list[dict[str, float]]:
    """Spawn → ControllerStarted (interpreter, imports, clients) → LeaseAcquired (declaration
    read, the lease's compare-and-swap) → UpToDate (observe + plan), and the CPU used."""
    out = []
    for _ in range(n):
        t0, cpu, events = run_once(tb, desired, nice)

        def at(reason: str, events: list[dict[str, Any]] = events, t0: float = t0) -> float:
            found = [epoch(e["time"]) for e in events if e.get("reason") == reason]
            return round(found[0] - t0, 3) if found else float("nan")

        if not any(e.get("reason") == "UpToDate" for e in events):
            raise RuntimeError(f"no UpToDate from --once: {events[-3:]}")
        out.append({"total": at("UpToDate"), "controllerStarted": at("ControllerStarted"),
                    "leaseAcquired": at("LeaseAcquired"), "cpuS": round(cpu, 3)})
    return out


async def sample(replicas: Replicas, seconds: float, until: Any = None) -> dict[str, Any]:
    """RSS (max) of every running replica every 0.5 s, CPU seconds used in the window."""
    pids = {r.hostname: r.proc.pid for r in replicas.running.values() if r.proc.poll() is None}
    cpu0 = {h: cpu_s(p) for h, p in pids.items()}
    t0 = time.monotonic()
    peak: dict[str, float] = {}
    while time.monotonic() - t0 < seconds and not (until and until()):
        for r in list(replicas.running.values()):
            value = rss_mb(r.proc.pid)
            if value is not None:
                key = f"{r.hostname}-g{r.generation}"
                peak[key] = max(peak.get(key, 0.0), value)
        await asyncio.sleep(0.5)
    took = time.monotonic() - t0
    cpu = {}
    for host, pid in pids.items():
        before, after = cpu0[host], cpu_s(pid)
        if before is not None and after is not None:
            cpu[host] = round(100 * (after - before) / took, 3)
    return {"seconds": round(took, 1), "rssMaxMB": {k: round(v, 1) for k, v in peak.items()},
            "cpuPercent": cpu}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    config = TestbedConfig(dir=tempfile.mkdtemp(prefix="tb-", dir="/tmp"), managers=3,
                           workers=2, reimage_seconds=0.0, ip_base=random_ip_base(),
                           owner_pid=os.getpid())
    tb = up(config)
    try:
        tb.create_service("sample", 4)
        desired = work / "desired.yaml"
        desired.write_text(declaration("stable", "17.06.0-ce-azure1"))
        settled = await asyncio.to_thread(settle, tb, desired)
        load_s = common.load()
        start_runs = await asyncio.to_thread(starts, tb, desired, args.starts)
        start_times = [r["total"] for r in start_runs]
        niced: dict[str, Any] = {}
        if args.start_nice:
            load_n = common.load()
            runs = await asyncio.to_thread(starts, tb, desired, args.starts, args.start_nice)
            niced = {"startToFirstReconcileNicedS": {
                "nice": args.start_nice, "samples": [r["total"] for r in runs],
                "median": round(common.median([r["total"] for r in runs]), 3),
                "medianCpuS": round(common.median([r["cpuS"] for r in runs]), 3),
                "runs": runs, "loadAvg": load_n}}
        replicas = Replicas(tb.manager_hosts, env_for(tb), [
            "--env-file", str(tb.env_file), "--desired-file", str(desired),
            # /healthz and /metrics on (a free port), as in production: part of the footprint
            "--metrics-port", "0", "--metrics-host", "127.0.0.1", "--swarm-timeout", "5"], work)
        replicas.start()
        try:
            await replicas.wait_for(lambda ev: any(e.get("reason") == "UpToDate" for e in ev),
                                    120, "UpToDate")
            await asyncio.sleep(3)
            load_i = common.load()
            idle = await sample(replicas, args.idle_s)
            desired.write_text(declaration("stable", "17.06.1-ce-azure1"))
            load_r = common.load()

            def succeeded() -> bool:
                return any(e.get("reason") == "RolloutSucceeded" for e in replicas.events())

            rollout = await sample(replicas, 900, succeeded)
        finally:
            replicas.stop()
        return {
            "startToFirstReconcileS": {
                "samples": [round(s, 3) for s in start_times],
                "median": round(common.median(start_times), 3),
                "medianControllerStartedS": round(common.median(
                    [r["controllerStarted"] for r in start_runs]), 3),
                "medianLeaseAcquiredS": round(common.median(
                    [r["leaseAcquired"] for r in start_runs]), 3),
                "medianCpuS": round(common.median([r["cpuS"] for r in start_runs]), 3),
                "runs": start_runs, "passesBeforeUpToDate": settled, "loadAvg": load_s},
            **niced,
            "idle": {**idle, "loadAvg": load_i},
            "rollout": {**rollout, "loadAvg": load_r, "succeeded": succeeded()},
        }
    finally:
        left = down(tb.dir)
        if left:
            print(f"testbed teardown left: {left}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    p.add_argument("--idle-s", type=float, default=60.0)
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--optimize", action="store_true",
                   help="run the controller with PYTHONOPTIMIZE=2 (no docstrings, no asserts)")
    p.add_argument("--start-nice", type=int, default=0,
                   help="also time the starts under `nice -n N` (e.g. -10 as root: the CPU share "
                   "the process gets on a quiet machine, when the machine is shared)")
    args = p.parse_args(argv)
    if args.optimize:
        OPTIMIZE["on"] = True
        compile_optimized()
    r = asyncio.run(run(args))
    r["pythonOptimize"] = 2 if args.optimize else 0
    idle_rss = max(r["idle"]["rssMaxMB"].values())
    idle_cpu = max(r["idle"]["cpuPercent"].values())
    roll_rss = max(r["rollout"]["rssMaxMB"].values())
    print(f"Footprint of a replica (testbed 3m+2w; load now {common.load()})")
    print(common.table([
        ("RSS idle (max over replicas)", f"{idle_rss:.1f} MB", "<= 80 MB", r["idle"]["loadAvg"]),
        ("RSS during a rollout (max)", f"{roll_rss:.1f} MB", "<= 80 MB",
         r["rollout"]["loadAvg"]),
        ("CPU idle (max over replicas)", f"{idle_cpu:.2f} %", "< 1 %", r["idle"]["loadAvg"]),
        ("start to first reconcile (median)", f"{r['startToFirstReconcileS']['median']:.2f} s",
         "<= 1.5 s", r["startToFirstReconcileS"]["loadAvg"]),
        *([(f"  the same under nice {args.start_nice}",
            f"{r['startToFirstReconcileNicedS']['median']:.2f} s", "<= 1.5 s",
            r["startToFirstReconcileNicedS"]["loadAvg"])] if args.start_nice else []),
    ], ("figure", "value", "goal", "load")))
    print(f"\nwrote {common.write('footprint', r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
