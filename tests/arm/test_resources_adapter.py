"""The resource-group adapter (controller/adapters/resources.py) against the HTTPS ARM endpoint:
deployments in snapshot shape, the template check (valid with what-if, or ARM's refusal as
`valid: false`), an idempotent deploy, and errors mapped like the compute adapter's."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.identity.aio import ClientSecretCredential

from controller.adapters.azure import AzurePermanent, AzureTemporary
from controller.adapters.resources import ResourceGroupClient
from controller.observed import Deployment, TemplateCheck
from testbed.arm import ArmServer

from .conftest import RG, SUB

TEMPLATES = Path(__file__).resolve().parents[2] / "controller" / "templates"
V1 = json.loads((TEMPLATES / "docker4azure-v1.json").read_text())
V2 = json.loads((TEMPLATES / "docker4azure-v2.json").read_text())
P1 = {"channel": "stable", "swarmVersion": "17.06.0-ce-azure1", "storageAccountPrefix": "diag"}
P2 = {"channel": "stable", "swarmVersion": "17.06.1-ce-azure1", "diagnosticsStoragePrefix": "diag"}


@pytest.fixture
async def rg(server: ArmServer, credential: ClientSecretCredential
             ) -> AsyncIterator[ResourceGroupClient]:
    server.deployments.seconds = 0.2
    async with ResourceGroupClient(SUB, RG, credential=credential, base_url=server.url,
                                   polling_interval=0.02, retry_total=0, timeout=10,
                                   connection_verify=str(server.ca_path)) as client:
        yield client


async def settle(rg: ResourceGroupClient, name: str) -> dict[str, object]:
    for _ in range(100):
        found = {d["name"]: d for d in await rg.deployments()}
        if found.get(name, {}).get("provisioningState") in ("Succeeded", "Failed"):
            return found[name]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never settled")


async def test_deploy_then_observe_in_snapshot_shape(rg: ResourceGroupClient) -> None:
    assert await rg.deployments() == []
    await rg.deploy("docker4azure", V1, P1)
    await rg.deploy("docker4azure", V1, P1)  # while running: left alone, no error
    dep = Deployment.from_dict(await settle(rg, "docker4azure"), "deployments[0]")
    assert dep.provisioning_state == "Succeeded" and dep.timestamp > 0
    assert dep.parameters["storageAccountPrefix"] == "diag"


async def test_template_check_valid_with_what_if(rg: ResourceGroupClient) -> None:
    await rg.deploy("docker4azure", V1, P1)
    await settle(rg, "docker4azure")
    raw = await rg.check_template("swarm-upgrade-17.06.1-ce-azure1", V2, P2, "d" * 64)
    check = TemplateCheck.from_dict(raw, "templateCheck")
    assert check.valid and check.template_digest == "d" * 64
    kinds = {c.change_type for c in check.changes}
    assert {"Create", "Modify", "NoChange"} <= kinds


async def test_template_check_reports_arms_refusal(rg: ResourceGroupClient) -> None:
    broken = copy.deepcopy(V2)
    broken["resources"][1]["name"] = "[variables('nope')]"
    check = TemplateCheck.from_dict(
        await rg.check_template("swarm-upgrade-x", broken, P2, "d"), "templateCheck")
    assert not check.valid and check.code == "InvalidTemplate"
    assert "'nope' is not found" in check.message and check.changes == ()


async def test_errors_are_mapped(server: ArmServer, rg: ResourceGroupClient) -> None:
    server.faults.error("Deployments_ListByResourceGroup", status=503, code="ServerBusy")
    with pytest.raises(AzureTemporary):
        await rg.deployments()
    server.faults.error("Deployments_CreateOrUpdate", status=403, code="AuthorizationFailed")
    with pytest.raises(AzurePermanent) as err:
        await rg.deploy("d", V1, P1)
    assert err.value.code == "AuthorizationFailed"


async def test_observe_cache_lists_again_only_after_a_deploy_and_while_one_runs(
    server: ArmServer, credential: ClientSecretCredential
) -> None:
    server.deployments.seconds = 0.5

    def lists() -> int:
        return sum(1 for e in server.request_log
                   if e.operation == "Deployments_ListByResourceGroup")

    async with ResourceGroupClient(SUB, RG, credential=credential, base_url=server.url,
                                   polling_interval=0.02, retry_total=0, timeout=10,
                                   connection_verify=str(server.ca_path),
                                   observe_cache=300.0) as rg:
        assert await rg.deployments() == []
        before = lists()
        assert await rg.deployments() == []  # from the cache: no request
        assert lists() == before
        await rg.deploy("docker4azure", V1, P1)
        running = {d["name"]: d for d in await rg.deployments()}  # listed again after a deploy
        assert lists() == before + 1
        assert running["docker4azure"]["provisioningState"] not in ("Succeeded", "Failed")
        await rg.deployments()  # running, but read less than 2 s ago: from the cache
        assert lists() == before + 1
        await asyncio.sleep(2.1)
        done = {d["name"]: d for d in await rg.deployments()}  # running: read again
        assert done["docker4azure"]["provisioningState"] == "Succeeded"
        assert lists() == before + 2
        await rg.deployments()  # nothing runs any more: from the cache
        assert lists() == before + 2
