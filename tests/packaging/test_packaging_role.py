"""manifests/azure-role.json is enough for every Azure call the controller makes, and each of its
actions is needed: the controller's own Azure adapter (real SDK, DefaultAzureCredential) against
the testbed's HTTPS ARM endpoint enforcing the role's action list."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controller import phases
from controller.adapters.azure import AzurePermanent, ScaleSetClient
from controller.adapters.resources import ResourceGroupClient
from controller.catalog import load_catalog
from testbed.arm import ArmServer
from testbed.arm.fake_driver import FakeDriver

ROLE = json.loads((Path(__file__).resolve().parents[2] / "manifests/azure-role.json").read_text())
SUB = "00000000-0000-0000-0000-0000000000bb"
RG, TENANT, CLIENT, SECRET = "swarm-rg", "tenant-1", "app-1", "role-test-secret"
MANAGERS, WORKERS = "swarm-manager-vmss", "swarm-worker-vmss"
OLD = {"publisher": "docker", "offer": "docker4azure", "sku": "stable", "version": "17.06.0"}
NEW = {**OLD, "version": "17.06.1"}


@asynccontextmanager
async def controller_against_arm(
    actions: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ScaleSetClient]:
    server = ArmServer(FakeDriver(), subscription_id=SUB, resource_group=RG, tenant_id=TENANT,
                       client_id=CLIENT, client_secret=SECRET, cert_dir=tmp_path / "certs",
                       role_actions=actions)  # fmt: skip
    server.add_scale_set(MANAGERS, "manager", {"channel": "stable"}, OLD, 3, "swarm-manager")
    server.add_scale_set(WORKERS, "worker", {"channel": "stable"}, OLD, 2, "swarm-worker")
    await server.start()
    for key, value in server.environment().items():
        monkeypatch.setenv(key, value)
    client = ScaleSetClient(SUB, RG, base_url=server.url, connection_verify=str(server.ca_path),
                            polling_interval=0.05, retry_total=0)  # fmt: skip
    try:
        yield client
    finally:
        await client.close()
        await server.stop()


async def resource_group_step(azure: ScaleSetClient) -> None:
    """Everything the resources phase asks of Azure: list the deployments, validate and what-if
    the release's template, deploy it (ARM also checks the write of every resource in it)."""
    release = load_catalog().release("stable", "17.06.1-ce-azure1")
    assert release is not None and release.template is not None
    rg = ResourceGroupClient(SUB, RG, credential=azure.credential, base_url=azure.base_url,
                             connection_verify=os.environ["SSL_CERT_FILE"],
                             polling_interval=0.05, retry_total=0)
    try:
        found = await rg.deployments()
        name, values, _ = phases.deployment_request(release, ())
        check = await rg.check_template(name, release.template.body, values,
                                        release.template.digest)
        assert check["valid"], check
        await rg.deploy(name, release.template.body, values)
        assert found == []
    finally:
        await rg.close()


async def one_rollout_step(azure: ScaleSetClient) -> None:
    """Everything the runtime asks of Azure: the resources phase, then for one node: observe,
    set the model, reimage."""
    await resource_group_step(azure)
    managers, _ = await azure.observe({MANAGERS: "manager", WORKERS: "worker"})
    assert managers["instances"][0]["powerState"] == "running"
    assert await azure.set_model_image(WORKERS, NEW) is True
    reimage = await azure.start_reimage(WORKERS, ["0"])
    await reimage.wait()
    _, workers = await azure.observe({MANAGERS: "manager", WORKERS: "worker"})
    assert workers["instances"][0]["image"] == NEW


async def test_the_role_allows_a_whole_rollout_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with controller_against_arm(ROLE["Actions"], tmp_path, monkeypatch) as azure:
        await one_rollout_step(azure)


@pytest.mark.parametrize("missing", ROLE["Actions"])
async def test_every_action_of_the_role_is_needed(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = [action for action in ROLE["Actions"] if action != missing]
    async with controller_against_arm(actions, tmp_path, monkeypatch) as azure:
        with pytest.raises(AzurePermanent) as refused:
            await one_rollout_step(azure)
    assert refused.value.status == 403
    assert refused.value.code in ("AuthorizationFailed", "LinkedAuthorizationFailed")
    assert missing.lower() in str(refused.value).lower()
