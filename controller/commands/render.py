"""Plain terminal output for people: aligned tables, a progress bar, ANSI colour on a TTY.

Colour only when the stream is a terminal and NO_COLOR is not set; no dependency beyond stdlib.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TextIO

_CODES = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "bold": "1", "dim": "2"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Style:
    """`style.red("x")` colours text only when colour is on."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def paint(self, text: str, *names: str) -> str:
        if not self.colour or not names:
            return text
        codes = ";".join(_CODES[n] for n in names)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def red(self, text: str) -> str:
        return self.paint(text, "red")

    def green(self, text: str) -> str:
        return self.paint(text, "green")

    def yellow(self, text: str) -> str:
        return self.paint(text, "yellow")

    def bold(self, text: str) -> str:
        return self.paint(text, "bold")

    def dim(self, text: str) -> str:
        return self.paint(text, "dim")


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, two spaces apart; cells may carry colour codes."""
    widths = [visible_len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c + " " * (widths[i] - visible_len(c)) for i, c in enumerate(cells)]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def bar(done: int, total: int, width: int = 30) -> str:
    """`[██████░░░░░░] 2/5 (40%)`."""
    fraction = done / total if total else 1.0
    filled = round(fraction * width)
    return f"[{'█' * filled}{'░' * (width - filled)}] {done}/{total} ({fraction:.0%})"
