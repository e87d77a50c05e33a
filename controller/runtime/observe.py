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
    await _refresh_rejoined(azure, nodes, sets)
    stamp = time.time() if observed_at is None else observed_at
    return {"self": self_hostname, "observedAt": stamp, "nodes": nodes, "scaleSets": sets}


async def _refresh_rejoined(azure: ScaleSetPort, nodes: list[dict[str, Any]],
                            sets: list[dict[str, Any]]) -> None:
    """Re-read an instance that looks busy (e.g. Updating) while its hostname is Ready in the
    swarm: its operation has probably ended, and the scale-set listing may be a cached one."""
    ready = {n["hostname"] for n in nodes if n.get("state") == "ready"}
    for scale_set in sets:
        instances = scale_set["instances"]
        for index, inst in enumerate(instances):
            if inst.get("provisioningState") not in ("Succeeded", "Failed") \
                    and inst.get("computerName") in ready:
                instances[index] = await azure.instance(scale_set["name"], inst["instanceId"])
