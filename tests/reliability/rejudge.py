"""Judge finished runs again with the current referee judge, from what they left on disk.

    python -m tests.reliability.rejudge RESULTS.json WORKDIR

Each run's directory (WORKDIR/<scenario>-<run>) keeps the referee's report (referee.json) and
every replica's events (*.jsonl). The referee violations and measurements of each row are
recomputed from those with `invariants.referee` (rows of scenarios that inject windows, i.e. the
swarm faults, are left as they are); every other violation of the row is kept. The row records
that it was re-judged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.reliability import invariants as inv
from tests.reliability.campaign import summarize

WINDOWED = {"manager-crash", "quorum-lost", "swarm-hang"}


def events_of(directory: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for log in sorted(directory.glob("swarm-manager*.jsonl")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
    return sorted(out, key=lambda e: str(e.get("time", "")))


def rejudge(results: Path, workdir: Path) -> None:
    doc = json.loads(results.read_text())
    for row in doc["rows"]:
        directory = workdir / f"{row['scenario']}-{row['run']}"
        if row["scenario"] in WINDOWED or not (directory / "referee.json").is_file():
            continue
        report = json.loads((directory / "referee.json").read_text())
        verdict = inv.referee(report, events_of(directory))
        kept = [v for v in row["violations"] if not v.startswith(("leaderless:", "managersOut:",
                                                                   "outage:"))]
        row["violations"] = kept + verdict.violations
        row["measured"].update(verdict.measured)
        row["ok"] = not row["violations"] and row["outcome"] == row["expected"]
        row["rejudged"] = True
    doc["summary"] = summarize(doc["rows"])
    results.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    rejudge(Path(sys.argv[1]), Path(sys.argv[2]))
