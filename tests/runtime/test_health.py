"""/healthz and /metrics over real HTTP."""

from __future__ import annotations

import time

import aiohttp

from controller.runtime.health import HealthServer, Metrics


async def test_health_and_metrics_are_served_read_only() -> None:
    metrics = Metrics()
    status = {"lastPassAt": 0.0, "replica": "r1"}
    server = HealthServer(metrics, lambda: status, host="127.0.0.1", port=0)
    port = await server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 503 and (await r.json())["healthy"] is False
            status["lastPassAt"] = time.time()
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["replica"] == "r1"
            metrics.nodes_total.set(5)
            metrics.nodes_upgraded.set(2)
            metrics.verdict("proceed")
            metrics.arm_call("VirtualMachineScaleSets_Get", ok=False)
            metrics.swarm_call("GET /nodes", ok=True)
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
            assert "swarm_upgrade_nodes_total 5.0" in text
            assert "swarm_upgrade_nodes_upgraded 2.0" in text
            assert 'swarm_upgrade_rollout_phase{verdict="proceed"} 1.0' in text
            assert 'swarm_upgrade_rollout_phase{verdict="wait"} 0.0' in text
            assert 'swarm_upgrade_arm_errors_total{operation="VirtualMachineScaleSets_Get"} 1.0' \
                in text
            assert 'swarm_upgrade_swarm_calls_total{operation="GET /nodes"} 1.0' in text
            for method in ("POST", "PUT", "DELETE"):
                async with http.request(method, f"{base}/metrics") as r:
                    assert r.status == 405
                async with http.request(method, f"{base}/healthz") as r:
                    assert r.status == 405
    finally:
        await server.stop()
