"""Microsoft.Resources deployments of the ARM endpoint, driven by the real async
azure-mgmt-resource-deployments client over HTTPS: create (LRO), get, list, validate, what-if,
refusals of broken templates, injected failures, tags on the scale sets — and fidelity: every
body deserialises into the SDK's model for the operation with every key declared."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity.aio import ClientSecretCredential
from azure.mgmt.resource.deployments import models
from azure.mgmt.resource.deployments._utils.model_base import Model, _deserialize
from azure.mgmt.resource.deployments.aio import DeploymentsMgmtClient

from testbed.arm import ArmServer

from .conftest import MANAGERS, RG, SUB, WORKERS

TEMPLATES = Path(__file__).resolve().parents[2] / "controller" / "templates"
V1 = json.loads((TEMPLATES / "docker4azure-v1.json").read_text())
V2 = json.loads((TEMPLATES / "docker4azure-v2.json").read_text())
PARAMS_V1 = {"channel": {"value": "stable"}, "swarmVersion": {"value": "17.06.0-ce-azure1"},
             "storageAccountPrefix": {"value": "mydiag"}}
PARAMS_V2 = {"channel": {"value": "stable"}, "swarmVersion": {"value": "17.06.1-ce-azure1"},
             "diagnosticsStoragePrefix": {"value": "mydiag"}}


def body(template: dict[str, Any], parameters: dict[str, Any], mode: str = "Incremental"
         ) -> dict[str, Any]:
    return {"properties": {"template": template, "parameters": parameters, "mode": mode}}


@pytest.fixture
async def deployments(server: ArmServer, credential: ClientSecretCredential
                      ) -> AsyncIterator[DeploymentsMgmtClient]:
    server.deployments.seconds = 0.2
    async with DeploymentsMgmtClient(credential, SUB, base_url=server.url,
                                     connection_verify=str(server.ca_path),
                                     polling_interval=0.02) as client:
        yield client


async def deploy(client: DeploymentsMgmtClient, name: str, template: dict[str, Any],
                 parameters: dict[str, Any]) -> models.DeploymentExtended:
    poller = await client.deployments.begin_create_or_update(RG, name, body(template, parameters))
    return await poller.result()


async def test_create_runs_as_lro_and_records_resources(
        server: ArmServer, deployments: DeploymentsMgmtClient) -> None:
    result = await deploy(deployments, "docker4azure", V1, PARAMS_V1)
    assert result.properties is not None
    assert result.properties.provisioning_state == "Succeeded"
    assert result.properties.parameters["storageAccountPrefix"]["value"] == "mydiag"
    recorded = {r["type"]: r for r in server.deployments.resources.values()}
    storage = recorded["Microsoft.Storage/storageAccounts"]
    assert storage["name"] == "mydiaglogs" and storage["location"] == "westeurope"
    assert storage["tags"] == {"channel": "stable", "version": "17.06.0-ce-azure1"}
    lb = recorded["Microsoft.Network/loadBalancers"]
    ip_id = lb["properties"]["frontendIPConfigurations"][0]["properties"]["publicIPAddress"]["id"]
    assert ip_id.endswith("/providers/Microsoft.Network/publicIPAddresses/dockerswarm-lb-public-ip")
    # The tags resource scoped to each scale set set its tags; the scale sets were not touched
    # otherwise (no model change, no instance update).
    for name in (MANAGERS, WORKERS):
        assert server.scale_set(name).tags == {"channel": "stable",
                                               "version": "17.06.0-ce-azure1"}
        assert all(i.latest_model_applied for i in server.scale_set(name).instances.values())
    got = await deployments.deployments.get(RG, "docker4azure")
    assert got.properties is not None and got.properties.output_resources
    assert got.properties.outputs["storageAccount"]["value"] == "mydiaglogs"
    listed = [d.name async for d in deployments.deployments.list_by_resource_group(RG)]
    assert listed == ["docker4azure"]


async def test_validate_accepts_a_good_template_and_refuses_a_broken_one(
        deployments: DeploymentsMgmtClient) -> None:
    poller = await deployments.deployments.begin_validate(RG, "check", body(V2, PARAMS_V2))
    ok = await poller.result()
    assert ok.error is None and ok.properties is not None
    assert len(ok.properties.validated_resources or []) == len(V2["resources"])
    broken = copy.deepcopy(V2)
    broken["resources"][0]["name"] = "[concatt(parameters('diagnosticsStoragePrefix'), 'x')]"
    with pytest.raises(HttpResponseError) as err:
        poller = await deployments.deployments.begin_validate(RG, "check", body(broken, PARAMS_V2))
        await poller.result()
    assert err.value.status_code == 400
    assert err.value.error is not None and err.value.error.code == "InvalidTemplate"
    assert "concatt" in str(err.value.error.message)


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda t, p: p.pop("channel"), "'channel' is not provided"),
    (lambda t, p: p.update(channel={"value": "nightly"}), "not part of the allowed value"),
    (lambda t, p: p.update(nope={"value": 1}), "'nope' in the parameters file are not valid"),
    (lambda t, p: p.update(logRetentionDays={"value": "7"}), "expects a value of type 'int'"),
    (lambda t, p: t["resources"][0].pop("apiVersion"), "missing the required property"),
    (lambda t, p: t.update(variables={}), "variable 'lbPublicIpName' is not found"),
])
async def test_broken_deployments_are_refused_400_invalid_template(
        server: ArmServer, deployments: DeploymentsMgmtClient, mutate: Any, words: str) -> None:
    template, parameters = copy.deepcopy(V2), copy.deepcopy(PARAMS_V2)
    mutate(template, parameters)
    with pytest.raises(HttpResponseError) as err:
        await deploy(deployments, "bad", template, parameters)
    assert err.value.status_code == 400
    assert err.value.error is not None and err.value.error.code == "InvalidTemplate"
    assert words in str(err.value.error.message)
    assert server.deployments.resources == {} and server.deployments.deployments == {}


async def test_what_if_lists_creates_modifies_and_ignores(
        server: ArmServer, deployments: DeploymentsMgmtClient) -> None:
    await deploy(deployments, "docker4azure", V1, PARAMS_V1)
    poller = await deployments.deployments.begin_what_if(RG, "next", body(V2, PARAMS_V2))
    result = await poller.result()
    assert result.status == "Succeeded" and result.properties is not None
    kinds = {c.resource_id.rsplit("/", 1)[-1] + ":" + models.ChangeType(c.change_type).value
             for c in result.properties.changes or []}
    assert "externalSSHLoadBalancer:Create" in kinds
    assert "externalLoadBalancer:Modify" in kinds  # version tag changes
    assert "dockerswarm-lb-public-ip:NoChange" in kinds
    assert "mydiaglogs:Modify" in kinds  # the renamed prefix kept the account's name
    assert "default:Modify" in kinds  # the scale sets' tags
    assert len(server.deployments.deployments) == 1, "what-if deploys nothing"


async def test_an_injected_failure_ends_the_deployment_failed(
        server: ArmServer, deployments: DeploymentsMgmtClient) -> None:
    server.faults.fail_lro("Deployments_CreateOrUpdate", code="ResourceDeploymentFailure",
                           message="storage account quota exceeded")
    with pytest.raises(HttpResponseError) as err:
        await deploy(deployments, "docker4azure", V1, PARAMS_V1)
    assert "storage account quota exceeded" in str(err.value)
    got = await deployments.deployments.get(RG, "docker4azure")
    assert got.properties is not None and got.properties.provisioning_state == "Failed"
    assert got.properties.error is not None
    assert got.properties.error.code == "ResourceDeploymentFailure"
    # A second PUT of the same name runs it again (what the controller does after a resume).
    again = await deploy(deployments, "docker4azure", V1, PARAMS_V1)
    assert again.properties is not None and again.properties.provisioning_state == "Succeeded"


async def test_a_running_deployment_refuses_a_second_put(
        server: ArmServer, deployments: DeploymentsMgmtClient) -> None:
    server.deployments.seconds = 2.0
    await deployments.deployments.begin_create_or_update(RG, "d", body(V1, PARAMS_V1))
    with pytest.raises(HttpResponseError) as err:
        await deployments.deployments.begin_create_or_update(RG, "d", body(V1, PARAMS_V1))
    assert err.value.status_code == 409 and err.value.error is not None
    assert err.value.error.code == "DeploymentActive"


async def test_unknown_deployment_and_group(deployments: DeploymentsMgmtClient) -> None:
    with pytest.raises(HttpResponseError) as err:
        await deployments.deployments.get(RG, "nope")
    assert err.value.status_code == 404
    with pytest.raises(HttpResponseError) as err:
        await deployments.deployments.get("other-rg", "nope")
    assert err.value.status_code == 404


# ---- fidelity ----


def undeclared(value: Any, raw: Any, path: str = "$") -> list[str]:
    """Keys of `raw` the deserialised models do not declare (recursively)."""
    found: list[str] = []
    if isinstance(value, Model):
        rest = type(value)._attr_to_rest_field
        fields = {rf._rest_name: attr for attr, rf in rest.items()}
        for key, item in raw.items():
            if key not in fields:
                found.append(f"{path}.{key} (not in {type(value).__name__})")
            else:
                found += undeclared(getattr(value, fields[key]), item, f"{path}.{key}")
    elif isinstance(raw, list) and isinstance(value, list):
        for index, (v, r) in enumerate(zip(value, raw, strict=True)):
            found += undeclared(v, r, f"{path}[{index}]")
    return found


async def test_every_body_fits_the_sdk_models(server: ArmServer,
                                              deployments: DeploymentsMgmtClient) -> None:
    await deploy(deployments, "docker4azure", V1, PARAMS_V1)
    provider = server.deployments
    dep = next(iter(provider.deployments.values()))
    bodies: list[tuple[Any, dict[str, Any]]] = [(models.DeploymentExtended, provider.render(dep))]
    validate = await (await deployments.deployments.begin_validate(
        RG, "v", body(V2, PARAMS_V2))).result()
    bodies.append((models.DeploymentValidateResult, validate.as_dict()))
    what_if = await (await deployments.deployments.begin_what_if(
        RG, "w", body(V2, PARAMS_V2))).result()
    bodies.append((models.WhatIfOperationResult, what_if.as_dict()))
    for model, raw in bodies:
        value = _deserialize(model, raw)
        assert undeclared(value, raw) == [], model.__name__
        assert json.loads(json.dumps(value.as_dict())).keys() == raw.keys()
    raw_dep = provider.render(dep)
    assert models.ProvisioningState(raw_dep["properties"]["provisioningState"])
    assert models.DeploymentMode(raw_dep["properties"]["mode"])
    for change in what_if.properties.changes:  # type: ignore[union-attr]
        assert models.ChangeType(change.change_type)
