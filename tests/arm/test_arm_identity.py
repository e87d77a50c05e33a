"""Token endpoints against the real azure-identity credentials, and bearer checks on ARM routes."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys

import aiohttp
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import (
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)

from testbed.arm import ArmServer

from .conftest import CLIENT, MANAGERS, RG, SECRET, SUB, TENANT

SCOPE = "https://management.azure.com/.default"


async def test_client_secret_credential_gets_a_token_the_arm_routes_accept(
    server: ArmServer,
) -> None:
    cred = ClientSecretCredential(TENANT, CLIENT, SECRET, authority=server.url,
                                  connection_verify=str(server.ca_path))
    async with cred:
        token = await cred.get_token(SCOPE)
    assert token.token.startswith("tb.")
    assert token.expires_on > 0
    url = (f"{server.url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/"
           f"virtualMachineScaleSets/{MANAGERS}?api-version=2026-04-01")
    context = ssl.create_default_context(cafile=str(server.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.get(url, headers={"Authorization": f"Bearer {token.token}"}) as ok:
            assert ok.status == 200
            assert "x-ms-ratelimit-remaining-subscription-reads" in ok.headers
        async with http.get(url) as missing:
            assert missing.status == 401
            assert (await missing.json())["error"]["code"] == "AuthenticationFailed"
        async with http.get(url, headers={"Authorization": "Bearer forged"}) as forged:
            assert forged.status == 401
            assert (await forged.json())["error"]["code"] == "InvalidAuthenticationToken"
    assert server.counts()["Identity_ClientCredentialsToken"]["writes"] == 1


async def test_wrong_secret_is_refused(server: ArmServer) -> None:
    cred = ClientSecretCredential(TENANT, CLIENT, "wrong", authority=server.url,
                                  connection_verify=str(server.ca_path))
    async with cred:
        with pytest.raises(ClientAuthenticationError, match="7000215"):
            await cred.get_token(SCOPE)


async def test_unknown_tenant_and_client_are_refused(server: ArmServer) -> None:
    for tenant, client in (("other-tenant", CLIENT), (TENANT, "other-app")):
        cred = ClientSecretCredential(tenant, client, SECRET, authority=server.url,
                                      connection_verify=str(server.ca_path))
        async with cred:
            with pytest.raises(ClientAuthenticationError):
                await cred.get_token(SCOPE)


async def test_managed_identity_via_identity_endpoint_and_header(
    server: ArmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in server.environment(managed_identity=True).items():
        monkeypatch.setenv(key, value)
    cred = ManagedIdentityCredential(connection_verify=str(server.ca_path))
    async with cred:
        token = await cred.get_token(SCOPE)
    assert server.tokens.principal(f"Bearer {token.token}") == f"mi:{CLIENT}"
    assert server.counts()["Identity_ManagedIdentityToken"]["reads"] == 1


async def test_managed_identity_with_a_wrong_header_is_refused(
    server: ArmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", server.url + "/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    cred = ManagedIdentityCredential(connection_verify=str(server.ca_path))
    async with cred:
        with pytest.raises(ClientAuthenticationError):
            await cred.get_token(SCOPE)


async def test_default_credential_picks_up_the_environment(
    server: ArmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in server.environment().items():
        monkeypatch.setenv(key, value)
    cred = DefaultAzureCredential(connection_verify=str(server.ca_path))
    async with cred:
        token = await cred.get_token(SCOPE)
    assert server.tokens.principal(f"Bearer {token.token}") == f"sp:{CLIENT}"


async def test_injected_token_failure_then_recovery(server: ArmServer) -> None:
    server.faults.fail_tokens(count=1, status=401)
    cred = ClientSecretCredential(TENANT, CLIENT, SECRET, authority=server.url,
                                  connection_verify=str(server.ca_path))
    async with cred:
        with pytest.raises(ClientAuthenticationError):
            await cred.get_token(SCOPE)
        assert (await cred.get_token(SCOPE)).token.startswith("tb.")
    assert server.counts()["Identity_ClientCredentialsToken"]["errors"] == 1


async def test_sync_msal_credential_reads_the_openid_configuration(server: ArmServer) -> None:
    """The sync ClientSecretCredential goes through msal: discovery document, then token.
    (msal's instance discovery would ask login.microsoftonline.com: it must be disabled.)"""
    from azure.identity import ClientSecretCredential as SyncClientSecretCredential

    def fetch() -> str:
        cred = SyncClientSecretCredential(TENANT, CLIENT, SECRET, authority=server.url,
                                          connection_verify=str(server.ca_path),
                                          disable_instance_discovery=True)
        return cred.get_token(SCOPE).token

    token = await asyncio.to_thread(fetch)
    assert server.tokens.principal(f"Bearer {token}") == f"sp:{CLIENT}"
    assert [e.operation for e in server.request_log] == [
        "Identity_Discovery", "Identity_ClientCredentialsToken"]


SDK_SCRIPT = """
import asyncio, os
from azure.identity.aio import DefaultAzureCredential
from azure.mgmt.compute.aio import ComputeManagementClient

async def main():
    async with DefaultAzureCredential() as cred, ComputeManagementClient(
            cred, os.environ["AZURE_SUBSCRIPTION_ID"],
            base_url=os.environ["AZURE_ARM_ENDPOINT"]) as client:
        ss = await client.virtual_machine_scale_sets.get(
            os.environ["AZURE_RESOURCE_GROUP"], "swarm-manager-vmss")
        print(ss.name)

asyncio.run(main())
"""


@pytest.mark.parametrize("managed_identity", [False, True])
async def test_an_unmodified_sdk_process_needs_only_the_environment(
    server: ArmServer, managed_identity: bool
) -> None:
    """A separate process configured by environment variables alone (SSL_CERT_FILE for the CA,
    no connection_verify) reaches the endpoint with DefaultAzureCredential."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    env.update(server.environment(managed_identity=managed_identity))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SDK_SCRIPT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "swarm-manager-vmss"
    token_op = ("Identity_ManagedIdentityToken" if managed_identity
                else "Identity_ClientCredentialsToken")
    assert token_op in server.counts()
