"""Throttling (storms, token buckets), RBAC, injected errors and the request log, via the SDK."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from azure.core.exceptions import HttpResponseError
from azure.identity.aio import ClientSecretCredential
from azure.mgmt.compute.aio import ComputeManagementClient

from testbed.arm import ArmServer
from testbed.arm.routing import RESOURCE_GROUP, ArmRequest, ArmRoute, json_response

from .conftest import CLIENT, MANAGERS, RG, SECRET, TENANT


async def test_429_storm_is_retried_by_the_sdk_honouring_retry_after(
    server: ArmServer, client: ComputeManagementClient
) -> None:
    server.faults.throttle_storm(requests=2, retry_after=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ss = await client.virtual_machine_scale_sets.get(RG, MANAGERS)
    assert ss.name == MANAGERS
    assert loop.time() - started >= 2.0  # two Retry-After: 1 waits
    gets = [e.status for e in server.request_log if e.operation == "VirtualMachineScaleSets_Get"]
    assert gets == [429, 429, 200]
    assert server.counts()["VirtualMachineScaleSets_Get"]["throttled"] == 2


async def test_timed_storm_outlasting_the_retries_surfaces_429(
    server: ArmServer, make_client: Callable[..., ComputeManagementClient]
) -> None:
    server.faults.throttle_storm(seconds=30, retry_after=1)
    async with make_client(retry_total=1) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.virtual_machine_scale_sets.get(RG, MANAGERS)
    assert caught.value.status_code == 429
    assert caught.value.error.code == "TooManyRequests"
    server.faults.clear()


async def test_token_buckets_refuse_when_exhausted(
    make_server: Callable[..., ArmServer],
) -> None:
    server = make_server(enforce_throttling=True)
    server.throttle.configure(read_burst=3, read_rate=0.1)
    async with server:
        cred = ClientSecretCredential(TENANT, CLIENT, SECRET, authority=server.url,
                                      connection_verify=str(server.ca_path))
        async with cred, ComputeManagementClient(
                cred, server.subscription_id, base_url=server.url,
                connection_verify=str(server.ca_path), retry_total=0) as client:
            for _ in range(3):
                await client.virtual_machine_scale_sets.get(RG, MANAGERS)
            with pytest.raises(HttpResponseError) as caught:
                await client.virtual_machine_scale_sets.get(RG, MANAGERS)
        assert caught.value.status_code == 429
        assert 5 <= int(caught.value.response.headers["Retry-After"]) <= 10
    statuses = [e.status for e in server.request_log if not e.operation.startswith("Identity")]
    assert statuses == [200, 200, 200, 429]


async def test_ratelimit_headers_count_down(server: ArmServer, credential: object) -> None:
    remaining: list[int] = []
    # Azure's read bucket (250, refilling 25/s) would refill between calls on a stalled machine.
    server.throttle.configure(read_burst=250, read_rate=0.001)

    def hook(response: object) -> None:
        headers = response.http_response.headers  # type: ignore[attr-defined]
        remaining.append(int(headers["x-ms-ratelimit-remaining-subscription-reads"]))

    async with ComputeManagementClient(credential, server.subscription_id, base_url=server.url,
                                       connection_verify=str(server.ca_path)) as client:
        for _ in range(3):
            await client.virtual_machine_scale_sets.get(RG, MANAGERS, raw_response_hook=hook)
    assert remaining == [249, 248, 247]


async def test_missing_role_action_is_403_authorization_failed(
    make_server: Callable[..., ArmServer],
) -> None:
    server = make_server(role_actions=[
        "Microsoft.Compute/virtualMachineScaleSets/read",
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/*",
    ])
    async with server:
        cred = ClientSecretCredential(TENANT, CLIENT, SECRET, authority=server.url,
                                      connection_verify=str(server.ca_path))
        async with cred, ComputeManagementClient(
                cred, server.subscription_id, base_url=server.url,
                connection_verify=str(server.ca_path), polling_interval=0.02) as client:
            await client.virtual_machine_scale_sets.get(RG, MANAGERS)
            await client.virtual_machine_scale_set_vms.get_instance_view(RG, MANAGERS, "0")
            with pytest.raises(HttpResponseError) as caught:
                await client.virtual_machine_scale_sets.begin_update_instances(
                    RG, MANAGERS, {"instanceIds": ["0"]})
    assert caught.value.status_code == 403
    assert caught.value.error.code == "AuthorizationFailed"
    assert "Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action" in str(caught.value)


async def test_injected_500s_are_retried_then_surface(
    server: ArmServer, make_client: Callable[..., ComputeManagementClient]
) -> None:
    server.faults.error("VirtualMachineScaleSetVMs_List", count=1)
    async with make_client() as client:
        ids = [vm.instance_id async for vm in client.virtual_machine_scale_set_vms.list(
            RG, MANAGERS)]
        assert ids == ["0", "1", "2"]
        server.faults.error("VirtualMachineScaleSets_Get", count=5)
    async with make_client(retry_total=1) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.virtual_machine_scale_sets.get(RG, MANAGERS)
    assert caught.value.status_code == 500
    assert caught.value.error.code == "InternalServerError"


async def test_request_log_counts_reads_and_writes_per_operation(
    server: ArmServer, client: ComputeManagementClient, tmp_path: Path
) -> None:
    await client.virtual_machine_scale_sets.get(RG, MANAGERS)
    await (await client.virtual_machine_scale_sets.begin_update_instances(
        RG, MANAGERS, {"instanceIds": ["0"]})).result()
    counts = server.counts()
    assert counts["VirtualMachineScaleSets_Get"] == {"reads": 1, "writes": 0, "throttled": 0,
                                                     "errors": 0}
    assert counts["VirtualMachineScaleSets_UpdateInstances"]["writes"] == 1
    assert counts["Operations_Get"]["reads"] >= 1
    assert counts["*"]["writes"] == 1
    assert counts["*"]["reads"] == 1 + counts["Operations_Get"]["reads"]
    entry = server.request_log[-1].to_dict()
    assert set(entry) == {"time", "method", "path", "operation", "kind", "status", "duration"}
    dump = tmp_path / "requests.jsonl"
    server.request_log.dump(dump)
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(lines) == len(server.request_log) and lines[-1] == entry


async def test_another_provider_adds_routes_that_get_the_same_pipeline(
    make_server: Callable[..., ArmServer],
) -> None:
    """A provider module plugs in like this (deployments.py does): auth, RBAC, log, faults."""
    async def get_script(arm: ArmRequest) -> web.StreamResponse:
        return json_response({"name": arm.param("scriptName"), "properties": {}})

    server = make_server(role_actions=["Microsoft.Resources/deploymentScripts/read"])
    server.add_routes([ArmRoute(
        "GET", RESOURCE_GROUP + "/providers/Microsoft.Resources/deploymentScripts/{scriptName}",
        "DeploymentScripts_Get", "Microsoft.Resources/deploymentScripts/read", get_script)])
    async with server:
        token, _ = server.tokens.issue("sp:test")
        context = ssl.create_default_context(cafile=str(server.ca_path))
        base = f"{server.url}/subscriptions/{server.subscription_id}/resourcegroups/{RG}/providers"
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            script = f"{base}/Microsoft.Resources/deploymentScripts/d1?api-version=2023-08-01"
            async with http.get(script, headers=headers) as ok:
                assert ok.status == 200 and (await ok.json())["name"] == "d1"
            async with http.get(f"{base}/Microsoft.Compute/virtualMachineScaleSets/{MANAGERS}"
                                "?api-version=2026-04-01", headers=headers) as refused:
                assert refused.status == 403
    assert server.counts()["DeploymentScripts_Get"]["reads"] == 1


async def test_request_log_names_the_instances_a_write_asked_for(
    server: ArmServer, client: ComputeManagementClient
) -> None:
    """The reliability campaign tells from the log alone which instance was reimaged twice."""
    await (await client.virtual_machine_scale_sets.begin_update_instances(
        RG, MANAGERS, {"instanceIds": ["2", "0"]})).result()
    (upgrade,) = [e for e in server.request_log
                  if e.operation == "VirtualMachineScaleSets_UpdateInstances"]
    assert upgrade.instances == ("2", "0")
    assert upgrade.to_dict()["instances"] == ["2", "0"]
    assert all("instances" not in e.to_dict() for e in server.request_log if e is not upgrade)
