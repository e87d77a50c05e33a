"""`swarm-upgrade plan`: exit codes, JSON keys, text output, bad input files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main

ROOT = Path(__file__).resolve().parents[2]
DESIRED = ROOT / "manifests" / "desired.example.yaml"
SNAPSHOT = ROOT / "tests" / "data" / "snapshot-3m2w.json"


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SNAPSHOT.read_text())
    return data


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_json_output_of_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plan(capsys, "--desired", str(DESIRED), "--snapshot", str(SNAPSHOT))
    assert code == 0
    doc = json.loads(out)
    assert {"verdict", "reasons", "order", "next"} <= set(doc)
    assert doc["verdict"] == "proceed"
    assert all({"code", "message"} <= set(r) for r in doc["reasons"])
    assert doc["order"] == [
        "swarm-manager000001",
        "swarm-manager000002",
        "swarm-worker000000",
        "swarm-worker000001",
        "swarm-manager000000",
    ]
    assert doc["next"] == [
        {
            "action": "drain",
            "node": "swarm-manager000001",
            "scaleSet": "swarm-manager-vmss",
            "instanceId": "1",
            "nodeId": "mgr1bbbbbbbbbbbbbbbbbbbbb",
        }
    ]


def test_text_output_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plan(
        capsys, "--desired", str(DESIRED), "--snapshot", str(SNAPSHOT), "--output", "text"
    )
    assert code == 0
    assert "verdict: proceed" in out
    assert "1. swarm-manager000001  17.06.0-ce-azure1 → 17.06.1-ce-azure1" in out
    assert "5. swarm-manager000000" in out and "(this manager)" in out
    assert "drain: swarm-manager000001" in out


def test_progress_file_continues_the_rollout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, out, _ = plan(capsys, "--desired", str(DESIRED), "--snapshot", str(SNAPSHOT))
    progress = write(tmp_path, "progress.json", json.loads(out)["progress"])
    code, out, _ = plan(
        capsys,
        "--desired",
        str(DESIRED),
        "--snapshot",
        str(SNAPSHOT),
        "--progress",
        progress,
        "--now",
        "1764172900",
    )
    assert code == 0
    doc = json.loads(out)
    # the drain has not taken effect in the (unchanged) snapshot: it is asked again, nothing else
    assert [(a["action"], a["node"]) for a in doc["next"]] == [("drain", "swarm-manager000001")]


def test_refused_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = snapshot_data()
    data["nodes"] = [n for n in data["nodes"] if n["hostname"] != "swarm-manager000002"]
    data["scaleSets"][0]["instances"] = data["scaleSets"][0]["instances"][:2]
    code, out, _ = plan(
        capsys, "--desired", str(DESIRED), "--snapshot", write(tmp_path, "s.json", data)
    )
    assert code == 3
    doc = json.loads(out)
    assert doc["verdict"] == "refused" and doc["next"] == []
    assert [r["code"] for r in doc["reasons"]] == ["TooFewManagers"]


def test_halted_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, out, _ = plan(capsys, "--desired", str(DESIRED), "--snapshot", str(SNAPSHOT))
    progress = json.loads(out)["progress"]
    progress["halted"] = {"code": "NodeTimeout", "message": "x timed out", "node": "x", "at": 1.0}
    code, out, _ = plan(
        capsys,
        "--desired",
        str(DESIRED),
        "--snapshot",
        str(SNAPSHOT),
        "--progress",
        write(tmp_path, "p.json", progress),
    )
    assert code == 3 and json.loads(out)["verdict"] == "halted"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("s.json", "{not json", "s.json: the snapshot is not JSON"),
        ("s.json", {"nodes": [{"id": "x"}], "scaleSets": []}, "s.json: nodes[0].hostname"),
        (
            "s.json",
            {"nodes": [], "scaleSets": [{"name": "a", "role": "boss"}]},
            "s.json: scaleSets[0].role: 'boss' is not one of manager, worker",
        ),
    ],
)
def test_bad_snapshot_exits_1_naming_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: Any, message: str
) -> None:
    path = write(tmp_path, name, content)
    code, out, err = plan(capsys, "--desired", str(DESIRED), "--snapshot", path)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(str(tmp_path / message.split(":")[0]) + ":")
    assert message.split(": ", 1)[1] in err


def test_missing_snapshot_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = plan(capsys, "--desired", str(DESIRED), "--snapshot", str(tmp_path / "no"))
    assert code == 1 and "cannot read the snapshot" in err


def test_bad_desired_exits_1_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = write(tmp_path, "d.yaml", DESIRED.read_text().replace("channel: stable", "channel: 7"))
    code, out, err = plan(capsys, "--desired", bad, "--snapshot", str(SNAPSHOT))
    assert code == 1 and out == ""
    assert err.startswith(f"{bad}: spec.channel")


def test_bad_progress_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path, "p.json", {"channel": "stable"})
    code, _, err = plan(
        capsys, "--desired", str(DESIRED), "--snapshot", str(SNAPSHOT), "--progress", bad
    )
    assert code == 1 and err.startswith(f"{bad}: rolloutId")


def test_console_script_runs_the_demo_command() -> None:
    exe = Path(sys.executable).with_name("swarm-upgrade")
    proc = subprocess.run(
        [
            str(exe),
            "plan",
            "--desired",
            str(DESIRED),
            "--snapshot",
            str(SNAPSHOT),
            "--output",
            "text",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdict: proceed" in proc.stdout


def test_refused_text_says_nothing_is_touched(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = snapshot_data()
    data["scaleSets"][1]["tags"]["channel"] = "edge"
    code, out, _ = plan(
        capsys,
        "--desired",
        str(DESIRED),
        "--snapshot",
        write(tmp_path, "s.json", data),
        "--output",
        "text",
    )
    assert code == 3
    assert "verdict: refused" in out and "CrossChannel: scale set swarm-worker-vmss" in out
    assert "nothing is touched: fix the reasons above" in out
