"""One observation of the world: the swarm's nodes and the scale sets, as a `Snapshot`.

The same shape `swarm-upgrade plan --snapshot` reads and `swarm-upgrade snapshot` prints.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controller.adapters.swarm import observe_nodes
from controller.runtime.ports import ScaleSetPort, SwarmPort


async def observe_dict(
    swarm: SwarmPort, azure: ScaleSetPort, managers: str, workers: str,
    self_hostname: str | None = None, observed_at: float | None = None,
) -> dict[str, Any]:
    """The snapshot as JSON-ready data (docs/architecture.md, "Snapshot")."""
    if self_hostname is None:
        self_hostname = (await swarm.info()).hostname
    nodes, sets = await asyncio.gather(
        observe_nodes(swarm), azure.observe({managers: "manager", workers: "worker"})
    )
    stamp = time.time() if observed_at is None else observed_at
    return {"self": self_hostname, "observedAt": stamp, "nodes": nodes, "scaleSets": sets}
