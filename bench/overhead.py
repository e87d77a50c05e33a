"""Overhead on the testbed: a 3-manager + 3-worker rollout by the controller, then the same
upgrade by the reference script (bench/reference.py), on one testbed with the referee watching.

    python -m bench.overhead [--reimage-s 30] [--managers 3] [--workers 3]

Per node, the unavoidable time is the manual upgrade's ARM operation (startTime → endTime, from
the endpoint's operation log) plus boot-to-Ready (operation end → the referee first sees the
hostname Ready on the target version; 0 if it was Ready before the operation ended). Makespan:
the declaration edit → `RolloutSucceeded` (controller), first command → last node Ready
(reference). Prints a table and writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import common
from bench.reference import upgrade as reference_upgrade
from bench.supervisor import Replicas
from testbed.cluster import random_ip_base
from testbed.config import TestbedConfig, catalog_image
from testbed.control import TestbedHandle, down, up
from testbed.probe import docker_get, wait_for
from testbed.referee import Referee
from tests.e2e.common import declaration

START, MIDDLE, LAST = "17.06.0", "17.06.1", "17.06.2"


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def unavoidable(operations: list[dict[str, Any]], referee: dict[str, Any], version: str,
                since: float, until: float) -> list[dict[str, Any]]:
    """Per reimaged node: ARM operation duration + boot-to-Ready, for operations in the window."""
    names = {}
    for inst in referee.get("_instances", []):
        names[f"{inst['scaleSet']}/{inst['instanceId']}"] = inst["computerName"]
    rows = []
    for op in operations:
        if op["operation"] != "VirtualMachineScaleSets_UpdateInstances" or not op.get("endTime"):
            continue
        start, end = epoch(op["startTime"]), epoch(op["endTime"])
        if not since <= start <= until:
            continue
        for target in op["targets"]:
            host = names[target]
            ready_at = None
            for entry in referee["versions"].get(host, []):
                at = referee["startedAt"] + entry["t"]
                if at >= start and version in entry["versions"]:
                    ready_at = at
                    break
            if ready_at is None:
                raise RuntimeError(f"the referee never saw {host} Ready on {version}")
            boot = max(0.0, ready_at - end)
            rows.append({"node": host, "reimageS": round(end - start, 3),
                         "bootToReadyS": round(boot, 3),
                         "unavoidableS": round(end - start + boot, 3),
                         "operationStart": start, "readyAt": ready_at})
    return rows


async def controller_rollout(tb: TestbedHandle, work: Path, manager_settle: str = "",
                             reimage_s: float = 30.0) -> dict[str, Any]:
    desired = work / "desired.yaml"
    extra = f"    managerSettle: {manager_settle}\n" if manager_settle else ""
    desired.write_text(declaration("stable", f"{START}-ce-azure1", extra))
    env = {k: v for k, v in os.environ.items() if k not in tb.env}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # swarm-upgrade
    replicas = Replicas(tb.manager_hosts, env, [
        "--env-file", str(tb.env_file), "--desired-file", str(desired), "--metrics-port", "-1",
        "--swarm-timeout", "5"], work)
    replicas.start()
    try:
        await replicas.wait_for(lambda ev: any(e.get("reason") == "UpToDate" for e in ev), 120,
                                "UpToDate")
        edited = time.time()
        desired.write_text(declaration("stable", f"{MIDDLE}-ce-azure1", extra))
        events = await replicas.wait_for(
            lambda ev: any(e.get("reason") == "RolloutSucceeded" for e in ev),
            300 + len(tb.status()["instances"]) * (reimage_s + 120), "RolloutSucceeded")
    finally:
        replicas.stop()
    done = min(epoch(e["time"]) for e in events if e.get("reason") == "RolloutSucceeded")
    first = min(epoch(e["time"]) for e in events if e.get("reason") == "NodeDraining")
    return {"edited": edited, "succeeded": done, "firstAction": first,
            "makespanS": round(done - edited, 3)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    config = TestbedConfig(dir=tempfile.mkdtemp(prefix="tb-", dir="/tmp"),
                           managers=args.managers, workers=args.workers,
                           reimage_seconds=args.reimage_s, ip_base=random_ip_base(),
                           owner_pid=os.getpid())
    tb = up(config)
    try:
        tb.create_service("sample", 4)
        first = tb.manager_hosts["swarm-manager000000"]

        async def four() -> bool:
            tasks = await docker_get(first, '/tasks?filters={"service":["sample"]}')
            return sum(1 for t in tasks if t["Status"]["State"] == "running") == 4

        await wait_for(four, 60)
        instances = tb.status()["instances"]
        referee = Referee(tb.manager_hosts)
        await referee.start()
        try:
            load_c = common.load()
            ctl = await controller_rollout(tb, work, args.manager_settle, args.reimage_s)
            load_r = common.load()
            ref, ref_error = None, "not run (--skip-reference)"
            if not args.skip_reference:
                try:
                    ref = await reference_upgrade(tb, catalog_image("stable", f"{LAST}-ce-azure1"))
                except Exception as err:  # keep the controller's run
                    ref, ref_error = None, f"{type(err).__name__}: {err}"
        finally:
            await referee.stop()
        report = referee.report()
        report["_instances"] = instances
        operations = tb.arm_operations()
        (work / "referee.json").write_text(json.dumps(report))
        ctl_rows = unavoidable(operations, report, MIDDLE, ctl["edited"], ctl["succeeded"])
        ctl_sum = sum(r["unavoidableS"] for r in ctl_rows)
        reference: dict[str, Any] = {"error": ref_error if ref is None else None}
        if ref is not None:
            ref_rows = unavoidable(operations, report, LAST, ref.started, ref.finished)
            ref_sum = sum(r["unavoidableS"] for r in ref_rows)
            ref_makespan = ref.finished - ref.started
            reference = {"makespanS": round(ref_makespan, 3), "loadAvgAtStart": load_r,
                         "nodes": ref_rows, "sumUnavoidableS": round(ref_sum, 3),
                         "ratio": round(ref_makespan / ref_sum, 4), "steps": ref.nodes}
        return {
            "config": {"managers": args.managers, "workers": args.workers,
                       "reimageSeconds": args.reimage_s, "sampleServiceReplicas": 4,
                       "managerSettle": args.manager_settle or "10s (default)",
                       "controllerFlags": "defaults (--resync 30s, --lease-duration 15s, "
                                          "--polling-interval 15s), --swarm-timeout 5s"},
            "controller": {**ctl, "loadAvgAtStart": load_c, "nodes": ctl_rows,
                           "sumUnavoidableS": round(ctl_sum, 3),
                           "ratio": round(ctl["makespanS"] / ctl_sum, 4),
                           "firstActionAfterEditS": round(ctl["firstAction"] - ctl["edited"], 3)},
            "reference": reference,
            "referenceOverControllerMakespan": round(
                reference["makespanS"] / ctl["makespanS"], 4) if ref is not None else None,
            "referee": {"maxManagersOut": report["maxManagersOut"],
                        "leaderlessSamples": len(report["leaderless"])},
        }
    finally:
        left = down(tb.dir)
        if left:
            print(f"testbed teardown left: {left}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    p.add_argument("--managers", type=int, default=3)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--reimage-s", type=float, default=30.0,
                   help="extra seconds a testbed reimage takes (Azure takes minutes)")
    p.add_argument("--manager-settle", default="",
                   help="the declaration's strategy.managerSettle (default: the CRD's, 10s)")
    p.add_argument("--skip-reference", action="store_true",
                   help="only the controller's rollout (e.g. with long --reimage-s)")
    p.add_argument("--out", default="overhead", help="result name under bench/results/")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    c, r = result["controller"], result["reference"]
    print(f"Overhead, {args.managers} managers + {args.workers} workers on the testbed "
          f"(reimage +{args.reimage_s:g}s; load at start {c['loadAvgAtStart']} / "
          f"{r.get('loadAvgAtStart')}, now {common.load()})")
    print(common.table(
        [(n["node"], n["reimageS"], n["bootToReadyS"], n["unavoidableS"]) for n in c["nodes"]],
        ("node (controller)", "reimage s", "boot-to-Ready s", "unavoidable s")))
    print()
    rows = [("controller", c["makespanS"], c["sumUnavoidableS"], c["ratio"], "<= 1.10")]
    if args.skip_reference:
        print("reference script: not run (--skip-reference)")
    elif r.get("error"):
        print(f"reference script failed: {r['error']}")
    else:
        rows += [("reference script", r["makespanS"], r["sumUnavoidableS"], r["ratio"], ""),
                 ("reference / controller", result["referenceOverControllerMakespan"], "", "",
                  "")]
    print(common.table(rows, ("run", "makespan s", "sum unavoidable s", "ratio", "goal")))
    print(f"\nwrote {common.write(args.out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
