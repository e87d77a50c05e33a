"""The platform services adapter against a real dockerd swarm: snapshot shape, an image update
with the planner's update config that converges, and one whose new image exits non-zero, which
swarm rolls back (what the services phase reads as ServiceRolledBack)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tarfile
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller import phases
from controller.adapters.platform import observe_services, service_fields, update_image
from controller.adapters.swarm import SwarmClient
from controller.observed import Service
from tests.runtime.localswarm import LocalSwarm, _UnixConnection, api

pytestmark = pytest.mark.skipif(shutil.which("busybox") is None and not
                                __import__("os").path.exists("/bin/busybox"),
                                reason="busybox-static is installed by scripts/test.sh")


def rootfs() -> bytes:
    binary = shutil.which("busybox") or "/bin/busybox"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(binary, arcname="bin/busybox")
        for applet in ("sh", "sleep", "false", "true"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def import_image(sock: str, ref: str, cmd: list[str]) -> None:
    """`docker import` of the busybox rootfs as `ref` with CMD `cmd` (no registry needed)."""
    repo, tag = ref.rsplit(":", 1)
    query = urllib.parse.urlencode({"fromSrc": "-", "repo": repo, "tag": tag,
                                    "changes": f"CMD {json.dumps(cmd)}"})
    conn = _UnixConnection(sock, 60)
    conn.request("POST", f"/images/create?{query}", body=rootfs(),
                 headers={"Content-Type": "application/x-tar"})
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    assert answer.status == 200 and b"error" not in body.lower(), body[:300]


@pytest.fixture
async def client(swarm1: LocalSwarm) -> AsyncIterator[SwarmClient]:
    sock = swarm1.daemons[0].sock
    import_image(sock, "local/meta:1", ["sleep", "1000000"])
    import_image(sock, "local/meta:2", ["sleep", "1000000"])
    import_image(sock, "local/meta:broken", ["sh", "-c", "exit 3"])
    async with SwarmClient(swarm1.daemons[0].docker_host, timeout=10) as c:
        yield c


def create_service(sock: str, name: str) -> str:
    spec: dict[str, Any] = {
        "Name": name,
        "Labels": {phases.SYSTEM_LABEL: "true", phases.SYSTEM_NAME_LABEL: "meta"},
        "TaskTemplate": {"ContainerSpec": {"Image": "local/meta:1",
                                           "StopGracePeriod": 1_000_000_000}},
        "Mode": {"Replicated": {"Replicas": 2}},
    }
    return str(api(sock, "POST", "/services/create", spec)["ID"])


async def wait_service(client: SwarmClient, service_id: str, done: Any) -> Service:
    deadline = time.monotonic() + 90.0
    while True:
        found = [s for s in await observe_services(client) if s["id"] == service_id]
        svc = Service.from_dict(found[0], "services[0]")
        if done(svc):
            return svc
        assert time.monotonic() < deadline, f"service never reached the state: {svc}"
        await asyncio.sleep(0.5)


def config(monitor: float = 2.0) -> dict[str, Any]:
    return {**phases.update_config(), "monitor": monitor}


async def test_services_in_snapshot_shape_and_a_converging_update(
        client: SwarmClient, swarm1: LocalSwarm) -> None:
    sid = create_service(swarm1.daemons[0].sock, "d4a-meta-ok")
    try:
        svc = await wait_service(client, sid, lambda s: s.running_tasks == 2)
        assert (svc.name, svc.image, svc.desired_tasks) == ("d4a-meta-ok", "local/meta:1", 2)
        assert svc.labels[phases.SYSTEM_NAME_LABEL] == "meta" and svc.update_state == ""
        assert phases.platform_services((svc,)) == {"meta": [svc]}
        assert await update_image(client, sid, "local/meta:2", config()) is True
        assert await update_image(client, sid, "local/meta:2", config()) is False, "idempotent"
        raw = await client.service(sid)
        update = raw["Spec"]["UpdateConfig"]
        assert update["Parallelism"] == 1 and update["FailureAction"] == "rollback"
        assert update["Monitor"] == 2_000_000_000
        assert raw["Spec"]["RollbackConfig"]["FailureAction"] == "pause"
        done = await wait_service(client, sid, lambda s: s.update_state == "completed")
        assert done.image == "local/meta:2" and done.update_started_at > 0
        assert service_fields(raw)["image"] == "local/meta:2"
    finally:
        api(swarm1.daemons[0].sock, "DELETE", f"/services/{sid}")


async def test_a_new_image_that_fails_its_start_is_rolled_back_by_swarm(
        client: SwarmClient, swarm1: LocalSwarm) -> None:
    sid = create_service(swarm1.daemons[0].sock, "d4a-meta-bad")
    try:
        await wait_service(client, sid, lambda s: s.running_tasks == 2)
        asked = time.time()
        await update_image(client, sid, "local/meta:broken", config())
        svc = await wait_service(client, sid, lambda s: s.update_state == "rollback_completed")
        assert svc.image == "local/meta:1", "swarm restored the previous spec"
        assert svc.update_started_at >= asked - phases.CLOCK_SLACK
        assert "rollback" in svc.update_message
        assert "a task of local/meta:broken failed" in svc.update_message, svc.update_message
    finally:
        api(swarm1.daemons[0].sock, "DELETE", f"/services/{sid}")
