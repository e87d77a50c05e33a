"""Durations as operators write them in declarations: `90s`, `15m`, `1h30m`, `0`."""

from __future__ import annotations

import re
from typing import Final

_DURATION: Final = re.compile(r"(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,6})s)?")


def parse_duration(text: str) -> float:
    """Seconds in `text` (hours, minutes, seconds in that order, each optional: `1h30m`, `90s`;
    `0` alone is zero). Raises ValueError for anything else (empty, negative, other units)."""
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text[:40]!r} is not a duration like 90s, 15m or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def format_duration(seconds: float) -> str:
    """The shortest `XhYmZs` text for a whole number of seconds (`0s` for zero)."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    text += f"{secs}s" if secs or not text else ""
    return text
