"""The reliability campaign: `python -m tests.reliability.campaign --runs N --seed S
[--scenarios crash,azure,...] [--crash-points K] [--fault-runs M] [--only NAME,...]
--out results.json` (`--runs`: crash rollouts; `--fault-runs`: runs of each Azure and swarm
fault scenario; `--only`: just the scenarios named, e.g. to re-run one after a fix).

Scenario groups (each one testbed, reused for a chain of rollouts while it is healthy; a run that
leaves it broken gets the next run a fresh one):

- `crash`: N rollouts, each with K crash points (SIGKILL of the acting replica, tests/reliability/
  crash.py), dealt from a seeded shuffle of every (node, phase) so all are covered;
- `azure`: 429 storm, 500s, token endpoint failures, a failing LRO, an instance that never boots,
  a scale set changed behind the controller's back (tests/reliability/azure_faults.py);
- `swarm`: a non-target manager crash, quorum loss, a worker Down, a hanging swarm API
  (tests/reliability/swarm_faults.py);
- `input`: hostile declarations through the file and config sources of a live replica, hostile
  catalogs at start (tests/reliability/bad_input.py);
- `security`: a marker secret never printed, read-only /healthz and /metrics, the Azure role
  enforced by the ARM endpoint (tests/reliability/security.py).

Every run is a JSON row (see tests/reliability/rollout.py); the file holds the rows and a summary.
`python -m tests.reliability.report results.json docs/reliability.md` renders the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.reliability import crash
from tests.reliability.harness import Bed
from tests.reliability.rollout import rollout

Row = dict[str, Any]
Group = Callable[["Campaign"], Awaitable[None]]


class Campaign:
    """Runs scenario groups and collects their rows."""

    def __init__(self, runs: int, seed: int, crash_points: int, workdir: Path,
                 out: Path | None = None, log: Callable[[str], None] = print,
                 fault_runs: int = 1, only: list[str] | None = None) -> None:
        self.runs = runs
        self.fault_runs = max(1, fault_runs)  # runs of each azure/swarm fault scenario
        self.only = list(only or [])  # scenario names (or prefixes) to run; empty: all
        self.seed = seed
        self.crash_points = crash_points
        self.workdir = workdir
        self.out = out
        self.rows: list[Row] = []
        self.log = log
        self.bed: Bed | None = None
        self.started = time.time()

    # -- testbeds ---------------------------------------------------------------------------

    def fresh_bed(self, **options: Any) -> Bed:
        self.close_bed()
        began = time.monotonic()
        self.bed = Bed.start(**options)
        self.log(f"testbed {self.bed.handle.dir} up in {time.monotonic() - began:.0f}s")
        return self.bed

    def bed_for_run(self, **options: Any) -> Bed:
        if self.bed is None or not self.bed.usable:
            return self.fresh_bed(**options)
        return self.bed

    def close_bed(self) -> None:
        if self.bed is not None:
            left = self.bed.close()
            if left:
                self.log(f"testbed teardown left: {left}")
            self.bed = None

    # -- rows -------------------------------------------------------------------------------

    def add(self, row: Row) -> Row:
        row.setdefault("seed", self.seed)
        self.rows.append(row)
        mark = "ok" if row.get("ok") else "VIOLATION"
        self.log(f"[{mark}] {row['scenario']} run {row.get('run')}: {row.get('outcome')} "
                 f"({row.get('durationS')}s) {'; '.join(row.get('violations', []))[:400]}")
        self.save()
        return row

    def save(self) -> None:
        if self.out is None:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.document(), indent=1) + "\n")

    def document(self) -> dict[str, Any]:
        return {"seed": self.seed, "runs": self.runs, "crashPointsPerRun": self.crash_points,
                "faultRuns": self.fault_runs, "only": self.only,
                "startedAt": self.started, "finishedAt": time.time(), "rows": self.rows,
                "summary": summarize(self.rows)}

    def wanted(self, scenario: str) -> bool:
        """Whether `--only` lets `scenario` run (a name or a prefix of it; no --only: all)."""
        return not self.only or any(scenario.startswith(o) for o in self.only)

    def rundir(self, scenario: str, index: int) -> Path:
        return self.workdir / f"{scenario}-{index}"


def summarize(rows: list[Row]) -> dict[str, Any]:
    """Per scenario: runs, ok, violations; plus totals (crash points, violations)."""
    out: dict[str, Any] = {}
    for row in rows:
        s = out.setdefault(row["scenario"], {"runs": 0, "ok": 0, "violations": 0, "outcomes": {}})
        s["runs"] += 1
        s["ok"] += bool(row.get("ok"))
        s["violations"] += len(row.get("violations", []))
        s["outcomes"][row.get("outcome", "?")] = s["outcomes"].get(row.get("outcome", "?"), 0) + 1
    total = {"runs": len(rows), "violations": sum(len(r.get("violations", [])) for r in rows),
             "crashPoints": sum(int((r.get("measured") or {}).get("crashPoints", 0))
                                for r in rows)}
    return {"scenarios": out, "total": total}


# -- scenario groups --------------------------------------------------------------------------

async def crash_group(c: Campaign) -> None:
    if not c.wanted("crash"):
        return
    plans = crash.schedule(c.runs, c.seed, c.crash_points)
    for index, points in enumerate(plans):
        bed = c.bed_for_run()
        row = await rollout(bed, c.rundir("crash", index), "crash", index, crash.during(points))
        c.add(row)


GROUPS: dict[str, str] = {
    "crash": "tests.reliability.campaign:crash_group",
    "azure": "tests.reliability.azure_faults:group",
    "swarm": "tests.reliability.swarm_faults:group",
    "input": "tests.reliability.bad_input:group",
    "security": "tests.reliability.security:group",
}


def load_group(name: str) -> Group:
    module, _, attr = GROUPS[name].partition(":")
    mod = __import__(module, fromlist=[attr])
    group: Group = getattr(mod, attr)
    return group


async def run_campaign(c: Campaign, scenarios: list[str]) -> None:
    try:
        for name in scenarios:
            try:
                await load_group(name)(c)
            except Exception as err:
                c.add({"scenario": name, "run": -1, "outcome": "error", "expected": "completed",
                       "ok": False, "violations": [f"harness: {type(err).__name__}: {err}"],
                       "details": {"traceback": traceback.format_exc()[-3000:]}})
            finally:
                c.close_bed()
    finally:
        c.close_bed()
        c.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.campaign")
    parser.add_argument("--runs", type=int, default=2, help="rollouts per scenario (crash)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crash-points", type=int, default=13, help="crash points per run")
    parser.add_argument("--fault-runs", type=int, default=1,
                        help="runs of each azure and swarm fault scenario")
    parser.add_argument("--only", default="",
                        help="comma-separated scenario names (or prefixes) within the groups, "
                             "e.g. swarm-hang or role-minus")
    parser.add_argument("--scenarios", default=",".join(GROUPS),
                        help=f"comma-separated, of {', '.join(GROUPS)}")
    parser.add_argument("--out", default="tests/reliability/results/campaign.json")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in GROUPS]
    if unknown:
        print(f"--scenarios: unknown {', '.join(unknown)} (known: {', '.join(GROUPS)})",
              file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="reliability-"))
    campaign = Campaign(args.runs, args.seed, args.crash_points, workdir, Path(args.out),
                        log=lambda line: print(line, flush=True), fault_runs=args.fault_runs,
                        only=[o.strip() for o in args.only.split(",") if o.strip()])
    asyncio.run(run_campaign(campaign, scenarios))
    summary = campaign.document()["summary"]
    print(json.dumps(summary, indent=1))
    return 0 if summary["total"]["violations"] == 0 and all(r.get("ok") for r in campaign.rows) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
