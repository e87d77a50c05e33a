"""Scale sets and their VMs through the real azure-mgmt-compute async client."""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.aio import ComputeManagementClient

from testbed.arm import ArmServer
from testbed.arm.fake_driver import FakeDriver

from .conftest import IMAGE_NEW, IMAGE_OLD, MANAGERS, RG, WORKERS

NEW_MODEL = {"properties": {"virtualMachineProfile": {"storageProfile": {
    "imageReference": IMAGE_NEW}}}}


def image_of(reference: object) -> dict[str, str]:
    return {k: getattr(reference, k) for k in ("publisher", "offer", "sku", "version")}


async def test_get_scale_set(client: ComputeManagementClient) -> None:
    ss = await client.virtual_machine_scale_sets.get(RG, MANAGERS)
    assert ss.name == MANAGERS
    assert ss.tags == {"channel": "stable"}
    assert ss.sku.capacity == 3
    assert ss.properties.upgrade_policy.mode == "Manual"
    assert image_of(ss.properties.virtual_machine_profile.storage_profile.image_reference) \
        == IMAGE_OLD
    assert ss.properties.virtual_machine_profile.os_profile.computer_name_prefix \
        == "swarm-manager"


async def test_scale_set_instance_view_counts_statuses(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    driver.power[(WORKERS, "4")] = "stopped"
    view = await client.virtual_machine_scale_sets.get_instance_view(RG, WORKERS)
    counts = {s.code: s.count for s in view.virtual_machine.statuses_summary}
    assert counts == {"PowerState/running": 4, "PowerState/stopped": 1,
                      "ProvisioningState/succeeded": 5}


async def test_unknown_scale_set_is_a_404_with_an_arm_error(
    client: ComputeManagementClient,
) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        await client.virtual_machine_scale_sets.get(RG, "nope")
    assert caught.value.error.code == "ResourceNotFound"


async def test_list_scale_sets(client: ComputeManagementClient) -> None:
    names = [ss.name async for ss in client.virtual_machine_scale_sets.list(RG)]
    assert names == [MANAGERS, WORKERS]


async def test_vm_list_pages_keep_api_version_and_instance_view(
    server: ArmServer, client: ComputeManagementClient
) -> None:
    vms = [vm async for vm in client.virtual_machine_scale_set_vms.list(
        RG, WORKERS, expand="instanceView")]
    assert [vm.instance_id for vm in vms] == ["0", "1", "2", "3", "4"]
    assert [vm.properties.os_profile.computer_name for vm in vms][:2] == \
        ["swarm-worker000000", "swarm-worker000001"]
    statuses = [s.code for s in vms[0].properties.instance_view.statuses]
    assert statuses == ["ProvisioningState/succeeded", "PowerState/running"]
    lists = [e for e in server.request_log if e.operation == "VirtualMachineScaleSetVMs_List"]
    assert len(lists) == 3  # page size 2 → pages of 2, 2, 1


async def test_next_link_keeps_every_query_parameter(
    server: ArmServer, credential: object
) -> None:
    token = (await credential.get_token("https://management.azure.com/.default")).token
    url = (f"{server.url}/subscriptions/{server.subscription_id}/resourceGroups/{RG}/providers/"
           f"Microsoft.Compute/virtualMachineScaleSets/{WORKERS}/virtualMachines"
           "?api-version=2026-04-01&$expand=instanceView")
    context = ssl.create_default_context(cafile=str(server.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as page:
            body = await page.json()
    query = parse_qs(urlparse(body["nextLink"]).query)
    assert query["api-version"] == ["2026-04-01"]
    assert query["$expand"] == ["instanceView"]
    assert query["$skiptoken"] == ["2"]
    assert "instanceView" in body["value"][0]["properties"]


async def test_model_image_change_marks_instances_stale_and_filter_finds_them(
    client: ComputeManagementClient,
) -> None:
    poller = await client.virtual_machine_scale_sets.begin_update(RG, MANAGERS, NEW_MODEL)
    ss = await poller.result()
    assert image_of(ss.properties.virtual_machine_profile.storage_profile.image_reference) \
        == IMAGE_NEW
    stale = [vm.instance_id async for vm in client.virtual_machine_scale_set_vms.list(
        RG, MANAGERS, filter="properties/latestModelApplied eq false")]
    fresh = [vm.instance_id async for vm in client.virtual_machine_scale_set_vms.list(
        RG, MANAGERS, filter="properties/latestModelApplied eq true")]
    assert (stale, fresh) == (["0", "1", "2"], [])


async def test_unsupported_filter_is_refused_naming_it(client: ComputeManagementClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        [vm async for vm in client.virtual_machine_scale_set_vms.list(
            RG, MANAGERS, filter="properties/vmId eq 'x'")]
    assert caught.value.status_code == 400
    assert "properties/vmId" in str(caught.value)


async def test_model_change_through_put_and_tags(client: ComputeManagementClient) -> None:
    current = await client.virtual_machine_scale_sets.get(RG, WORKERS)
    body = current.as_dict()
    body["tags"] = {"channel": "edge"}
    body["properties"]["virtualMachineProfile"]["storageProfile"]["imageReference"] = IMAGE_NEW
    ss = await (await client.virtual_machine_scale_sets.begin_create_or_update(
        RG, WORKERS, body)).result()
    assert ss.tags == {"channel": "edge"}
    vm = await client.virtual_machine_scale_set_vms.get(RG, WORKERS, "3")
    assert vm.properties.latest_model_applied is False
    assert image_of(vm.properties.storage_profile.image_reference) == IMAGE_OLD


async def test_manual_upgrade_reimages_onto_the_model(
    server: ArmServer, driver: FakeDriver, client: ComputeManagementClient
) -> None:
    driver.gate = asyncio.Event()
    await (await client.virtual_machine_scale_sets.begin_update(RG, MANAGERS, NEW_MODEL)).result()
    poller = await client.virtual_machine_scale_sets.begin_update_instances(
        RG, MANAGERS, {"instanceIds": ["1"]})
    # Synchronously at acceptance the instance is Updating: a second request is refused.
    vm = await client.virtual_machine_scale_set_vms.get(RG, MANAGERS, "1")
    assert vm.properties.provisioning_state == "Updating"
    with pytest.raises(HttpResponseError) as busy:
        await client.virtual_machine_scale_sets.begin_update_instances(
            RG, MANAGERS, {"instanceIds": ["1"]})
    assert busy.value.status_code == 409
    driver.gate.set()
    assert await poller.result() is None
    vm = await client.virtual_machine_scale_set_vms.get(RG, MANAGERS, "1", expand="instanceView")
    assert vm.properties.provisioning_state == "Succeeded"
    assert vm.properties.latest_model_applied is True
    assert image_of(vm.properties.storage_profile.image_reference) == IMAGE_NEW
    assert vm.properties.instance_view.statuses[1].code == "PowerState/running"
    assert driver.calls == [("reimage", MANAGERS, "1", "17.06.1")]
    other = await client.virtual_machine_scale_set_vms.get(RG, MANAGERS, "0")
    assert other.properties.latest_model_applied is False


async def test_manual_upgrade_of_an_instance_on_the_model_does_not_reimage(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    await (await client.virtual_machine_scale_sets.begin_update_instances(
        RG, MANAGERS, {"instanceIds": ["0", "2"]})).result()
    assert driver.calls == []


async def test_manual_upgrade_needs_valid_instance_ids(client: ComputeManagementClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        await client.virtual_machine_scale_sets.begin_update_instances(
            RG, MANAGERS, {"instanceIds": ["9"]})
    assert caught.value.status_code == 400
    assert caught.value.error.code == "InvalidParameter"


async def test_injected_lro_failure_surfaces_with_its_code(
    server: ArmServer, driver: FakeDriver, client: ComputeManagementClient
) -> None:
    await (await client.virtual_machine_scale_sets.begin_update(RG, WORKERS, NEW_MODEL)).result()
    server.faults.fail_lro("VirtualMachineScaleSets_UpdateInstances", instance_id="2")
    poller = await client.virtual_machine_scale_sets.begin_update_instances(
        RG, WORKERS, {"instanceIds": ["2"]})
    with pytest.raises(HttpResponseError) as caught:
        await poller.result()
    assert caught.value.error.code == "OSProvisioningTimedOut"
    assert "instance '2'" in caught.value.error.message
    view = await client.virtual_machine_scale_set_vms.get_instance_view(RG, WORKERS, "2")
    assert view.statuses[0].code == "ProvisioningState/failed/OSProvisioningTimedOut"
    assert driver.calls == []
    # The fault was consumed: a retry reimages.
    await (await client.virtual_machine_scale_sets.begin_update_instances(
        RG, WORKERS, {"instanceIds": ["2"]})).result()
    assert driver.calls == [("reimage", WORKERS, "2", "17.06.1")]


async def test_boot_error_from_the_driver_fails_the_lro(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    await (await client.virtual_machine_scale_sets.begin_update(RG, WORKERS, NEW_MODEL)).result()
    driver.boot_errors[(WORKERS, "0")] = "VMStartTimedOut"
    poller = await client.virtual_machine_scale_sets.begin_update_instances(
        RG, WORKERS, {"instanceIds": ["0", "1"]})
    with pytest.raises(HttpResponseError) as caught:
        await poller.result()
    assert caught.value.error.code == "VMStartTimedOut"
    vm0 = await client.virtual_machine_scale_set_vms.get(RG, WORKERS, "0")
    vm1 = await client.virtual_machine_scale_set_vms.get(RG, WORKERS, "1")
    assert (vm0.properties.provisioning_state, vm0.properties.latest_model_applied) == \
        ("Failed", False)
    assert (vm1.properties.provisioning_state, vm1.properties.latest_model_applied) == \
        ("Succeeded", True)


async def test_never_booting_instance_stops_and_times_out(
    server: ArmServer, driver: FakeDriver, client: ComputeManagementClient
) -> None:
    await (await client.virtual_machine_scale_sets.begin_update(RG, WORKERS, NEW_MODEL)).result()
    server.faults.never_boots(WORKERS, "3", seconds=0.3)
    poller = await client.virtual_machine_scale_sets.begin_update_instances(
        RG, WORKERS, {"instanceIds": ["3"]})
    with pytest.raises(HttpResponseError, match="OSProvisioningTimedOut"):
        await poller.result()
    view = await client.virtual_machine_scale_set_vms.get_instance_view(RG, WORKERS, "3")
    assert [s.code for s in view.statuses] == [
        "ProvisioningState/failed/OSProvisioningTimedOut", "PowerState/stopped"]
    assert driver.calls == [("power_off", WORKERS, "3")]


async def test_a_driver_boot_that_hangs_times_out(
    server: ArmServer, driver: FakeDriver, client: ComputeManagementClient
) -> None:
    server.boot_timeout = 0.3
    driver.hang.add((WORKERS, "0"))
    poller = await client.virtual_machine_scale_set_vms.begin_reimage(RG, WORKERS, "0")
    with pytest.raises(HttpResponseError, match="OSProvisioningTimedOut"):
        await poller.result()


async def test_instance_actions(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    vms = client.virtual_machine_scale_set_vms
    await (await vms.begin_power_off(RG, WORKERS, "1")).result()
    assert (await vms.get_instance_view(RG, WORKERS, "1")).statuses[1].code \
        == "PowerState/stopped"
    await (await vms.begin_start(RG, WORKERS, "1")).result()
    await (await vms.begin_restart(RG, WORKERS, "1")).result()
    await (await vms.begin_reimage(RG, WORKERS, "1")).result()
    await (await vms.begin_delete(RG, WORKERS, "4")).result()
    assert [c[0] for c in driver.calls] == ["power_off", "start", "restart", "reimage", "delete"]
    assert driver.calls[3] == ("reimage", WORKERS, "1", "17.06.0")  # onto its current image
    ids = [vm.instance_id async for vm in vms.list(RG, WORKERS)]
    assert ids == ["0", "1", "2", "3"]
    assert (await client.virtual_machine_scale_sets.get(RG, WORKERS)).sku.capacity == 4
    with pytest.raises(ResourceNotFoundError):
        await vms.get(RG, WORKERS, "4")


async def test_scale_set_level_actions(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    sets = client.virtual_machine_scale_sets
    await (await sets.begin_restart(RG, MANAGERS, {"instanceIds": ["0"]})).result()
    await (await sets.begin_power_off(RG, MANAGERS, {"instanceIds": ["1", "2"]})).result()
    await (await sets.begin_start(RG, MANAGERS, {"instanceIds": ["1", "2"]})).result()
    await (await sets.begin_reimage(RG, MANAGERS, {"instanceIds": ["2"]})).result()
    await (await sets.begin_delete_instances(RG, MANAGERS, {"instanceIds": ["2"]})).result()
    kinds = sorted(c[0] for c in driver.calls)
    assert kinds == sorted(["restart", "power_off", "power_off", "start", "start", "reimage",
                            "delete"])
    assert (await sets.get(RG, MANAGERS)).sku.capacity == 2


async def test_create_scale_set_boots_its_instances_and_scale_out(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    body = {
        "location": "westeurope",
        "tags": {"channel": "stable", "role": "worker"},
        "sku": {"name": "Standard_D2s_v3", "capacity": 2},
        "properties": {
            "upgradePolicy": {"mode": "Manual"},
            "virtualMachineProfile": {
                "osProfile": {"computerNamePrefix": "extra"},
                "storageProfile": {"imageReference": IMAGE_NEW},
            },
        },
    }
    sets = client.virtual_machine_scale_sets
    ss = await (await sets.begin_create_or_update(RG, "extra-vmss", body)).result()
    assert ss.properties.provisioning_state == "Succeeded"
    assert ss.sku.capacity == 2
    assert sorted(driver.calls) == [("boot", "extra-vmss", "0", "17.06.1"),
                                    ("boot", "extra-vmss", "1", "17.06.1")]
    ss = await (await sets.begin_update(RG, "extra-vmss", {"sku": {"capacity": 3}})).result()
    assert ss.sku.capacity == 3
    vm = await client.virtual_machine_scale_set_vms.get(RG, "extra-vmss", "2")
    assert vm.properties.os_profile.computer_name == "extra000002"
    assert vm.properties.provisioning_state == "Succeeded"


async def test_bad_upgrade_mode_is_refused_naming_field_and_value(
    client: ComputeManagementClient,
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        await client.virtual_machine_scale_sets.begin_update(
            RG, MANAGERS, {"properties": {"upgradePolicy": {"mode": "Sometimes"}}})
    assert caught.value.status_code == 400
    assert "upgradePolicy.mode" in str(caught.value) and "Sometimes" in str(caught.value)
    ss = await client.virtual_machine_scale_sets.get(RG, MANAGERS)
    assert ss.properties.upgrade_policy.mode == "Manual"


async def test_slow_operation_takes_longer(
    server: ArmServer, client: ComputeManagementClient
) -> None:
    server.faults.slow("VirtualMachineScaleSetVMs_Restart", 0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await (await client.virtual_machine_scale_set_vms.begin_restart(RG, WORKERS, "0")).result()
    assert loop.time() - started >= 0.5


async def test_scale_in_deletes_the_highest_instances(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    ss = await (await client.virtual_machine_scale_sets.begin_update(
        RG, WORKERS, {"sku": {"capacity": 3}})).result()
    assert ss.sku.capacity == 3
    assert sorted(driver.calls) == [("delete", WORKERS, "3"), ("delete", WORKERS, "4")]
    ids = [vm.instance_id async for vm in client.virtual_machine_scale_set_vms.list(RG, WORKERS)]
    assert ids == ["0", "1", "2"]


async def test_delete_scale_set(driver: FakeDriver, client: ComputeManagementClient) -> None:
    await (await client.virtual_machine_scale_sets.begin_delete(RG, MANAGERS)).result()
    assert sorted(c[2] for c in driver.calls if c[0] == "delete") == ["0", "1", "2"]
    with pytest.raises(ResourceNotFoundError):
        await client.virtual_machine_scale_sets.get(RG, MANAGERS)


async def test_scale_set_added_unbooted_is_booted_by_the_server(
    server: ArmServer, driver: FakeDriver, client: ComputeManagementClient
) -> None:
    driver.gate = asyncio.Event()
    server.add_scale_set("late-vmss", "worker", {}, IMAGE_NEW, 2, "late", booted=False)
    vm = await client.virtual_machine_scale_set_vms.get(RG, "late-vmss", "1")
    assert vm.properties.provisioning_state == "Creating"
    driver.gate.set()
    await server.operations.wait_all()
    vm = await client.virtual_machine_scale_set_vms.get(RG, "late-vmss", "1")
    assert vm.properties.provisioning_state == "Succeeded"
    assert sorted(driver.calls) == [("boot", "late-vmss", "0", "17.06.1"),
                                    ("boot", "late-vmss", "1", "17.06.1")]


async def test_manual_upgrade_of_several_instances_runs_them_together(
    server: ArmServer, driver: FakeDriver, client: ComputeManagementClient
) -> None:
    driver.boot_delay = 0.2
    await (await client.virtual_machine_scale_sets.begin_update(RG, WORKERS, NEW_MODEL)).result()
    await (await client.virtual_machine_scale_sets.begin_update_instances(
        RG, WORKERS, {"instanceIds": ["0", "1", "2"]})).result()
    assert driver.max_booting == 3
    stale = [vm.instance_id async for vm in client.virtual_machine_scale_set_vms.list(
        RG, WORKERS, filter="properties/latestModelApplied eq false")]
    assert stale == ["3", "4"]


async def test_model_change_during_an_upgrade_leaves_the_instance_stale(
    driver: FakeDriver, client: ComputeManagementClient
) -> None:
    newer = {**IMAGE_NEW, "version": "17.06.2"}
    driver.gate = asyncio.Event()
    sets = client.virtual_machine_scale_sets
    await (await sets.begin_update(RG, WORKERS, NEW_MODEL)).result()
    poller = await sets.begin_update_instances(RG, WORKERS, {"instanceIds": ["0"]})
    await (await sets.begin_update(RG, WORKERS, {"properties": {"virtualMachineProfile": {
        "storageProfile": {"imageReference": newer}}}})).result()
    driver.gate.set()
    await poller.result()
    vm = await client.virtual_machine_scale_set_vms.get(RG, WORKERS, "0")
    assert image_of(vm.properties.storage_profile.image_reference) == IMAGE_NEW
    assert vm.properties.latest_model_applied is False
    await (await sets.begin_update_instances(RG, WORKERS, {"instanceIds": ["0"]})).result()
    vm = await client.virtual_machine_scale_set_vms.get(RG, WORKERS, "0")
    assert image_of(vm.properties.storage_profile.image_reference) == newer
    assert vm.properties.latest_model_applied is True
