"""The scale sets of a testbed: instances as real dockerd nodes in one real swarm.

`Cluster` implements `testbed.driver.InstanceDriver`: booting an instance starts a fresh dockerd
with engine labels naming the image it "booted" and joins the swarm with its scale set's token
(what the Docker for Azure init agent did); reimage = stop, unmount, wipe, boot on the new image;
power off / start keep the disk (same swarm node id). Faults: crash (kill -9), never-boots.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import procs
from testbed.dockerapi import DockerAPI, DockerAPIError
from testbed.driver import BootError
from testbed.node import BUSYBOX_IMAGE, DockerNode, NodeError

MANAGER_VMSS = "swarm-manager-vmss"
WORKER_VMSS = "swarm-worker-vmss"
SWARM_PORT = 2377
HEARTBEAT_NS = 1_000_000_000


def random_ip_base() -> str:
    """A random 127.A.B loopback /24 prefix (A in 20..250) for one test cluster."""
    return f"127.{random.randint(20, 250)}.{random.randint(0, 255)}"


def engine_labels(scale_set: str, instance_id: str, image: dict[str, str]) -> dict[str, str]:
    """The dockerd engine labels of an instance booted from `image`."""
    labels = {f"azure.image.{k}": image[k] for k in ("publisher", "offer", "sku", "version")}
    labels["azure.vmss"] = scale_set
    labels["azure.instance-id"] = instance_id
    return labels


@dataclass
class ScaleSet:
    """A scale set: its role, computer-name prefix and the 4th loopback octet of instance 0."""

    name: str
    role: str
    prefix: str
    addr_offset: int


@dataclass
class Instance:
    """One scale-set instance and its node."""

    scale_set: str
    instance_id: str
    computer_name: str
    role: str
    image: dict[str, str]
    node: DockerNode
    state: str = "deallocated"
    never_boots: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Cluster:
    """Scale sets and their instances under `root`, swarm addresses `<ip_base>.<n>`."""

    def __init__(
        self,
        root: Path,
        *,
        ip_base: str = "127.0.1",
        reimage_seconds: float = 0.0,
        boot_timeout: float = 30.0,
        never_boots_seconds: float = 3.0,
        image_tags: Sequence[str] = (),
        broken_image_tags: Sequence[str] = (),
        image_archives: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.root = root
        self.image_archives = {role: tuple(a) for role, a in (image_archives or {}).items()}
        self.image_tags = tuple(image_tags)
        self.broken_image_tags = tuple(broken_image_tags)
        self.ip_base = ip_base
        self.reimage_seconds = reimage_seconds
        self.boot_timeout = boot_timeout
        self.never_boots_seconds = never_boots_seconds
        self.scale_sets: dict[str, ScaleSet] = {}
        self.instances: dict[tuple[str, str], Instance] = {}
        self.swarm_initialised = False
        self.add_scale_set(MANAGER_VMSS, "manager", "swarm-manager", 10)
        self.add_scale_set(WORKER_VMSS, "worker", "swarm-worker", 100)

    # --- layout -------------------------------------------------------------------------------

    def add_scale_set(self, name: str, role: str, prefix: str, addr_offset: int) -> None:
        """Declare a scale set (instances get addresses ip_base.(addr_offset + id))."""
        self.scale_sets[name] = ScaleSet(name, role, prefix, addr_offset)

    def computer_name(self, scale_set: str, instance_id: str) -> str:
        """Azure's computer name: prefix + 6-digit instance id."""
        return f"{self.scale_sets[scale_set].prefix}{int(instance_id):06d}"

    def instance(self, scale_set: str, instance_id: str) -> Instance:
        """The instance, or KeyError naming it."""
        try:
            return self.instances[(scale_set, str(instance_id))]
        except KeyError:
            raise KeyError(f"no instance {scale_set}/{instance_id}") from None

    def by_hostname(self, hostname: str) -> Instance:
        """The instance whose computer name is `hostname`."""
        for inst in self.instances.values():
            if inst.computer_name == hostname:
                return inst
        raise KeyError(f"no instance with computer name {hostname}")

    def _ensure_instance(
        self, scale_set: str, instance_id: str, computer_name: str, role: str, image: dict[str, str]
    ) -> Instance:
        key = (scale_set, str(instance_id))
        inst = self.instances.get(key)
        if inst is None:
            ss = self.scale_sets[scale_set]
            addr = f"{self.ip_base}.{ss.addr_offset + int(instance_id)}"
            node = DockerNode(
                computer_name,
                self.root / "n" / computer_name,
                addr,
                self.root / "logs" / f"{computer_name}.log",
            )
            inst = Instance(scale_set, str(instance_id), computer_name, role, dict(image), node)
            self.instances[key] = inst
        inst.image = dict(image)
        inst.role = role
        return inst

    def managers(self) -> list[Instance]:
        """Manager instances whose dockerd is running."""
        return [i for i in self.instances.values() if i.role == "manager" and i.node.running()]

    def manager_hosts(self) -> dict[str, str]:
        """Computer name -> DOCKER_HOST of every manager instance (running or not)."""
        return {
            i.computer_name: i.node.docker_host
            for i in self.instances.values()
            if i.role == "manager"
        }

    # --- creation -----------------------------------------------------------------------------

    async def create(self, managers: int, workers: int, image: dict[str, str]) -> None:
        """Boot `managers` + `workers` instances: all dockerd in parallel, managers join one by
        one (raft membership changes are serial), workers in parallel."""
        if managers < 1:
            raise ValueError(f"managers: must be >= 1, got {managers}")
        mgrs = [self._new(MANAGER_VMSS, str(i), image) for i in range(managers)]
        wrks = [self._new(WORKER_VMSS, str(i), image) for i in range(workers)]
        await asyncio.gather(*(self._start_node(i) for i in mgrs + wrks))
        for inst in mgrs:
            await self._join(inst)
        await asyncio.gather(*(self._join(i) for i in wrks))
        await asyncio.gather(*(self._wait_ready_in_swarm(i) for i in mgrs + wrks))
        for inst in mgrs + wrks:
            inst.state = "running"

    def _new(self, scale_set: str, instance_id: str, image: dict[str, str]) -> Instance:
        role = self.scale_sets[scale_set].role
        name = self.computer_name(scale_set, instance_id)
        return self._ensure_instance(scale_set, instance_id, name, role, image)

    async def _start_node(self, inst: Instance) -> None:
        inst.state = "starting"
        labels = engine_labels(inst.scale_set, inst.instance_id, inst.image)
        try:
            await inst.node.start(labels, wait_s=self.boot_timeout)
            await inst.node.load_image(self.image_tags, self.broken_image_tags)
            for archive in self.image_archives.get(inst.role, ()):
                await inst.node.api.load_archive(Path(archive))
        except (NodeError, DockerAPIError) as exc:
            raise BootError("OSProvisioningTimedOut", f"{inst.computer_name}: {exc}") from exc

    async def _join(self, inst: Instance) -> None:
        """Init the swarm (first manager ever) or join it through any answering manager."""
        addr = f"{inst.node.addr}:{SWARM_PORT}"
        if not self.swarm_initialised:
            if inst.role != "manager":
                raise BootError("OSProvisioningTimedOut", "no swarm to join yet")
            spec = {"Dispatcher": {"HeartbeatPeriod": HEARTBEAT_NS}}
            body = {"ListenAddr": addr, "AdvertiseAddr": addr, "Spec": spec}
            await inst.node.api.post("/swarm/init", body, wait_s=30)
            self.swarm_initialised = True
            return
        deadline = time.monotonic() + self.boot_timeout
        errors: list[str] = []
        while time.monotonic() < deadline:
            for mgr in [m for m in self.managers() if m is not inst]:
                try:
                    swarm = await mgr.node.api.get("/swarm", wait_s=3)
                    token = swarm["JoinTokens"]["Manager" if inst.role == "manager" else "Worker"]
                    body = {
                        "ListenAddr": addr,
                        "AdvertiseAddr": addr,
                        "RemoteAddrs": [f"{mgr.node.addr}:{SWARM_PORT}"],
                        "JoinToken": token,
                    }
                    await inst.node.api.post("/swarm/join", body, wait_s=30)
                    return
                except DockerAPIError as exc:
                    if await self._swarm_active(inst):
                        return
                    errors.append(f"via {mgr.computer_name}: {exc}")
            await asyncio.sleep(0.5)
        raise BootError(
            "OSProvisioningTimedOut", f"{inst.computer_name} did not join: {errors[-3:]}"
        )

    async def _wait_ready_in_swarm(self, inst: Instance) -> None:
        """Wait until the managers see the node Ready (and a manager Reachable): booted."""
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            try:
                info = await inst.node.api.get("/info", wait_s=3)
                node_id = info["Swarm"]["NodeID"]
                api = await self.manager_api() if inst.role == "worker" else inst.node.api
                node = await api.get(f"/nodes/{node_id}", wait_s=3)
            except (DockerAPIError, NodeError, KeyError):
                node = {}
            ready = node.get("Status", {}).get("State") == "ready"
            reachable = node.get("ManagerStatus", {}).get("Reachability") == "reachable"
            if ready and (reachable or inst.role == "worker"):
                return
            await asyncio.sleep(0.1)
        raise BootError("OSProvisioningTimedOut", f"{inst.computer_name} never became Ready")

    @staticmethod
    async def _swarm_active(inst: Instance) -> bool:
        try:
            info = await inst.node.api.get("/info", wait_s=3)
        except DockerAPIError:
            return False
        return bool(info.get("Swarm", {}).get("LocalNodeState") == "active")

    # --- InstanceDriver -----------------------------------------------------------------------

    async def boot(
        self, scale_set: str, instance_id: str, computer_name: str, role: str, image: dict[str, str]
    ) -> None:
        """Boot a fresh instance on `image` and join the swarm as `role`."""
        inst = self._ensure_instance(scale_set, instance_id, computer_name, role, image)
        async with inst.lock:
            await self._boot_locked(inst)

    async def _boot_locked(self, inst: Instance) -> None:
        if inst.never_boots:
            await self._hang(inst)
        if inst.node.running():
            await inst.node.stop()
        await self._start_node(inst)
        await self._join(inst)
        await self._wait_ready_in_swarm(inst)
        inst.state = "running"

    async def _hang(self, inst: Instance) -> None:
        """The never-boots fault: the OS never comes up; one-shot."""
        inst.state = "starting"
        await asyncio.sleep(self.never_boots_seconds)
        inst.never_boots = False
        inst.state = "running"  # Azure sees a running VM whose OS never provisioned
        raise BootError(
            "OSProvisioningTimedOut",
            f"OS Provisioning for VM '{inst.computer_name}' did not finish in the allotted time.",
        )

    async def reimage(
        self, scale_set: str, instance_id: str, computer_name: str, role: str, image: dict[str, str]
    ) -> None:
        """Stop, unmount, wipe, wait `reimage_seconds`, boot fresh on `image`."""
        inst = self._ensure_instance(scale_set, instance_id, computer_name, role, image)
        async with inst.lock:
            inst.state = "stopping"
            await inst.node.stop()
            await inst.node.wipe()
            inst.state = "starting"
            if self.reimage_seconds > 0:
                await asyncio.sleep(self.reimage_seconds)
            await self._boot_locked(inst)

    async def power_off(self, scale_set: str, instance_id: str) -> None:
        """Stop dockerd, keep the disk."""
        inst = self.instance(scale_set, instance_id)
        async with inst.lock:
            inst.state = "stopping"
            await inst.node.stop()
            inst.state = "stopped"

    async def start(self, scale_set: str, instance_id: str) -> None:
        """Start dockerd on the same disk: it rejoins with its old node id."""
        inst = self.instance(scale_set, instance_id)
        async with inst.lock:
            await self._start_locked(inst)

    async def _start_locked(self, inst: Instance) -> None:
        if inst.never_boots:
            await self._hang(inst)
        if inst.node.running():
            inst.state = "running"
            return
        await inst.node.stop()  # clean up after a crash: leftover shims
        await self._start_node(inst)
        inst.state = "running"

    async def restart(self, scale_set: str, instance_id: str) -> None:
        """Stop and start from the same disk."""
        inst = self.instance(scale_set, instance_id)
        async with inst.lock:
            inst.state = "stopping"
            await inst.node.stop()
            await self._start_locked(inst)

    async def delete(self, scale_set: str, instance_id: str) -> None:
        """Stop and remove the instance and its disk (the swarm keeps a Down entry)."""
        inst = self.instance(scale_set, instance_id)
        async with inst.lock:
            inst.state = "stopping"
            await inst.node.stop()
            await inst.node.wipe()
            del self.instances[(inst.scale_set, inst.instance_id)]

    def power_state(self, scale_set: str, instance_id: str) -> str:
        """running | stopped | starting | stopping | deallocated."""
        inst = self.instances.get((scale_set, str(instance_id)))
        return "deallocated" if inst is None else inst.state

    # --- faults -------------------------------------------------------------------------------

    async def crash(self, scale_set: str, instance_id: str) -> None:
        """kill -9 the instance's dockerd. Azure still sees the VM running."""
        inst = self.instance(scale_set, instance_id)
        await asyncio.to_thread(inst.node.crash)

    def set_never_boots(self, scale_set: str, instance_id: str, on: bool = True) -> None:
        """Make the next boot/start of the instance hang, then fail OSProvisioningTimedOut."""
        self.instance(scale_set, instance_id).never_boots = on

    # --- observation and teardown -------------------------------------------------------------

    async def manager_api(self) -> DockerAPI:
        """The API of a running manager that answers /swarm (raises NodeError if none)."""
        for inst in self.managers():
            try:
                await inst.node.api.get("/swarm", wait_s=3)
                return inst.node.api
            except DockerAPIError:
                continue
        raise NodeError("no manager answers")

    async def nodes(self) -> list[dict[str, Any]]:
        """The swarm's node list as seen by an answering manager."""
        api = await self.manager_api()
        nodes: list[dict[str, Any]] = await api.get("/nodes", wait_s=5)
        return nodes

    def describe(self) -> list[dict[str, Any]]:
        """Instances as JSON-safe dicts."""
        return [
            {
                "scaleSet": i.scale_set,
                "instanceId": i.instance_id,
                "computerName": i.computer_name,
                "role": i.role,
                "image": i.image,
                "powerState": i.state,
                "dockerdPid": i.node.pid,
                "dockerHost": i.node.docker_host,
                "addr": i.node.addr,
                "neverBoots": i.never_boots,
            }
            for i in self.instances.values()
        ]

    async def create_service(
        self, name: str, replicas: int, command: list[str] | None = None
    ) -> str:
        """A replicated busybox service (no networks, no ports, 1 s stop grace); returns its id."""
        spec = {
            "Name": name,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": BUSYBOX_IMAGE,
                    "Command": command or ["sleep", "1000000"],
                    "StopGracePeriod": 1_000_000_000,
                },
            },
            "Mode": {"Replicated": {"Replicas": replicas}},
        }
        api = await self.manager_api()
        answer = await api.post("/services/create", spec, wait_s=10)
        return str(answer["ID"])

    def pids(self) -> list[int]:
        """Pids of every running dockerd."""
        return [p for p in (i.node.pid for i in self.instances.values()) if p is not None]

    async def close(self, remove: bool = True) -> None:
        """Fast teardown: SIGKILL every dockerd at once, kill what runs under the root,
        unmount everything under it and (if `remove`) delete it."""
        for inst in self.instances.values():
            inst.node.kill_now()
        await asyncio.gather(*(i.node.api.close() for i in self.instances.values()))
        for inst in self.instances.values():
            if inst.node.proc is not None:
                await asyncio.to_thread(inst.node.proc.wait)
        nodes = self.root / "n"
        if remove:
            await asyncio.to_thread(procs.remove_tree, self.root, nodes)
        else:
            await asyncio.to_thread(procs.kill_under, nodes)
            await asyncio.to_thread(procs.unmount_under, self.root)
