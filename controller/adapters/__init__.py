"""Thin, typed translations to and from the swarm (aiodocker) and Azure (azure-mgmt-compute)."""
