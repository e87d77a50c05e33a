"""Controller replicas for the testbed benchmarks: tests/e2e/replicas.py's supervisor, except that
a manager whose dockerd is merely slow to answer keeps its replica.

Swarm stops a global manager-only task when its node is demoted or goes away, not when the
node's API is slow. The e2e supervisor probes `/info` with a 1 s timeout and kills the replica on
any failure; at a load average of 20 on 2 cores that killed a healthy lease holder mid-rollout
and the rollout waited for the lease to expire (first overhead run, docs/performance.md).
"""

from __future__ import annotations

from tests.e2e.replicas import Replicas as E2EReplicas
from tests.runtime.localswarm import api

_LAST: dict[str, bool] = {}


class Replicas(E2EReplicas):
    """See the module docstring."""

    def _is_manager(self, docker_host: str) -> bool:
        try:
            info = api(docker_host.removeprefix("unix://"), "GET", "/info", timeout=5)
        except TimeoutError:
            return _LAST.get(docker_host, False)  # slow is not gone: keep what we knew
        except (OSError, RuntimeError):
            _LAST[docker_host] = False
            return False
        swarm = info.get("Swarm") or {}
        manager = swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))
        _LAST[docker_host] = manager
        return manager
