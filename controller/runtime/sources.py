"""Where the desired declaration comes from: a watched YAML file, or Docker config objects.

A source keeps the last good `Desired`. When the declaration changes it validates it (schema,
then the catalog); a valid one replaces the last good one and triggers a reconcile pass; an
invalid one emits a Warning `InvalidSpec` event naming the field and changes nothing.

- `FileSource` polls the file's (mtime, size) every `interval` seconds and re-reads it only when
  they change and its content hash differs: an edit takes effect without a restart.
- `ConfigSource` reads the Docker config objects carrying `label` (e.g.
  `swarm-upgrade.desired=true`); the newest by CreatedAt wins. It re-reads when poked (the loop
  pokes it on every `config` event of the swarm) and every `resync` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable

from controller.adapters.swarm import SwarmError, parse_time
from controller.catalog import Catalog
from controller.model import DeclarationError, Desired, check_against_catalog, load_desired_text
from controller.problems import capped
from controller.runtime.events import INVALID_SPEC, SPEC_LOADED, WARNING, EventSink
from controller.runtime.ports import SwarmPort

Trigger = Callable[[], None]


class DesiredSource:
    """The validation and last-good bookkeeping shared by both sources."""

    description = "declaration"

    def __init__(self, catalog: Catalog, sink: EventSink, trigger: Trigger) -> None:
        self.catalog = catalog
        self.sink = sink
        self.trigger = trigger
        self.current: Desired | None = None
        self.origin = ""
        self._seen_hash = ""
        self.ready = asyncio.Event()  # set once a first read (good or bad) happened

    def offer(self, data: bytes, origin: str) -> bool:
        """Consider one version of the declaration; True if it became the current one."""
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._seen_hash:
            return False
        self._seen_hash = digest
        try:
            desired = load_desired_text(data)
            problems = check_against_catalog(desired, self.catalog)
            if problems:
                raise DeclarationError(problems)
        except DeclarationError as err:
            kept = (f"; still applying {self.current.version} from {self.origin}"
                    if self.current else "; nothing is applied until it is fixed")
            for problem in capped(err.problems, 10):
                self.sink.emit(WARNING, INVALID_SPEC, f"declaration/{origin}",
                               f"{origin}: {problem}{kept}")
            return False
        if self.current is not None and self.current.digest == desired.digest:
            self.origin = origin
            return False
        self.current, self.origin = desired, origin
        self.sink.emit("Normal", SPEC_LOADED, f"declaration/{origin}",
                       f"{origin}: {desired.name} wants {desired.channel} {desired.version}"
                       f"{' (paused)' if desired.paused else ''}", version=desired.version)
        self.trigger()
        return True

    async def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class FileSource(DesiredSource):
    """A YAML file, polled cheaply (stat) every `interval` seconds."""

    def __init__(self, path: str, catalog: Catalog, sink: EventSink, trigger: Trigger,
                 interval: float = 0.3) -> None:
        super().__init__(catalog, sink, trigger)
        self.path = path
        self.interval = interval
        self._stat: tuple[float, int] | None = None
        self.description = f"file {path}"

    def poll(self) -> None:
        """Look at the file once (what `run` does every `interval`)."""
        try:
            st = os.stat(self.path)
        except OSError as err:
            if self._stat != (-1.0, -1):
                self._stat = (-1.0, -1)
                self.sink.emit(WARNING, INVALID_SPEC, f"declaration/{self.path}",
                               f"{self.path}: cannot be read ({err.strerror})")
            self.ready.set()
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stat:
            return
        self._stat = stamp
        try:
            with open(self.path, "rb") as f:
                data = f.read(1 << 20)
        except OSError:
            self._stat = None
            return
        self.offer(data, self.path)
        self.ready.set()

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(self.interval)


class ConfigSource(DesiredSource):
    """Docker config objects selected by `label`; the newest (CreatedAt) wins."""

    def __init__(self, client: SwarmPort, label: str, catalog: Catalog, sink: EventSink,
                 trigger: Trigger, resync: float = 30.0) -> None:
        super().__init__(catalog, sink, trigger)
        self.client = client
        self.label = label
        self.resync = resync
        self._poke = asyncio.Event()
        self.description = f"config objects labelled {label}"

    def poke(self) -> None:
        """Something about configs changed: look again soon."""
        self._poke.set()

    async def refresh(self) -> None:
        """Read the newest labelled config and offer it."""
        configs = await self.client.configs(label=self.label)
        if not configs:
            if not self.ready.is_set():
                self.sink.note(WARNING, INVALID_SPEC, f"declaration/{self.label}",
                               f"no config object carries the label {self.label}")
            self.ready.set()
            return
        newest = max(configs, key=lambda c: (parse_time(c.get("CreatedAt")), c["ID"]))
        name = str((newest.get("Spec") or {}).get("Name", newest["ID"]))
        data = base64.b64decode((newest.get("Spec") or {}).get("Data") or "")
        self.offer(data, f"config/{name}")
        self.ready.set()

    async def run(self) -> None:
        while True:
            self._poke.clear()
            try:
                await self.refresh()
            except SwarmError as err:
                self.sink.note(WARNING, "TemporaryError", f"declaration/{self.label}",
                               f"cannot read the declaration configs: {err}")
            try:
                await asyncio.wait_for(self._poke.wait(), self.resync)
            except TimeoutError:
                pass
