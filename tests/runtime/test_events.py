"""Event lines: the JSON fields, the text format, deduplication of waits, redaction."""

from __future__ import annotations

import io
import json

import pytest

from controller.runtime.events import EventSink

FIELDS = {"time", "type", "reason", "object", "message", "rollout", "version"}


class Clock:
    def __init__(self) -> None:
        self.now = 1764172800.0

    def __call__(self) -> float:
        return self.now


def test_one_json_object_per_line_with_every_field() -> None:
    out = io.StringIO()
    sink = EventSink(out, clock=Clock())
    sink.emit("Normal", "NodeDraining", "node/swarm-worker000000", "draining", "r1", "17.06.1")
    sink.emit("Warning", "DownNodes", "rollout/r1", "two\nlines")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) == FIELDS
    assert first == {"time": "2025-11-26T16:00:00.000Z", "type": "Normal",
                     "reason": "NodeDraining", "object": "node/swarm-worker000000",
                     "message": "draining", "rollout": "r1", "version": "17.06.1"}
    assert json.loads(lines[1])["message"] == "two\nlines"


def test_text_format_is_one_readable_line() -> None:
    out = io.StringIO()
    EventSink(out, fmt="text", clock=Clock()).emit(
        "Normal", "NodeDrained", "node/m1", "m1 is drained", "r1")
    line = out.getvalue()
    assert line.count("\n") == 1
    assert line.startswith("2025-11-26T16:00:00.000Z Normal  NodeDrained")
    assert "node/m1" in line and "m1 is drained" in line and "[rollout r1]" in line


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="--log-format"):
        EventSink(io.StringIO(), fmt="xml")


def test_repeated_waits_are_emitted_on_change_and_periodically() -> None:
    out, clock = io.StringIO(), Clock()
    sink = EventSink(out, repeat_after=60, clock=clock)
    assert sink.note("Normal", "NodeInTransition", "rollout/r", "waiting for m1") is not None
    clock.now += 2
    assert sink.note("Normal", "NodeInTransition", "rollout/r", "waiting for m1") is None
    clock.now += 2
    assert sink.note("Normal", "NodeInTransition", "rollout/r", "waiting for m2") is not None
    clock.now += 61
    assert sink.note("Normal", "NodeInTransition", "rollout/r", "waiting for m2") is not None
    assert len(out.getvalue().splitlines()) == 3


def test_secrets_and_bearer_tokens_are_never_printed() -> None:
    out = io.StringIO()
    sink = EventSink(out)
    sink.add_secret("sup3r-secret-value")
    sink.emit("Warning", "TemporaryError", "node/m1",
              "call failed with sup3r-secret-value and Authorization: Bearer eyJ0eXAi.abc.def")
    text = out.getvalue()
    assert "sup3r-secret-value" not in text and "eyJ0eXAi" not in text
    assert "Bearer ***" in text
