"""The Azure adapter against the testbed's HTTPS ARM endpoint, with the real SDK clients and
DefaultAzureCredential picking up environment credentials."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.arm import ArmBudget
from controller.adapters.azure import AzurePermanent, AzureTemporary, ScaleSetClient
from testbed.arm import ArmServer
from testbed.arm.fake_driver import FakeDriver

SUB = "00000000-0000-0000-0000-0000000000aa"
RG, TENANT, CLIENT, SECRET = "swarm-rg", "tenant-1", "app-1", "very-s3cret-value"
MANAGERS, WORKERS = "swarm-manager-vmss", "swarm-worker-vmss"
OLD = {"publisher": "docker", "offer": "docker4azure", "sku": "stable", "version": "17.06.0"}
NEW = {**OLD, "version": "17.06.1"}
ROLES = {MANAGERS: "manager", WORKERS: "worker"}


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def make_server(tmp_path: Path, driver: FakeDriver) -> Callable[..., ArmServer]:
    def make(**kwargs: Any) -> ArmServer:
        server = ArmServer(driver, subscription_id=SUB, resource_group=RG, tenant_id=TENANT,
                           client_id=CLIENT, client_secret=SECRET, cert_dir=tmp_path / "certs",
                           page_size=2, **kwargs)
        server.add_scale_set(MANAGERS, "manager", {"channel": "stable"}, OLD, 3, "swarm-manager")
        server.add_scale_set(WORKERS, "worker", {"channel": "stable"}, OLD, 2, "swarm-worker")
        return server

    return make


async def _client(server: ArmServer, monkeypatch: pytest.MonkeyPatch,
                  **kwargs: Any) -> ScaleSetClient:
    for key, value in server.environment().items():
        monkeypatch.setenv(key, value)
    options: dict[str, Any] = {"polling_interval": 0.05, "retry_total": 2}
    options.update(kwargs)
    return ScaleSetClient(SUB, RG, base_url=server.url, connection_verify=str(server.ca_path),
                          **options)


@pytest.fixture
async def server(make_server: Callable[..., ArmServer]) -> AsyncIterator[ArmServer]:
    srv = make_server()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def azure(server: ArmServer, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[ScaleSetClient]:
    client = await _client(server, monkeypatch)
    yield client
    await client.close()


async def test_observe_gives_snapshot_shaped_scale_sets(azure: ScaleSetClient) -> None:
    managers, workers = await azure.observe(ROLES)
    assert managers["name"] == MANAGERS and managers["role"] == "manager"
    assert managers["tags"] == {"channel": "stable"} and managers["model"] == OLD
    assert [i["instanceId"] for i in managers["instances"]] == ["0", "1", "2"]  # 2 pages
    first = managers["instances"][0]
    assert first == {"instanceId": "0", "computerName": "swarm-manager000000", "image": OLD,
                     "latestModelApplied": True, "provisioningState": "Succeeded",
                     "powerState": "running"}
    assert [i["computerName"] for i in workers["instances"]] == \
        ["swarm-worker000000", "swarm-worker000001"]


async def test_model_image_then_reimage_one_instance(
    azure: ScaleSetClient, server: ArmServer, driver: FakeDriver
) -> None:
    assert await azure.set_model_image(WORKERS, NEW) is True
    assert await azure.set_model_image(WORKERS, NEW) is False  # already the model: no PATCH
    patches = [e for e in server.request_log if e.operation == "VirtualMachineScaleSets_Update"]
    assert len(patches) == 1
    workers = await azure.scale_set(WORKERS, "worker")
    assert workers["model"] == NEW
    assert [i["latestModelApplied"] for i in workers["instances"]] == [False, False]
    reimage = await azure.start_reimage(WORKERS, ["1"])
    await reimage.wait()
    workers = await azure.scale_set(WORKERS, "worker")
    assert workers["instances"][1]["image"] == NEW
    assert workers["instances"][1]["latestModelApplied"] is True
    assert workers["instances"][0]["image"] == OLD
    assert [c for c in driver.calls if c[0] == "reimage"] == [("reimage", WORKERS, "1", "17.06.1")]


async def test_a_failed_long_running_operation_is_permanent_with_its_code(
    azure: ScaleSetClient, server: ArmServer
) -> None:
    server.faults.fail_lro("VirtualMachineScaleSets_UpdateInstances", code="OSProvisioningTimedOut")
    await azure.set_model_image(MANAGERS, NEW)
    reimage = await azure.start_reimage(MANAGERS, ["0"])
    with pytest.raises(AzurePermanent) as caught:
        await reimage.wait()
    assert caught.value.code == "OSProvisioningTimedOut"


async def test_missing_permission_is_permanent(
    make_server: Callable[..., ArmServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_server(role_actions=["Microsoft.Compute/virtualMachineScaleSets/read",
                                         "Microsoft.Compute/virtualMachineScaleSets/*/read"]
                           ) as server:
        azure = await _client(server, monkeypatch)
        try:
            assert (await azure.scale_set(MANAGERS, "manager"))["name"] == MANAGERS
            with pytest.raises(AzurePermanent) as caught:
                await azure.set_model_image(MANAGERS, NEW)
            assert caught.value.code == "AuthorizationFailed" and caught.value.status == 403
        finally:
            await azure.close()


async def test_unknown_scale_set_is_permanent(azure: ScaleSetClient) -> None:
    with pytest.raises(AzurePermanent) as caught:
        await azure.scale_set("nope-vmss", "worker")
    assert caught.value.status == 404


async def test_throttling_is_retried_after_retry_after(
    azure: ScaleSetClient, server: ArmServer
) -> None:
    server.faults.throttle_storm(requests=1, retry_after=1)
    started = time.monotonic()
    assert (await azure.scale_set(MANAGERS, "manager"))["name"] == MANAGERS
    assert time.monotonic() - started >= 0.9  # waited as told
    statuses = [e.status for e in server.request_log if e.operation.startswith("VirtualMachine")]
    assert statuses[:2] == [429, 200]


async def test_persistent_server_errors_are_temporary(
    azure: ScaleSetClient, server: ArmServer
) -> None:
    server.faults.error("VirtualMachineScaleSets_Get", count=10, status=503,
                        code="ServiceUnavailable")
    with pytest.raises(AzureTemporary) as caught:
        await azure.scale_set(MANAGERS, "manager")
    assert caught.value.code == "ServiceUnavailable"


async def test_errors_never_carry_the_secret_or_a_token(
    make_server: Callable[..., ArmServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_server() as server:
        monkeypatch.setenv("AZURE_CLIENT_SECRET", "wrong-" + SECRET)
        for key, value in server.environment().items():
            if key != "AZURE_CLIENT_SECRET":
                monkeypatch.setenv(key, value)
        azure = ScaleSetClient(SUB, RG, base_url=server.url,
                               connection_verify=str(server.ca_path), retry_total=0)
        try:
            with pytest.raises(AzurePermanent) as caught:
                await azure.scale_set(MANAGERS, "manager")
        finally:
            await azure.close()
        assert SECRET not in str(caught.value)
        assert "Bearer" not in str(caught.value)


def test_portal_urls_follow_the_seed_format() -> None:
    client = ScaleSetClient.__new__(ScaleSetClient)
    client.subscription_id, client.resource_group = "sub-1", "rg-1"
    assert client.portal_url(MANAGERS) == (
        "https://portal.azure.com/#resource/subscriptions/sub-1/resourceGroups/rg-1/providers/"
        "Microsoft.Compute/virtualMachineScaleSets/swarm-manager-vmss/instances")


async def test_observe_cache_lists_once_then_reads_only_the_instances_it_operates_on(
    server: ArmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _client(server, monkeypatch, observe_cache=300.0)

    def count(operation: str) -> int:
        return sum(1 for e in server.request_log if e.operation == operation)

    try:
        await client.observe(ROLES)
        lists = count("VirtualMachineScaleSetVMs_List")
        await client.observe(ROLES)
        assert count("VirtualMachineScaleSetVMs_List") == lists  # from the cache: no listing
        assert await client.set_model_image(WORKERS, NEW)
        reimage = await client.start_reimage(WORKERS, ["1"])
        _, workers = await client.observe(ROLES)  # the model changed: listed again
        assert count("VirtualMachineScaleSetVMs_List") > lists
        lists = count("VirtualMachineScaleSetVMs_List")
        await reimage.wait()
        _, workers = await client.observe(ROLES)  # the operation ended: that instance re-read
        assert count("VirtualMachineScaleSetVMs_List") == lists
        assert count("VirtualMachineScaleSetVMs_Get") >= 1
        one = next(i for i in workers["instances"] if i["instanceId"] == "1")
        assert one["image"] == NEW and one["provisioningState"] == "Succeeded"
    finally:
        await client.close()


async def test_requests_wait_for_the_budget_instead_of_being_throttled(
    make_server: Callable[..., ArmServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server(enforce_throttling=True)
    server.throttle.configure(read_burst=6, read_rate=5)  # a tiny ARM: 6 reads, then 5/s
    await server.start()
    # The controller's share of that budget (80 %), as ArmBudget() is of Azure's.
    client = await _client(server, monkeypatch, budget=ArmBudget(reads=(6, 5), writes=(200, 10)))
    try:
        started = time.monotonic()
        for _ in range(8):  # 8 scale-set GETs + their list pages: far more than the burst
            await client.scale_set(WORKERS, "worker")
        took = time.monotonic() - started
    finally:
        await client.close()
        await server.stop()
    answers = [e for e in server.request_log if not e.operation.startswith("Identity_")]
    assert not [e for e in answers if e.status == 429]  # paced, never refused
    assert client.budget.waited_s > 0 and took >= len(answers) / 4 - 2


def test_budget_follows_what_arm_says_is_left() -> None:
    now = [0.0]
    budget = ArmBudget(reads=(250, 25), writes=(200, 10), clock=lambda: now[0])
    assert budget.reads.wait_s() == 0  # 200 tokens (80 % of 250)
    budget.heard(False, "10")  # another client used the subscription's reads
    for _ in range(8):
        assert budget.reads.wait_s() == 0
    assert budget.reads.wait_s() > 0  # 80 % of the 10 left, taken
    now[0] += 1.0  # 20 tokens/s (80 % of 25)
    assert budget.reads.wait_s() == 0
    budget.heard(False, "not a number")  # ignored


async def test_scale_sets_go_through_the_generated_compute_sdk_client(
    server: ArmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project's contract (issue #4): scale sets through `azure.mgmt.compute.aio`, with our
    transport (one TLS context, connections reused) and pacing policy handed to it — not a
    hand-written REST client in its place, whatever that would save."""
    from azure.mgmt.compute.aio import ComputeManagementClient

    from controller.adapters.arm import ArmPacing, ArmTransport

    client = await _client(server, monkeypatch)
    try:
        sdk = client._client
        assert isinstance(sdk, ComputeManagementClient)
        pipeline = sdk._client._pipeline
        assert isinstance(pipeline._transport, ArmTransport)
        assert any(isinstance(getattr(p, "_policy", p), ArmPacing)
                   for p in pipeline._impl_policies)
        await client.scale_set(MANAGERS, "manager")  # and it talks to the ARM endpoint
        assert server.request_log[-1].operation == "VirtualMachineScaleSetVMs_List"
    finally:
        await client.close()
