"""docs/reliability.md is rendered from the campaign's JSON only (tests/reliability/report.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability import report


def _write(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_totals_and_groups_come_from_the_rows_and_findings_are_not_results(
    tmp_path: Path,
) -> None:
    crash = _write(tmp_path / "crash.json", {"seed": 7, "finishedAt": 1.8e9, "rows": [
        {"scenario": "crash", "run": 0, "outcome": "completed", "ok": True, "violations": [],
         "measured": {"crashPoints": 13}},
        {"scenario": "crash", "run": 1, "outcome": "completed", "ok": True, "violations": [],
         "measured": {"crashPoints": 12}},
    ]})
    swarm = _write(tmp_path / "swarm.json", {"seed": 7, "finishedAt": 1.8e9, "rows": [
        {"scenario": "swarm-hang", "group": "swarm", "run": 0, "outcome": "completed",
         "ok": False, "violations": ["outage: sample had 0 running task(s)"], "measured": {}},
    ]})
    findings = _write(tmp_path / "findings.json", {"fixed": [
        {"title": "T", "where": "w", "commit": "abc1234", "what": "x"}], "open": [],
        "notRun": []})
    text = report.render([crash, findings, swarm], findings)
    assert "**Totals**: 3 runs, 25 crash points, **1 invariant violations**; seeds [7]" in text
    assert "| crash | 2 | 2 | 25 | 0 |" in text
    assert "| swarm | 1 | 0 | 0 | 1 |" in text
    assert "- swarm-hang run 0: outage: sample had 0 running task(s)" in text
    assert "**T** (w; commit `abc1234`)" in text
    assert "findings.json`," not in text.split("## Scenarios")[0]  # not listed as a result
