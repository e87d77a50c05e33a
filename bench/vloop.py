"""Virtual time for the scale simulation: an asyncio event loop that never really sleeps.

`VirtualLoop` is a selector event loop whose `time()` is a virtual clock and whose selector,
instead of blocking for `timeout` seconds, advances that clock by `timeout`: whenever every task
is idle (waiting for a timer), time jumps to the next timer. So `asyncio.sleep`, `wait_for` and
the runtime's `Clock.sleep` all run in virtual time, and a rollout of hours takes as long as its
CPU work. No real I/O is possible on it (there is nothing to select); if nothing is ready and no
timer is scheduled the simulation is stuck and `Deadlock` is raised.

`SimClock` is the runtime's `Clock` port on such a loop: `now()` = a fixed epoch + virtual time.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
EPOCH = 1_764_000_000.0  # virtual wall-clock time at loop time 0


class Deadlock(RuntimeError):
    """Nothing can ever run again: no ready callback and no timer."""


class _VirtualSelector(selectors.BaseSelector):
    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("no task can make progress and no timer is scheduled")
        if timeout > 0:
            self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._keys.clear()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys


class VirtualLoop(asyncio.SelectorEventLoop):
    """See the module docstring."""

    def __init__(self) -> None:
        self._virtual = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self._virtual

    def advance(self, seconds: float) -> None:
        self._virtual += seconds


class SimClock:
    """The runtime's Clock port in virtual time (needs a running VirtualLoop)."""

    def __init__(self, epoch: float = EPOCH) -> None:
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh VirtualLoop."""
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
