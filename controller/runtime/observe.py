"""One observation of the world: the swarm's nodes and the scale sets, as a `Snapshot`.

The same shape `swarm-upgrade plan --snapshot` reads and `swarm-upgrade snapshot` prints.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controller.adapters.azure import ScaleSetClient
from controller.adapters.swarm import SwarmClient, observe_nodes


async def observe_dict(
    swarm: SwarmClient, azure: ScaleSetClient, managers: str, workers: str,
    self_hostname: str | None = None,
) -> dict[str, Any]:
    """The snapshot as JSON-ready data (docs/architecture.md, "Snapshot")."""
    if self_hostname is None:
        self_hostname = (await swarm.info()).hostname
    nodes, sets = await asyncio.gather(
        observe_nodes(swarm), azure.observe({managers: "manager", workers: "worker"})
    )
    return {"self": self_hostname, "observedAt": time.time(), "nodes": nodes, "scaleSets": sets}
