"""The contract between the fake ARM endpoint and whatever runs the scale-set instances.

The ARM server (testbed/arm/) translates Azure operations on virtual machine scale-set instances
into calls on an `InstanceDriver`. The real driver (testbed/cluster.py) runs each instance as a
dockerd process in a real swarm; ARM unit tests use an in-memory fake of this protocol.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

PowerState = Literal["running", "stopped", "starting", "stopping", "deallocated"]
Role = Literal["manager", "worker"]


class BootError(Exception):
    """An instance failed to boot; `code` is the Azure error code the ARM LRO reports.

    E.g. ``OSProvisioningTimedOut`` when the instance never booted within the timeout.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@runtime_checkable
class InstanceDriver(Protocol):
    """Runs scale-set instances. Every coroutine returns when the operation is complete."""

    async def boot(
        self,
        scale_set: str,
        instance_id: str,
        computer_name: str,
        role: str,
        image: dict[str, str],
    ) -> None:
        """Boot a fresh instance on `image` ({publisher, offer, sku, version}) and join the swarm
        with the `role` ('manager' | 'worker') token. Raises BootError on failure."""
        ...

    async def reimage(
        self,
        scale_set: str,
        instance_id: str,
        computer_name: str,
        role: str,
        image: dict[str, str],
    ) -> None:
        """Stop, wipe the disk and boot fresh on `image` (a new swarm node id, same hostname)."""
        ...

    async def power_off(self, scale_set: str, instance_id: str) -> None:
        """Stop the instance, keeping its disk."""
        ...

    async def start(self, scale_set: str, instance_id: str) -> None:
        """Start a stopped instance from its disk (same swarm node id). Raises BootError."""
        ...

    async def restart(self, scale_set: str, instance_id: str) -> None:
        """Stop and start again from the same disk. Raises BootError."""
        ...

    async def delete(self, scale_set: str, instance_id: str) -> None:
        """Stop the instance and remove its disk."""
        ...

    def power_state(self, scale_set: str, instance_id: str) -> str:
        """running | stopped | starting | stopping | deallocated."""
        ...
