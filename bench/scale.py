"""Scale: the real loop and planner at 1000 nodes in virtual time, planner CPU per pass, and the
ARM request pattern against a 1000-instance scale set (bench/arm_scale.py).

    python -m bench.scale [--managers 5] [--workers 1000] [--max-unavailable 50]
                          [--reimage-s 240] [--ready-s 30] [--drain-s 2] [--skip-arm]
                          [--deploy-s 120] [--service-s 60] [--nodes-only] [--uncached]

The simulation and the ARM run cover the three phases of a rollout (resources, nodes,
services) unless `--nodes-only`; the planner CPU per pass is the nodes planner's (where the
per-node work is). `--uncached` adds an ARM run without the observation caches.

Prints tables and writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench import common
from bench.fakes import ScaleSets, SwarmView, Timings, World
from bench.phases_sim import PhaseTimings
from bench.simulate import SOURCE, TARGET, declaration, simulate
from bench.vloop import SimClock, run_virtual
from controller.adapters.swarm import observe_nodes
from controller.catalog import load_catalog
from controller.model import load_desired_text
from controller.planner import plan
from controller.snapshot import Snapshot


def planner_cpu(nodes: int, max_unavailable: int, repeat: int = 20) -> dict[str, Any]:
    """CPU seconds of one pass's pure work at `nodes` nodes (3 or 5 managers, the rest workers):
    snapshot parse + plan, for the first pass (no progress) and a pass mid-rollout."""
    managers = 3 if nodes < 50 else 5
    catalog = load_catalog()
    old = catalog.release("stable", SOURCE)
    assert old is not None
    world = World.build(managers, nodes - managers, old.image.to_dict(), Timings())
    desired = load_desired_text(declaration(TARGET, max_unavailable))

    async def observe() -> dict[str, Any]:
        view, arm = SwarmView(world, "swarm-manager000000"), ScaleSets(world)
        raw_nodes = await observe_nodes(view)
        sets = await arm.observe({"swarm-manager-vmss": "manager",
                                  "swarm-worker-vmss": "worker"})
        return {"self": "swarm-manager000000", "observedAt": SimClock().now(),
                "nodes": raw_nodes, "scaleSets": sets}

    raw = run_virtual(observe())
    now = raw["observedAt"]
    first, steady = [], []
    progress = None
    for _ in range(repeat):
        t = time.process_time()
        snapshot = Snapshot.from_dict(raw)
        decision = plan(desired, snapshot, None, catalog, now)
        first.append(time.process_time() - t)
        progress = decision.progress
    for _ in range(repeat):
        t = time.process_time()
        snapshot = Snapshot.from_dict(raw)
        plan(desired, snapshot, progress, catalog, now + 1)
        steady.append(time.process_time() - t)
    return {"nodes": nodes, "firstPassCpuMs": round(1000 * statistics.median(first), 2),
            "passCpuMs": round(1000 * statistics.median(steady), 2), "repeat": repeat}


def simulation(args: argparse.Namespace, timings: Timings, results: dict[str, Any]) -> None:
    phases = None if args.nodes_only else PhaseTimings(args.deploy_s, args.service_s)
    load0 = common.load()
    sim = simulate(args.managers, args.workers, args.max_unavailable, timings, phases=phases)
    results["simulation"] = sim.to_dict() | {"loadBefore": load0, "loadAfter": common.load()}
    print(f"Simulated rollout, {args.managers} managers + {args.workers} workers, "
          f"maxUnavailableWorkers {args.max_unavailable}, "
          f"{'nodes phase only' if phases is None else 'resources + nodes + services'} "
          f"(virtual time; load {load0} -> {common.load()})")
    bound = ("managers serial + worker batches" if phases is None else
             "deployment + managers serial + worker batches + services serial")
    print(common.table([
        ("makespan (virtual s)", sim.makespan, ""),
        ("lower bound (s)", sim.lower_bound, bound),
        ("deployments started / platform services updated",
         f"{sim.deployed} / {sim.services_updated}", ""),
        ("makespan / lower bound", round(sim.ratio, 4), "goal <= 1.02"),
        ("nodes upgraded", sim.upgraded, ""),
        ("reconcile passes (all replicas)", sim.passes, ""),
        ("simulation CPU s", round(sim.cpu_seconds, 1), ""),
    ], ("figure", "value", "note")))
    cpu = [planner_cpu(n, args.max_unavailable) for n in (10, 100, 1000)]
    results["plannerCpu"] = cpu
    print("\nPlanner CPU per pass (snapshot parse + plan, median of 20, process time)")
    print(common.table([(c["nodes"], c["firstPassCpuMs"], c["passCpuMs"]) for c in cpu],
                       ("nodes", "first pass ms", "pass mid-rollout ms")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--managers", type=int, default=5)
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--max-unavailable", type=int, default=50)
    p.add_argument("--reimage-s", type=float, default=240.0)
    p.add_argument("--ready-s", type=float, default=30.0)
    p.add_argument("--drain-s", type=float, default=2.0)
    p.add_argument("--skip-sim", action="store_true", help="only the ARM runs")
    p.add_argument("--skip-arm", action="store_true", help="no ARM request-pattern run")
    p.add_argument("--arm-workers", type=int, default=1000)
    p.add_argument("--arm-cap-s", type=float, default=240.0,
                   help="stop each ARM run after this many seconds (figures are per node)")
    p.add_argument("--deploy-s", type=float, default=120.0,
                   help="simulated duration of the release's deployment")
    p.add_argument("--service-s", type=float, default=60.0,
                   help="simulated duration of one platform service's update")
    p.add_argument("--nodes-only", action="store_true",
                   help="the nodes phase's planner only (no deployments, no platform services)")
    p.add_argument("--uncached", action="store_true",
                   help="also an ARM run without the observation caches (the before figure)")
    p.add_argument("--out", default="scale", help="results name (bench/results/NAME.json)")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"loadBefore": common.load()}
    timings = Timings(drain_s=args.drain_s, reimage_s=args.reimage_s, ready_s=args.ready_s)
    if not args.skip_sim:
        simulation(args, timings, results)
    if not args.skip_arm:
        from bench.arm_scale import run as arm_run
        phased = not args.nodes_only
        results["arm"] = {}
        if args.uncached:
            results["arm"]["beforeCache"] = asyncio.run(arm_run(
                args.arm_workers, cap_s=args.arm_cap_s, observe_cache=0.0, phases=phased))
        results["arm"]["withCache"] = asyncio.run(arm_run(args.arm_workers, cap_s=args.arm_cap_s,
                                                          phases=phased))
    print(f"\nwrote {common.write(args.out, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
