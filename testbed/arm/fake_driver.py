"""An in-memory `InstanceDriver` for ARM endpoint tests: records calls, no real nodes.

Each instance has a power state and the image it runs; `boot_delay` makes boot-like calls take
time and `gate` (an Event) holds them until set (`max_booting` records how many overlapped),
`boot_errors` makes the next boot of an
instance raise `BootError`, `hang` makes boots of an instance never return (to exercise the
server's boot timeout).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from testbed.driver import BootError


@dataclass
class FakeDriver:
    """Records every call as (method, scale_set, instance_id[, image version])."""

    boot_delay: float = 0.0
    calls: list[tuple[str, ...]] = field(default_factory=list)
    power: dict[tuple[str, str], str] = field(default_factory=dict)
    images: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    boot_errors: dict[tuple[str, str], str] = field(default_factory=dict)
    hang: set[tuple[str, str]] = field(default_factory=set)
    gate: asyncio.Event | None = None
    booting: int = 0
    max_booting: int = 0

    async def _booting(self, key: tuple[str, str]) -> None:
        self.power[key] = "starting"
        self.booting += 1
        self.max_booting = max(self.max_booting, self.booting)
        try:
            if key in self.hang:
                await asyncio.Event().wait()
            if self.gate is not None:
                await self.gate.wait()
            if self.boot_delay:
                await asyncio.sleep(self.boot_delay)
        finally:
            self.booting -= 1
        code = self.boot_errors.pop(key, None)
        if code is not None:
            self.power[key] = "stopped"
            raise BootError(code, f"fake boot of {key} failed")
        self.power[key] = "running"

    async def boot(self, scale_set: str, instance_id: str, computer_name: str, role: str,
                   image: dict[str, str]) -> None:
        """Boot a fresh instance on `image`."""
        key = (scale_set, instance_id)
        self.calls.append(("boot", scale_set, instance_id, image.get("version", "")))
        self.images[key] = dict(image)
        await self._booting(key)

    async def reimage(self, scale_set: str, instance_id: str, computer_name: str, role: str,
                      image: dict[str, str]) -> None:
        """Wipe and boot on `image`."""
        key = (scale_set, instance_id)
        self.calls.append(("reimage", scale_set, instance_id, image.get("version", "")))
        self.power[key] = "stopped"
        self.images[key] = dict(image)
        await self._booting(key)

    async def power_off(self, scale_set: str, instance_id: str) -> None:
        """Stop."""
        self.calls.append(("power_off", scale_set, instance_id))
        self.power[(scale_set, instance_id)] = "stopped"

    async def start(self, scale_set: str, instance_id: str) -> None:
        """Start from disk."""
        self.calls.append(("start", scale_set, instance_id))
        await self._booting((scale_set, instance_id))

    async def restart(self, scale_set: str, instance_id: str) -> None:
        """Stop and start."""
        self.calls.append(("restart", scale_set, instance_id))
        await self._booting((scale_set, instance_id))

    async def delete(self, scale_set: str, instance_id: str) -> None:
        """Remove."""
        self.calls.append(("delete", scale_set, instance_id))
        self.power.pop((scale_set, instance_id), None)
        self.images.pop((scale_set, instance_id), None)

    def power_state(self, scale_set: str, instance_id: str) -> str:
        """running unless told otherwise (instances the cluster booted are running)."""
        return self.power.get((scale_set, instance_id), "running")
