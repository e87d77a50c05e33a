"""Thin, typed translations to and from the swarm (aiodocker) and Azure (azure-core's ARM pipeline:
Compute REST calls as azure-mgmt-compute sends them, and azure-mgmt-resource-deployments)."""
