"""What the long-running instance operations do: drive the instance driver, update ARM state.

Each operation on a set of instances was accepted by compute.py, which has already marked every
instance busy and set its provisioning state (Updating/Creating/Deleting) synchronously. Here the
work runs inside the LRO task: injected delays and failures first, then the driver call (boots
bounded by the boot timeout), then the state an instance ends in. A boot that does not finish in
time, or an instance armed `never_boots`, ends Failed ``OSProvisioningTimedOut``; a `BootError`
ends Failed with its code; the LRO fails with the first instance's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from testbed.arm.faults import Faults
from testbed.arm.operations import OperationFailed
from testbed.arm.state import Instance, ScaleSet, same_image
from testbed.driver import BootError, InstanceDriver

# Instance operation kinds → the provisioning state an instance shows while it runs.
PENDING_STATE = {
    "upgrade": "Updating",
    "reimage": "Updating",
    "restart": "Updating",
    "powerOff": "Updating",
    "start": "Updating",
    "boot": "Creating",
    "delete": "Deleting",
}


class InstanceActions:
    """Runs instance operations against an `InstanceDriver`, honouring injected faults."""

    def __init__(self, driver: InstanceDriver, faults: Faults, boot_timeout: float) -> None:
        self.driver = driver
        self.faults = faults
        self.boot_timeout = boot_timeout

    def mark_pending(self, operation: str, kind: str, instance: Instance) -> None:
        """Synchronously, at request acceptance: the instance is busy with `operation`."""
        instance.busy = operation
        instance.set_state(PENDING_STATE[kind])

    async def run_many(self, operation: str, kind: str, ss: ScaleSet,
                       instances: list[Instance]) -> None:
        """Run `kind` on every instance concurrently; raise the first failure afterwards."""
        results = await asyncio.gather(
            *(self.run(operation, kind, ss, instance) for instance in instances),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def run(self, operation: str, kind: str, ss: ScaleSet, instance: Instance) -> None:
        """One instance: delay, injected failure, driver call, final state."""
        try:
            delay = self.faults.delay(operation)
            if delay:
                await asyncio.sleep(delay)
            fault = self.faults.take_lro_failure(operation, ss.name, instance.instance_id)
            if fault is not None:
                raise OperationFailed(fault.code, fault.message or (
                    f"{operation} of instance '{instance.instance_id}' ({instance.computer_name})"
                    f" of '{ss.name}' failed: {fault.code} (injected)."))
            await self._drive(kind, ss, instance)
        except OperationFailed as failure:
            instance.set_state("Failed", {"code": failure.code, "message": failure.message})
            raise
        else:
            if kind == "delete":
                ss.instances.pop(instance.instance_id, None)
            else:
                instance.set_state("Succeeded")
        finally:
            instance.busy = None

    async def _drive(self, kind: str, ss: ScaleSet, instance: Instance) -> None:
        name, iid = ss.name, instance.instance_id
        if kind == "upgrade":
            if same_image(instance.image, ss.image):
                instance.latest_model_applied = True
                return
            target = dict(ss.image)
            await self._boot(self.driver.reimage, ss, instance, target)
            instance.image = target
            instance.latest_model_applied = same_image(instance.image, ss.image)
        elif kind == "reimage":
            await self._boot(self.driver.reimage, ss, instance, dict(instance.image))
        elif kind == "boot":
            await self._boot(self.driver.boot, ss, instance, dict(instance.image))
        elif kind == "restart":
            await self._guard(self.driver.restart(name, iid), instance)
        elif kind == "start":
            await self._guard(self.driver.start(name, iid), instance)
        elif kind == "powerOff":
            await self.driver.power_off(name, iid)
        elif kind == "delete":
            await self.driver.delete(name, iid)
        else:  # pragma: no cover - compute.py only sends the kinds above
            raise ValueError(f"unknown instance operation kind {kind!r}")

    async def _boot(
        self,
        call: Callable[[str, str, str, str, dict[str, str]], Awaitable[None]],
        ss: ScaleSet,
        instance: Instance,
        image: dict[str, str],
    ) -> None:
        """A boot-like driver call (boot/reimage), bounded by the boot timeout."""
        hang = self.faults.never_boot(ss.name, instance.instance_id, self.boot_timeout)
        if hang is not None:
            # The disk is gone and the OS never reports back: the node stops, the LRO times out.
            await self.driver.power_off(ss.name, instance.instance_id)
            await asyncio.sleep(hang)
            raise OperationFailed(
                "OSProvisioningTimedOut",
                f"OS Provisioning for VM '{instance.computer_name}' did not finish in the "
                "allotted time. The VM may still finish provisioning successfully.",
            )
        await self._guard(call(ss.name, instance.instance_id, instance.computer_name, ss.role,
                               image), instance)

    async def _guard(self, call: Awaitable[None], instance: Instance) -> None:
        """Await a driver call that may boot: BootError/timeout → OperationFailed."""
        try:
            await asyncio.wait_for(call, self.boot_timeout)
        except BootError as error:
            raise OperationFailed(error.code, str(getattr(error, "message", error))) from error
        except TimeoutError as error:
            raise OperationFailed(
                "OSProvisioningTimedOut",
                f"OS Provisioning for VM '{instance.computer_name}' did not finish in the "
                f"allotted time ({self.boot_timeout:g} s).",
            ) from error
