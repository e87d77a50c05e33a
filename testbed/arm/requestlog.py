"""The request log of the local ARM endpoint: one entry per request, counts for benchmarks."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class RequestLogEntry:
    """One answered request.

    `time` is epoch seconds at arrival; `operation` the route's operation name (``Unmatched``
    for unknown paths); `kind` is ``read`` (GET/HEAD) or ``write``; `status` the HTTP status;
    `duration` seconds to answer; `instances` the instance ids a write named (the body's
    ``instanceIds`` of a manual upgrade, reimage, ...), so a log tells which instance was
    reimaged (left out of `to_dict` when empty).
    """

    time: float
    method: str
    path: str
    operation: str
    kind: str
    status: int
    duration: float
    instances: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form."""
        out = asdict(self)
        if self.instances:
            out["instances"] = list(self.instances)
        else:
            del out["instances"]
        return out


class RequestLog(list[RequestLogEntry]):
    """All entries in arrival order, with per-operation counts."""

    def dump(self, path: str | Path) -> None:
        """Write the entries as JSON lines (for benchmark reports)."""
        Path(path).write_text("".join(json.dumps(e.to_dict()) + "\n" for e in self))

    def counts(self) -> dict[str, dict[str, int]]:
        """Per operation ``{"reads", "writes", "throttled", "errors"}`` plus a ``"*"`` total.

        `throttled` counts 429 answers, `errors` every other status ≥ 400. The ``"*"`` total
        counts ARM requests only (not the ``Identity_*`` token endpoints).
        """
        table: dict[str, dict[str, int]] = defaultdict(
            lambda: {"reads": 0, "writes": 0, "throttled": 0, "errors": 0}
        )
        for entry in self:
            keys = [entry.operation]
            if not entry.operation.startswith("Identity_"):
                keys.append("*")
            for key in keys:
                row = table[key]
                row["writes" if entry.kind == "write" else "reads"] += 1
                if entry.status == 429:
                    row["throttled"] += 1
                elif entry.status >= 400:
                    row["errors"] += 1
        table["*"] = table["*"]  # an empty log still has a total row
        return dict(table)
