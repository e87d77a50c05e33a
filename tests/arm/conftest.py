"""Fixtures: an ArmServer over real HTTPS on 127.0.0.1 with a FakeDriver, and real SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from azure.identity.aio import ClientSecretCredential
from azure.mgmt.compute.aio import ComputeManagementClient

from testbed.arm import ArmServer
from testbed.arm.fake_driver import FakeDriver

SUB = "00000000-0000-0000-0000-000000000001"
RG, TENANT, CLIENT, SECRET = "swarm-rg", "tenant-1", "app-1", "s3cret"
MANAGERS, WORKERS = "swarm-manager-vmss", "swarm-worker-vmss"
IMAGE_OLD = {"publisher": "docker", "offer": "docker4azure", "sku": "stable", "version": "17.06.0"}
IMAGE_NEW = {**IMAGE_OLD, "version": "17.06.1"}


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def make_server(tmp_path: Path, driver: FakeDriver) -> Callable[..., ArmServer]:
    """Builds a server with a manager scale set of 3 and a worker scale set of 5 (not started)."""

    def make(**kwargs: Any) -> ArmServer:
        options: dict[str, Any] = {"page_size": 2, "boot_timeout": 5.0}
        options.update(kwargs)
        server = ArmServer(driver, subscription_id=SUB, resource_group=RG, tenant_id=TENANT,
                           client_id=CLIENT, client_secret=SECRET, cert_dir=tmp_path / "certs",
                           **options)
        server.add_scale_set(MANAGERS, "manager", {"channel": "stable"}, IMAGE_OLD, 3,
                             "swarm-manager")
        server.add_scale_set(WORKERS, "worker", {"channel": "stable"}, IMAGE_OLD, 5,
                             "swarm-worker")
        return server

    return make


@pytest.fixture
async def server(make_server: Callable[..., ArmServer]) -> AsyncIterator[ArmServer]:
    srv = make_server()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def credential(server: ArmServer) -> AsyncIterator[ClientSecretCredential]:
    cred = ClientSecretCredential(TENANT, CLIENT, SECRET, authority=server.url,
                                  connection_verify=str(server.ca_path))
    yield cred
    await cred.close()


@pytest.fixture
def make_client(server: ArmServer, credential: ClientSecretCredential
                ) -> Callable[..., ComputeManagementClient]:
    """The real async SDK client pointed at the server (fast polling for tests)."""

    def make(**kwargs: Any) -> ComputeManagementClient:
        options: dict[str, Any] = {"polling_interval": 0.02}
        options.update(kwargs)
        return ComputeManagementClient(credential, SUB, base_url=server.url,
                                       connection_verify=str(server.ca_path), **options)

    return make


@pytest.fixture
async def client(make_client: Callable[..., ComputeManagementClient]
                 ) -> AsyncIterator[ComputeManagementClient]:
    async with make_client() as c:
        yield c
