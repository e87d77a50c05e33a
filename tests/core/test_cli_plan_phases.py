"""`swarm-upgrade plan` on a snapshot with the phases' observations: the resources phase comes
first, and the text shows what the release's template changes (ARM's what-if) before it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.catalog import load_catalog
from controller.cli import main

ROOT = Path(__file__).resolve().parents[2]
DESIRED = ROOT / "manifests" / "desired.example.yaml"
SNAPSHOT = ROOT / "tests" / "data" / "snapshot-3m2w.json"


def snapshot(tmp_path: Path, **extra: Any) -> str:
    data = {**json.loads(SNAPSHOT.read_text()), **extra}
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(data))
    return str(path)


def check(valid: bool = True) -> dict[str, Any]:
    release = load_catalog().release("stable", "17.06.1-ce-azure1")
    assert release is not None and release.template is not None
    return {"deployment": "swarm-upgrade-17.06.1-ce-azure1",
            "templateDigest": release.template.digest, "valid": valid,
            "changes": [] if not valid else [
                {"resourceId": "/subscriptions/s/resourceGroups/rg/providers/"
                               "Microsoft.Network/loadBalancers/externalSSHLoadBalancer",
                 "changeType": "Create"}],
            **({} if valid else {"error": {"code": "InvalidTemplate", "message": "bad"}})}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["plan", "--desired", str(DESIRED), *args])
    return code, capsys.readouterr().out


def test_the_template_is_deployed_first_and_its_what_if_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = snapshot(tmp_path, deployments=[], services=[], templateCheck=check())
    code, out = run(capsys, "--snapshot", path, "--output", "text")
    assert code == 0 and "verdict: proceed" in out
    assert "Phase: resources" in out
    assert "What the release's template changes (ARM what-if):" in out
    assert "Create    /subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/" in out
    assert "deploy_template: swarm-upgrade-17.06.1-ce-azure1 (Incremental)" in out
    code, out = run(capsys, "--snapshot", path)
    doc = json.loads(out)
    assert doc["phase"] == "resources" and doc["whatIf"][0]["changeType"] == "Create"
    assert [a["action"] for a in doc["next"]] == ["deploy_template"]


def test_a_template_arm_refuses_is_exit_3(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = snapshot(tmp_path, deployments=[], services=[], templateCheck=check(False))
    code, out = run(capsys, "--snapshot", path, "--output", "text")
    assert code == 3 and "verdict: refused" in out and "InvalidTemplate" in out


def test_an_older_snapshot_plans_the_node_phase_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--snapshot", str(SNAPSHOT))
    assert code == 0 and json.loads(out)["next"][0]["action"] == "drain"
