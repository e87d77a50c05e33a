"""The three phases of an upgrade on the testbed (issue 6): resources → nodes → services.

3 managers + 2 workers on 17.06.0, two platform services (busybox `sleep` services labelled
`com.docker.azure.system=true`, images `local/<name>:<version>` present on every node at every
boot), the catalog's 17.06.1 mapping them to new images. In order:

1. a template ARM refuses (an unknown template function) is refused before anything is touched;
2. one rollout: the template is validated and deployed, every node is reimaged, then the first
   platform service is updated to an image whose `sleep` cannot start: swarm rolls it back and
   the rollout halts with ServiceRolledBack and swarm's reason, touching nothing more;
3. the operator fixes the image in the catalog and changes the declaration: the rollout resumes
   in the services phase and finishes all three phases.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from testbed.control import TestbedHandle
from testbed.probe import docker_get, docker_post, wait_for
from tests.e2e.common import declaration
from tests.e2e.replicas import Replicas

OLD, NEW = "17.06.0-ce-azure1", "17.06.1-ce-azure1"
SERVICES = ("meta", "guide")
TESTBED = {
    "managers": 3, "workers": 2, "reimage_seconds": 0.5,
    "image_tags": [f"local/{s}:{v}" for s in SERVICES for v in ("17.06.0", "17.06.1")],
    "broken_image_tags": ["local/meta:17.06.1-broken"],
}
FIRST = "swarm-manager000000"
SYSTEM = {"com.docker.azure.system": "true"}
NODE_WRITES = ("VirtualMachineScaleSets_Update", "VirtualMachineScaleSets_UpdateInstances")


def write_catalog(path: Path, meta: str, template: str | None = None) -> Path:
    """The bundled catalog with testbed images for the platform services of 17.06.0/17.06.1."""
    doc = yaml.safe_load(resources.files("controller").joinpath("catalog.yaml").read_text())
    for release in doc["channels"]["stable"]:
        if release["version"] == OLD:
            release["systemServices"] = {s: f"local/{s}:17.06.0" for s in SERVICES}
        if release["version"] == NEW:
            release["systemServices"] = {"meta": meta, "guide": "local/guide:17.06.1"}
            if template is not None:
                release["template"] = template
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # systemServices order: meta first
    return path


def broken_template(directory: Path) -> str:
    body = json.loads(resources.files("controller").joinpath(
        "templates", "docker4azure-v2.json").read_text())
    body["resources"][0]["name"] = "[concatt(parameters('diagnosticsStoragePrefix'), 'logs')]"
    (directory / "broken.json").write_text(json.dumps(body))
    return "broken.json"


async def create_platform_services(docker_host: str) -> None:
    for name in SERVICES:
        await docker_post(docker_host, "/services/create", {
            "Name": f"d4a-{name}",
            "Labels": {**SYSTEM, "com.docker.azure.system.name": name},
            "TaskTemplate": {"ContainerSpec": {"Image": f"local/{name}:17.06.0",
                                               "Command": ["sleep", "1000000"],
                                               "StopGracePeriod": 1_000_000_000}},
            "Mode": {"Replicated": {"Replicas": 2}},
        })


async def platform(docker_host: str) -> dict[str, dict[str, Any]]:
    found = await docker_get(docker_host, "/services")
    return {s["Spec"]["Name"]: s for s in found if s["Spec"]["Name"].startswith("d4a-")}


def image(service: dict[str, Any]) -> str:
    return str(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def reasons(events: list[dict[str, Any]], reason: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("reason") == reason]


def operations(testbed: TestbedHandle, name: str) -> list[dict[str, Any]]:
    return [r for r in testbed.arm_requests() if r["operation"] == name and r["status"] < 300]


def replicas(testbed: TestbedHandle, directory: Path, desired: Path, catalog: Path) -> Replicas:
    directory.mkdir()
    return Replicas(testbed.manager_hosts, testbed.subprocess_env(), [
        "--desired-file", str(desired), "--catalog", str(catalog), "--metrics-port", "-1",
        "--lease-duration", "3", "--resync", "3", "--polling-interval", "0.2",
        "--swarm-timeout", "5",
    ], directory)


async def test_an_invalid_template_is_refused_before_anything_is_touched(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    host = testbed.manager_hosts[FIRST]
    await create_platform_services(host)
    await wait_for(lambda: _running(host, 4), 60)
    catalog = write_catalog(tmp_path / "catalog.yaml", "local/meta:17.06.1",
                            broken_template(tmp_path))
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("stable", NEW))
    before = testbed.status()["nodes"]
    proc = await asyncio.to_thread(
        subprocess.run,
        ["swarm-upgrade", "run", "--once", "--desired-file", str(desired), "--catalog",
         str(catalog), "--docker-host", host, "--polling-interval", "0.2",
         "--metrics-port", "-1"],
        env=testbed.subprocess_env(), capture_output=True, timeout=120, check=False)
    events = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    (refusal,) = [e for e in reasons(events, "InvalidTemplate") if e["type"] == "Warning"]
    assert "concatt" in refusal["message"] and "broken.json" in refusal["message"]
    asked = [r for r in testbed.arm_requests() if r["operation"] == "Deployments_Validate"]
    assert [r["status"] for r in asked] == [400], "ARM was asked once, and refused"
    assert operations(testbed, "Deployments_CreateOrUpdate") == []
    assert [r for r in testbed.arm_requests() if r["operation"] in NODE_WRITES] == []
    after = testbed.status()["nodes"]
    assert [(n["id"], n["availability"]) for n in after] == \
        [(n["id"], n["availability"]) for n in before]
    services = await platform(host)
    assert {image(s) for s in services.values()} == {f"local/{s}:17.06.0" for s in SERVICES}


async def test_one_rollout_through_all_three_phases_halts_on_a_rollback_then_resumes(
    testbed: TestbedHandle, tmp_path: Path
) -> None:
    host = testbed.manager_hosts[FIRST]
    if not await platform(host):  # when run alone
        await create_platform_services(host)
    catalog = write_catalog(tmp_path / "catalog.yaml", "local/meta:17.06.1-broken")
    desired = tmp_path / "desired.yaml"
    desired.write_text(declaration("stable", NEW))
    first = replicas(testbed, tmp_path / "r1", desired, catalog)
    try:
        first.start()
        events = await first.wait_for(
            lambda ev: bool(reasons(ev, "ServiceRolledBack")), 420, "ServiceRolledBack")
        await wait_for(lambda: _settled(host, "d4a-meta"), 60)
    finally:
        first.stop()
    (halt, *_) = reasons(events, "ServiceRolledBack")
    assert halt["type"] == "Warning" and "d4a-meta" in halt["message"]
    assert "local/meta:17.06.1-broken" in halt["message"]
    assert "sleep" in halt["message"], "swarm's reason: the task's error"
    # Resources first, nodes next, then the services phase.
    order = [e["message"].split()[1] for e in reasons(events, "PhaseStarted")]
    assert order == ["resources", "nodes", "services"]
    assert len(operations(testbed, "Deployments_CreateOrUpdate")) == 1
    assert reasons(events, "DeploymentSucceeded")
    first_reimage = min(e["time"] for e in reasons(events, "InstanceReimaging"))
    assert max(e["time"] for e in reasons(events, "DeploymentSucceeded")) < first_reimage
    instances = testbed.status()["instances"]
    assert sorted(i["image"]["version"] for i in instances) == ["17.06.1"] * 5
    # Swarm rolled the failed update back; the second service was not touched.
    services = await platform(host)
    assert image(services["d4a-meta"]) == "local/meta:17.06.0"
    assert services["d4a-meta"]["UpdateStatus"]["State"] == "rollback_completed"
    assert image(services["d4a-guide"]) == "local/guide:17.06.0"
    assert not reasons(events, "RolloutSucceeded")
    code, shown = await show_status(testbed, host, desired)
    assert code == 3 and "phase services" in shown and "HALTED ServiceRolledBack" in shown

    # The operator fixes the image and changes the declaration: the services phase resumes.
    write_catalog(catalog, "local/meta:17.06.1")
    desired.write_text(declaration("stable", NEW).replace("nodeReadyTimeout: 3m",
                                                          "nodeReadyTimeout: 4m"))
    second = replicas(testbed, tmp_path / "r2", desired, catalog)
    try:
        second.start()
        events = await second.wait_for(
            lambda ev: bool(reasons(ev, "RolloutSucceeded")), 300, "RolloutSucceeded")
    finally:
        second.stop()
    services = await platform(host)
    assert image(services["d4a-meta"]) == "local/meta:17.06.1"
    assert image(services["d4a-guide"]) == "local/guide:17.06.1"
    updated = {e["object"] for e in reasons(events, "ServiceUpdated")}
    assert updated == {"service/d4a-meta", "service/d4a-guide"}
    completed = [e["message"].split()[1] for e in reasons(events, "PhaseCompleted")
                 if e["message"].startswith("phase ")]
    assert completed[-1] == "services"
    assert len(operations(testbed, "Deployments_CreateOrUpdate")) == 1, "not deployed again"
    assert len(operations(testbed, "VirtualMachineScaleSets_UpdateInstances")) == 5
    code, shown = await show_status(testbed, host, desired)
    assert code == 0 and "phase done" in shown, shown


async def show_status(testbed: TestbedHandle, host: str, desired: Path) -> tuple[int, str]:
    """`swarm-upgrade status` against the manager `host`: (exit code, text)."""
    proc = await asyncio.to_thread(
        subprocess.run, ["swarm-upgrade", "status", "--docker-host", host, "--desired-file",
                         str(desired)],
        env=testbed.subprocess_env(), capture_output=True, timeout=60, check=False)
    return proc.returncode, proc.stdout.decode()


async def _running(host: str, count: int) -> bool:
    tasks = await docker_get(host, '/tasks?filters={"desired-state":["running"]}')
    return sum(1 for t in tasks if t["Status"]["State"] == "running") >= count


async def _settled(host: str, name: str) -> bool:
    services = await platform(host)
    return services[name].get("UpdateStatus", {}).get("State") == "rollback_completed"
