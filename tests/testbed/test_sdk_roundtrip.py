"""The real Azure SDKs, configured only by the env file, upgrade a real instance of the testbed.

The client runs in a subprocess whose environment is exactly os.environ + testbed.env (so
SSL_CERT_FILE is in place before aiohttp is imported, as for the controller): list, set the model
image, manual upgrade awaited through the SDK poller, then the instance runs the new image with
latestModelApplied true - and the swarm shows a new node id under the same hostname.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity.aio import ClientSecretCredential
from azure.mgmt.compute.aio import ComputeManagementClient

from testbed.control import TestbedHandle
from testbed.probe import engine_labels, ready_node, state, swarm_nodes, wait_for

TESTBED = {"managers": 3, "workers": 2, "with_arm": True}

CLIENT = r"""
import asyncio, json, os
from azure.identity.aio import ClientSecretCredential
from azure.mgmt.compute.aio import ComputeManagementClient

RG, WORKERS = os.environ["AZURE_RESOURCE_GROUP"], "swarm-worker-vmss"
NEW = {"publisher": "docker", "offer": "docker4azure", "sku": "stable", "version": "17.06.1"}

def image(ref):
    return {k: getattr(ref, k) for k in ("publisher", "offer", "sku", "version")}

async def main():
    out = {}
    cred = ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"],
                                  os.environ["AZURE_CLIENT_SECRET"])
    async with cred, ComputeManagementClient(cred, os.environ["AZURE_SUBSCRIPTION_ID"],
                                             base_url=os.environ["AZURE_ARM_ENDPOINT"],
                                             polling_interval=0.2) as client:
        vms = [vm async for vm in client.virtual_machine_scale_set_vms.list(RG, WORKERS)]
        out["listed"] = {vm.instance_id: [vm.os_profile.computer_name if vm.os_profile else None,
                                          image(vm.storage_profile.image_reference)]
                         for vm in vms}
        patch = {"properties": {"virtualMachineProfile": {"storageProfile": {
            "imageReference": NEW}}}}
        poller = await client.virtual_machine_scale_sets.begin_update(RG, WORKERS, patch)
        ss = await poller.result()
        out["model"] = image(ss.virtual_machine_profile.storage_profile.image_reference)
        stale = await client.virtual_machine_scale_set_vms.get(RG, WORKERS, "1")
        out["staleBefore"] = stale.latest_model_applied
        poller = await client.virtual_machine_scale_sets.begin_update_instances(
            RG, WORKERS, {"instanceIds": ["1"]})
        out["result"] = await poller.result()
        vm = await client.virtual_machine_scale_set_vms.get(RG, WORKERS, "1", expand="instanceView")
        out["after"] = {"image": image(vm.storage_profile.image_reference),
                        "latestModelApplied": vm.latest_model_applied,
                        "provisioningState": vm.provisioning_state,
                        "statuses": [s.code for s in vm.instance_view.statuses]}
    print(json.dumps(out))

asyncio.run(main())
"""


async def test_real_sdk_manual_upgrade_reimages_a_real_node(testbed: TestbedHandle) -> None:
    assert set(testbed.env) >= {
        "DOCKER_HOST",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_AUTHORITY_HOST",
        "AZURE_ARM_ENDPOINT",
        "SSL_CERT_FILE",
        "TESTBED_DIR",
    }
    host = testbed.env["DOCKER_HOST"]
    old = await ready_node(host, "swarm-worker000001")
    assert old is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        env=testbed.subprocess_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    out = json.loads(stdout)
    old_image = {
        "publisher": "docker",
        "offer": "docker4azure",
        "sku": "stable",
        "version": "17.06.0",
    }
    assert out["listed"]["1"][1] == old_image
    assert out["model"]["version"] == "17.06.1"
    assert out["staleBefore"] is False
    assert out["result"] is None
    assert out["after"]["image"]["version"] == "17.06.1"
    assert out["after"]["latestModelApplied"] is True
    assert out["after"]["provisioningState"] == "Succeeded"
    assert "PowerState/running" in out["after"]["statuses"]

    new = await wait_for(lambda: ready_node(host, "swarm-worker000001", exclude=[old["ID"]]))
    assert engine_labels(new)["azure.image.version"] == "17.06.1"

    async def old_is_down() -> bool:
        return any(n["ID"] == old["ID"] and state(n) == "down" for n in await swarm_nodes(host))

    await wait_for(old_is_down, wait_s=10)
    ops = {e["operation"] for e in testbed.arm_requests()}
    assert any("updateInstances" in op or "UpdateInstances" in op for op in ops), ops


async def test_a_never_booting_instance_fails_the_sdk_upgrade_with_os_provisioning_timed_out(
    testbed: TestbedHandle,
) -> None:
    env = testbed.env
    ca = env["SSL_CERT_FILE"]
    await testbed.afault("never-boots", "swarm-worker000000")
    cred = ClientSecretCredential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority=env["AZURE_AUTHORITY_HOST"],
        connection_verify=ca,
    )
    async with (
        cred,
        ComputeManagementClient(
            cred,
            env["AZURE_SUBSCRIPTION_ID"],
            base_url=env["AZURE_ARM_ENDPOINT"],
            connection_verify=ca,
            polling_interval=0.2,
        ) as client,
    ):
        rg = env["AZURE_RESOURCE_GROUP"]
        poller = await client.virtual_machine_scale_sets.begin_update_instances(
            rg, "swarm-worker-vmss", {"instanceIds": ["0"]}
        )
        with pytest.raises(HttpResponseError) as caught:
            await poller.result()
        vm = await client.virtual_machine_scale_set_vms.get(rg, "swarm-worker-vmss", "0")
    assert "OSProvisioningTimedOut" in str(caught.value)
    assert vm.provisioning_state == "Failed"
    inst = {i["computerName"]: i for i in (await testbed.astatus())["instances"]}
    assert inst["swarm-worker000000"]["dockerdPid"] is None  # wiped, and its OS never came up
