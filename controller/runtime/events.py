"""Reconcile events: one JSON object per line on stdout (or one readable line with `text`).

Every event has `time` (RFC 3339 UTC), `type` (Normal | Warning), `reason`, `object`
(`node/<hostname>`, `scaleset/<name>`, `rollout/<id>`), `message`, `rollout` and `version`.
`EventSink.note` deduplicates repeated waits/refusals: the same (reason, object, message) is
emitted again only after `repeat_after` seconds (a changed message is emitted at once).
Secrets registered with
`add_secret` (and anything that looks like a bearer token) are masked in every message.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

NORMAL = "Normal"
WARNING = "Warning"

# Step events of a rollout (issue 4, item 6).
ROLLOUT_STARTED = "RolloutStarted"
NODE_DRAINING = "NodeDraining"
NODE_DRAINED = "NodeDrained"
NODE_DEMOTED = "NodeDemoted"
MODEL_UPDATED = "ScaleSetModelUpdated"
INSTANCE_REIMAGING = "InstanceReimaging"
INSTANCE_REIMAGED = "InstanceReimaged"
NODE_REJOINED = "NodeRejoined"
OLD_NODE_REMOVED = "OldNodeRemoved"
DOWN_NODE_REMOVED = "DownNodeRemoved"
AVAILABILITY_RESTORED = "AvailabilityRestored"
NODE_UPGRADED = "NodeUpgraded"
LEASE_ACQUIRED = "LeaseAcquired"
LEASE_LOST = "LeaseLost"
LEASE_HANDED_OVER = "LeaseHandedOver"
ROLLOUT_SUCCEEDED = "RolloutSucceeded"
INVALID_SPEC = "InvalidSpec"
SPEC_LOADED = "DeclarationLoaded"
TEMPORARY_ERROR = "TemporaryError"
ACTION_FAILED = "ActionFailed"
REIMAGE_FAILED = "ReimageFailed"
CONTROLLER_HALTED = "ControllerHalted"

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


@dataclass(frozen=True)
class Event:
    time: float
    type: str
    reason: str
    object: str
    message: str
    rollout: str = ""
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds")
        return {
            "time": stamp.replace("+00:00", "Z"),
            "type": self.type,
            "reason": self.reason,
            "object": self.object,
            "message": self.message,
            "rollout": self.rollout,
            "version": self.version,
        }

    def to_text(self) -> str:
        d = self.to_dict()
        tail = f" [rollout {self.rollout}]" if self.rollout else ""
        return (f"{d['time']} {self.type:<7} {self.reason:<20} {self.object:<28} "
                f"{self.message}{tail}")


class EventSink:
    """Writes events to a stream; thread-safe; remembers what it emitted (`emitted`)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        fmt: str = "json",
        repeat_after: float = 60.0,
        clock: Callable[[], float] = time.time,
        keep: int = 1000,
    ) -> None:
        if fmt not in ("json", "text"):
            raise ValueError(f"--log-format: {fmt!r} is not one of json, text")
        self.stream = stream if stream is not None else sys.stdout
        self.fmt = fmt
        self.repeat_after = repeat_after
        self.clock = clock
        self.emitted: list[Event] = []
        self._keep = keep
        self._secrets: list[str] = []
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[Event], None]] = []

    def add_secret(self, value: str | None) -> None:
        """Never print `value` (credentials, tokens)."""
        if value and len(value) >= 4 and value not in self._secrets:
            self._secrets.append(value)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _BEARER.sub(r"\1***", text)

    def emit(
        self, type_: str, reason: str, obj: str, message: str, rollout: str = "",
        version: str = "",
    ) -> Event:
        """Write one event now."""
        event = Event(self.clock(), type_, reason, obj, self.redact(message), rollout, version)
        line = json.dumps(event.to_dict()) if self.fmt == "json" else event.to_text()
        with self._lock:
            self._last[(reason, obj, event.message)] = event.time
            self.emitted.append(event)
            del self.emitted[: -self._keep]
            self.stream.write(line + "\n")
            self.stream.flush()
        for listener in self.listeners:
            listener(event)
        return event

    def note(
        self, type_: str, reason: str, obj: str, message: str, rollout: str = "",
        version: str = "",
    ) -> Event | None:
        """Emit unless the same (reason, object, message) was emitted less than
        `repeat_after` seconds ago (waits and refusals repeat every pass)."""
        now = self.clock()
        last = self._last.get((reason, obj, self.redact(message)))
        if last is not None and now - last < self.repeat_after:
            return None
        if len(self._last) > 512:  # forget what would be repeated anyway
            self._last = {k: t for k, t in self._last.items() if now - t < self.repeat_after}
        return self.emit(type_, reason, obj, message, rollout, version)


def node_object(hostname: str) -> str:
    return f"node/{hostname}"


def scaleset_object(name: str) -> str:
    return f"scaleset/{name}"


def rollout_object(rollout_id: str) -> str:
    return f"rollout/{rollout_id}"
