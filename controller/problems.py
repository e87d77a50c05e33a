"""One-line problem reports: a field path, the offending value (truncated), and what is wrong.

Every error about operator input (declarations, catalogs, YAML documents) is a list of `Problem`s.
`str(problem)` is always a single line that starts with the field path (or `document` for
whole-document problems) and never echoes more than a bounded part of the value.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final


class _Absent(enum.Enum):
    """Marker for "no value to show" (a missing field, an unknown field, a whole document)."""

    ABSENT = "ABSENT"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent.ABSENT
MAX_PROBLEMS: Final = 50

MAX_VALUE_CHARS: Final = 60
MAX_KEY_CHARS: Final = 40
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def shorten(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text` cut to `limit` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_value(value: object) -> str:
    """A bounded, single-line rendering of `value` for an error message."""
    if isinstance(value, str):
        return repr(shorten(value, MAX_VALUE_CHARS - 2))
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item(s)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**40:
        return f"a {len(str(abs(value)))}-digit number"
    return shorten(repr(value))


def format_path(parts: Iterable[object], root: str = "") -> str:
    """`('spec', 'strategy', 'drainTimeout')` -> `spec.strategy.drainTimeout`; list indices as
    `[3]`; keys that are not plain identifiers are quoted (and shortened) as `["…"]`."""
    out = root
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            text = repr(shorten(part, MAX_KEY_CHARS)) if isinstance(part, str) else show_value(part)
            out += f"[{text}]"
    return out or "document"


def join_path(prefix: str, name: str) -> str:
    """`join_path('spec', 'version')` -> `spec.version` (a `document` prefix is dropped)."""
    return format_path([name], "" if prefix in ("", "document") else prefix)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: `path: value message` on one line."""

    path: str
    value: object
    message: str

    def __str__(self) -> str:
        if self.value is ABSENT:
            line = f"{self.path}: {self.message}"
        else:
            line = f"{self.path}: {show_value(self.value)} {self.message}"
        # Keys and messages are already escaped; this guarantees one line whatever comes in.
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", line)


def capped(problems: Sequence[Problem], limit: int = MAX_PROBLEMS) -> list[Problem]:
    """At most `limit` problems; the rest summarised in one `document:` line, so that a document
    with thousands of defects does not flood the logs."""
    if len(problems) <= limit:
        return list(problems)
    rest = len(problems) - limit
    return [*problems[:limit], Problem("document", ABSENT, f"and {rest} more problem(s)")]


def render(problems: Sequence[Problem]) -> str:
    """The problems as lines joined by newlines."""
    return "\n".join(str(p) for p in problems)


class ProblemsError(ValueError):
    """Base of the errors that carry a list of problems; str() is one line per problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(render(self.problems))
