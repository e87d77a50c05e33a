"""Local HTTPS Azure Resource Manager endpoint for the testbed (what the real Azure SDKs call).

Usage::

    server = ArmServer(driver, subscription_id=..., resource_group=..., tenant_id=...,
                       client_id=..., client_secret=..., cert_dir=DIR)
    server.add_scale_set("swarm-manager-vmss", "manager", {"channel": "stable"}, image, 3,
                         "swarm-manager")
    url = await server.start()          # https://127.0.0.1:PORT, CA in DIR/ca.pem
    env = server.environment()          # AZURE_* + SSL_CERT_FILE for DefaultAzureCredential

A process with that environment needs no code change: ``DefaultAzureCredential()`` (or
``ClientSecretCredential(tenant, client, secret)``, which reads AZURE_AUTHORITY_HOST) and
``ComputeManagementClient(cred, sub, base_url=os.environ["AZURE_ARM_ENDPOINT"])``. In-process,
pass ``authority=url`` and ``connection_verify=str(server.ca_path)`` instead, since aiohttp reads
SSL_CERT_FILE at import. ``environment(managed_identity=True)`` gives IDENTITY_ENDPOINT and
IDENTITY_HEADER instead of the client secret.

Modules: server.py (ArmServer, request pipeline), identity.py (token endpoints), compute.py and
vms.py (Microsoft.Compute routes), state.py (resources and their JSON), actions.py (instance
operations driving the InstanceDriver), operations.py (LROs), faults.py, ratelimit.py, rbac.py,
requestlog.py, routing.py, certs.py, fake_driver.py (in-memory driver for tests).
"""

from testbed.arm.faults import Faults
from testbed.arm.requestlog import RequestLogEntry
from testbed.arm.server import ArmServer

__all__ = ["ArmServer", "Faults", "RequestLogEntry"]
