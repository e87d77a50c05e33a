"""The reference: the original Docker for Azure upgrade procedure, scripted, for comparison.

For each node in turn (managers, then workers): demote it if it is a manager, `docker node rm
--force` it, set the scale set's model image (once per scale set) and send the manual upgrade of
its instance through the Azure SDK, wait for the operation, then poll `docker node ls` every 10 s
until the hostname is Ready again. It talks to the swarm through the docker CLI on a manager
other than the node being upgraded (a command the swarm times out is run again, as an operator
would), and to ARM through the same adapter as the controller.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from controller.adapters.azure import ScaleSetClient
from testbed.control import TestbedHandle

POLL_S = 10.0


@dataclass
class ReferenceRun:
    started: float = 0.0
    finished: float = 0.0
    nodes: list[dict[str, float | str]] = field(default_factory=list)


async def docker(host: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker", "-H", host, *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.decode().strip()}")
    return out.decode()


TRANSIENT = ("DeadlineExceeded", "does not have a leader", "context deadline",
             "node is stopped", "lost leader status")


async def patient(hosts: dict[str, str], not_host: str, *args: str, tries: int = 5) -> str:
    """`docker` on a manager other than `not_host`, as an operator runs it: again (on whichever
    manager answers) after a swarm timeout or an election; a removal that went through before
    the timeout is done."""
    for attempt in range(1, tries + 1):
        try:
            return await docker(await _answering(hosts, not_host), *args)
        except RuntimeError as err:
            text = str(err)
            if attempt > 1 and args[:2] == ("node", "rm") and "not found" in text:
                return ""
            if attempt == tries or not any(m in text for m in TRANSIENT):
                raise
            await asyncio.sleep(2)
    raise AssertionError("unreachable")


async def _answering(hosts: dict[str, str], not_host: str) -> str:
    for name, host in sorted(hosts.items()):
        if name == not_host:
            continue
        try:
            await docker(host, "node", "ls", "-q")
            return host
        except RuntimeError:
            continue
    raise RuntimeError("no other manager answers")


async def ready(host: str, hostname: str) -> bool:
    out = await docker(host, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
    return any(line.split() == [hostname, "Ready"] for line in out.splitlines())


async def upgrade(testbed: TestbedHandle, image: dict[str, str]) -> ReferenceRun:
    """Run the reference procedure over every instance of the testbed."""
    env = testbed.env
    hosts = testbed.manager_hosts
    instances = sorted(testbed.status()["instances"],
                       key=lambda i: (i["role"] != "manager", i["computerName"]))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # DefaultAzureCredential reads the environment when it is made
    azure = ScaleSetClient(env["AZURE_SUBSCRIPTION_ID"], env["AZURE_RESOURCE_GROUP"],
                           base_url=env["AZURE_ARM_ENDPOINT"], polling_interval=1.0,
                           connection_verify=env["SSL_CERT_FILE"],
                           timeout=900.0)  # it waits for each whole reimage, as upgrade.sh did
    run = ReferenceRun(started=time.time())
    try:
        models_done: set[str] = set()
        for inst in instances:
            name, scale_set = inst["computerName"], inst["scaleSet"]
            began = time.time()
            if inst["role"] == "manager":
                await patient(hosts, name, "node", "demote", name)
            await patient(hosts, name, "node", "rm", "--force", name)
            if scale_set not in models_done:
                await azure.set_model_image(scale_set, image)
                models_done.add(scale_set)
            reimage = await azure.start_reimage(scale_set, [inst["instanceId"]])
            await reimage.wait()
            while not await ready(await _answering(hosts, name), name):  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)
            run.nodes.append({"node": name, "began": began, "ready": time.time()})
    finally:
        await azure.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    run.finished = time.time()
    return run
