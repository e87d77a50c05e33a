"""The operator commands against a live testbed (3 managers, 2 workers on stable 17.06.0):
`status` (text and JSON), `set-version` (refusals change nothing; an accepted version is exactly
one new labelled config that the controller follows), `plan` live from the cluster.

The tests run in file order on one testbed: the last ones start a rollout.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from testbed.control import TestbedHandle
from testbed.probe import docker_get
from tests.e2e.common import arm_writes, declaration

TESTBED = {"managers": 3, "workers": 2, "reimage_seconds": 0.5}
FIRST = "swarm-manager000000"
LABEL = "swarm-upgrade.desired=true"
SWARM_UPGRADE = str(Path(sys.executable).with_name("swarm-upgrade"))  # this venv's
HOSTS = sorted([f"swarm-manager00000{i}" for i in range(3)]
               + [f"swarm-worker00000{i}" for i in range(2)])


def cli(testbed: TestbedHandle, *args: str, timeout: float = 120,
        ) -> subprocess.CompletedProcess[str]:
    """`swarm-upgrade ARGS` with nothing but the testbed's environment."""
    return subprocess.run([SWARM_UPGRADE, *args], env=testbed.subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def configs(testbed: TestbedHandle) -> list[dict[str, Any]]:
    import asyncio

    return list(asyncio.run(docker_get(testbed.env["DOCKER_HOST"], "/configs")))


def nodes_unchanged(testbed: TestbedHandle, before: list[dict[str, Any]]) -> bool:
    after = testbed.status()["nodes"]
    return [(n["id"], n["role"], n["availability"]) for n in after] == \
        [(n["id"], n["role"], n["availability"]) for n in before]


def test_status_before_any_declaration(testbed: TestbedHandle) -> None:
    proc = cli(testbed, "status", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["declaration"] is None and report["verdict"] == "none"
    assert report["lease"] is None and report["rollout"] is None and report["events"] == []
    assert sorted(n["hostname"] for n in report["nodes"]) == HOSTS
    by_host = {n["hostname"]: n for n in report["nodes"]}
    assert by_host[FIRST]["role"] == "manager" and by_host[FIRST]["leader"]
    assert by_host[FIRST]["instance"] == "swarm-manager-vmss/0"
    assert by_host["swarm-worker000001"]["instance"] == "swarm-worker-vmss/1"
    assert {n["current"] for n in report["nodes"]} == {"17.06.0-ce-azure1"}
    assert {n["state"] for n in report["nodes"]} == {"ready"}
    # read-only: it created no state object and no config, and wrote nothing to ARM
    assert configs(testbed) == [] and arm_writes(testbed) == []
    text = cli(testbed, "status")
    assert text.returncode == 0
    assert "NODE" in text.stdout and "swarm-worker000001" in text.stdout
    assert "No declaration" in text.stdout and "\x1b[" not in text.stdout  # no colour in a pipe
    secret = testbed.env["AZURE_CLIENT_SECRET"]
    assert secret not in text.stdout and secret not in proc.stdout


def test_set_version_cross_channel_is_refused_and_changes_nothing(testbed: TestbedHandle) -> None:
    before = testbed.status()["nodes"]
    proc = cli(testbed, "set-version", "17.07.0-ce-azure1", "--channel", "edge")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.startswith("REFUSED (CrossChannel)")
    assert "nothing was published" in proc.stdout
    assert configs(testbed) == [] and arm_writes(testbed) == []
    assert nodes_unchanged(testbed, before)


def test_set_version_skip_and_unknown_are_refused_with_their_codes(
    testbed: TestbedHandle,
) -> None:
    proc = cli(testbed, "set-version", "17.06.2-ce-azure1", "--output", "json")
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert result["refused"] is True and result["published"] is None
    assert [r["code"] for r in result["plan"]["reasons"]] == ["VersionSkip"]
    assert "17.06.1-ce-azure1" in result["plan"]["reasons"][0]["message"]  # the next allowed
    proc = cli(testbed, "set-version", "17.06.9-ce-azure1")
    assert proc.returncode == 3 and proc.stdout.startswith("REFUSED (UnknownVersion)")
    proc = cli(testbed, "set-version", "seventeen")  # not a version at all: bad input
    assert proc.returncode == 1 and "spec.version" in proc.stderr
    assert configs(testbed) == [] and arm_writes(testbed) == []


def test_status_and_set_version_report_an_unreachable_cluster(testbed: TestbedHandle) -> None:
    for args in (["status"], ["set-version", "17.06.1-ce-azure1"], ["plan"]):
        proc = cli(testbed, *args, "--docker-host", "unix:///nonexistent/docker.sock")
        assert proc.returncode == 4, (args, proc.stderr)
        assert "cannot reach the cluster" in proc.stderr
    env = {k: v for k, v in testbed.subprocess_env().items() if not k.startswith("AZURE_")}
    proc = subprocess.run([SWARM_UPGRADE, "status"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "--subscription-id" in proc.stderr


def test_set_version_publishes_one_labelled_config_the_controller_follows(
    testbed: TestbedHandle,
) -> None:
    dry = cli(testbed, "set-version", "17.06.1-ce-azure1", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("Dry run")
    assert configs(testbed) == []
    proc = cli(testbed, "set-version", "17.06.1-ce-azure1", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["refused"] is False and result["plan"]["verdict"] == "proceed"
    assert result["plan"]["order"][-1] == FIRST  # the manager it is run against goes last
    published = configs(testbed)
    assert len(published) == 1
    config = published[0]
    assert config["Spec"]["Name"] == result["published"]["name"]
    assert config["Spec"]["Name"].startswith("swarm-upgrade-desired-")
    assert config["Spec"]["Labels"]["swarm-upgrade.desired"] == "true"
    doc = yaml.safe_load(base64.b64decode(config["Spec"]["Data"]))
    assert doc["kind"] == "SwarmUpgrade"
    assert doc["spec"] == {"channel": "stable", "version": "17.06.1-ce-azure1"}
    # the same again: nothing new to publish
    again = cli(testbed, "set-version", "17.06.1-ce-azure1")
    assert again.returncode == 0 and again.stdout.startswith("Nothing to publish")
    assert len(configs(testbed)) == 1
    assert arm_writes(testbed) == []

    # plan, live, explains the three-phase rollout before anything is applied: the release's
    # template first, with ARM's what-if of what it changes.
    proc = cli(testbed, "plan", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    live_plan = json.loads(proc.stdout)
    assert [a["action"] for a in live_plan["next"]] == ["deploy_template"], live_plan
    assert live_plan["whatIf"], live_plan

    # The controller, with the stack's label selector, picks it up and starts the rollout: the
    # resources phase (the release's ARM template) first, then the first node. One pass each.
    events: list[dict[str, Any]] = []
    for _ in range(6):
        run = cli(testbed, "run", "--once", "--desired-config-label", LABEL,
                  "--polling-interval", "0.2", "--metrics-port", "-1")
        events += [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        if any(e["reason"] == "NodeDraining" for e in events):
            break
    loaded = [e for e in events if e["reason"] == "DeclarationLoaded"]
    assert loaded and config["Spec"]["Name"] in loaded[0]["message"], run.stdout + run.stderr
    assert any(e["reason"] == "DeploymentStarted" for e in events), events
    assert any(e["reason"] == "NodeDraining" for e in events), events

    # status now shows the declaration, the rollout, the node in flight and the last steps
    proc = cli(testbed, "status", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["declaration"]["origin"] == f"config/{config['Spec']['Name']}"
    assert report["declaration"]["version"] == "17.06.1-ce-azure1"
    assert report["rollout"]["targetVersion"] == "17.06.1-ce-azure1"
    phases = {n["hostname"]: n["phase"] for n in report["nodes"]}
    first_node = result["plan"]["order"][0]
    assert phases[first_node] == "drain"
    assert {p for h, p in phases.items() if h != first_node} == {"pending"}
    assert report["progress"] == {"upgraded": 0, "total": 5, "target": "17.06.1-ce-azure1"}
    assert report["events"][-1]["node"] == first_node and report["events"][-1]["phase"] == "drain"
    assert report["lease"] is not None and report["lease"]["active"] is False  # --once released it
    text = cli(testbed, "status", "--events", "3").stdout
    assert "Progress" in text and "0/5" in text and "Last steps" in text


def test_plan_live_uses_the_cluster_the_declaration_and_the_stored_progress(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    proc = cli(testbed, "plan", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["target"] == {"channel": "stable", "version": "17.06.1-ce-azure1"}
    assert decision["progress"]["nodes"], "the stored progress is used (a node is in flight)"
    first_node = decision["order"][0]
    assert first_node in decision["progress"]["nodes"]
    text = cli(testbed, "plan", "--output", "text")
    assert text.returncode == 0 and "in progress: " in text.stdout
    # a declaration file instead of the config objects: cross-channel is refused (exit 3)
    edge = tmp_path / "edge.yaml"
    edge.write_text(declaration("edge", "17.07.0-ce-azure1"))
    other = cli(testbed, "plan", "--desired", str(edge), "--output", "text")
    assert other.returncode == 3 and "CrossChannel" in other.stdout
    edge.write_text("spec: {}\n")
    assert cli(testbed, "plan", "--desired", str(edge)).returncode == 1
    offline = cli(testbed, "plan", "--snapshot", "tests/data/snapshot-3m2w.json")
    assert offline.returncode == 2 and "--desired: required with --snapshot" in offline.stderr
