"""Progress: JSON round trip, schema, resume semantics, and the size bound for 1000 nodes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from controller import progress as pg
from controller.progress import NodeProgress, Progress

ROOT = Path(__file__).resolve().parents[2]


def sample() -> Progress:
    p = Progress("17.06.1-ce-azure1-100", "stable", "17.06.1-ce-azure1", 100.0, "abc")
    p = p.with_node(
        NodeProgress(
            "swarm-worker000001",
            "swarm-worker-vmss",
            "1",
            "worker",
            "pause",
            "oldid",
            pg.REIMAGE,
            150.0,
            attempts=1,
            reimage_requested_at=150.0,
        )
    )
    p = p.with_node(
        NodeProgress(
            "swarm-worker000002",
            "swarm-worker-vmss",
            "2",
            "worker",
            "active",
            "old2",
            pg.DRAIN,
            151.0,
        )
    )
    p = p.with_history(150.0, "swarm-worker000001", pg.REIMAGE)
    return p


def test_round_trip_through_json() -> None:
    p = sample()
    halted = Progress.from_dict(json.loads(json.dumps(p.to_dict())))
    assert halted == p
    p2 = p.halt("NodeTimeout", "x missed", "swarm-worker000001", 200.0)
    assert Progress.from_dict(json.loads(json.dumps(p2.to_dict()))) == p2


def test_matches_schema() -> None:
    schema = json.loads((ROOT / "crd" / "progress.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    p = sample().halt("NodeTimeout", "x missed", "swarm-worker000001", 200.0)
    jsonschema.validate(p.to_dict(), schema)


def test_history_is_bounded() -> None:
    p = sample()
    for i in range(500):
        p = p.with_history(float(i), f"swarm-worker{i:06d}", pg.FINISHED)
    assert len(p.history) == pg.HISTORY_LIMIT
    assert p.history[-1].hostname == "swarm-worker000499"


def test_size_for_1000_nodes_stays_under_200_kb() -> None:
    p = sample()
    done = tuple(f"swarm-worker{i:06d}" for i in range(1000))
    p = Progress(
        p.rollout_id,
        p.channel,
        p.target_version,
        p.started_at,
        p.desired_digest,
        nodes=p.nodes,
        done=done,
    )
    for i in range(50):  # a wide worker batch in flight
        p = p.with_node(
            NodeProgress(
                f"swarm-worker{i:06d}",
                "swarm-worker-vmss",
                str(i),
                "worker",
                "active",
                "x" * 25,
                pg.REIMAGE,
                1.0e9,
                new_node_id="y" * 25,
                attempts=2,
                reimage_requested_at=1.0e9,
            )
        )
    for i in range(1000):
        p = p.with_history(1.0e9 + i, f"swarm-worker{i:06d}", pg.FINISHED)
    assert len(json.dumps(p.to_dict(), separators=(",", ":"))) < 200_000


def test_resume_clears_the_halt_and_restarts_the_nodes_timers() -> None:
    p = sample().halt("NodeTimeout", "x", "swarm-worker000001", 200.0)
    r = p.resumed(500.0)
    assert not r.halted
    rec = r.nodes["swarm-worker000001"]
    assert rec.phase == pg.REIMAGE and rec.phase_since == 500.0
    assert rec.reimage_requested_at == 500.0 and rec.retry
    assert r.history[-1].phase == pg.RESUMED
    assert sample().resumed(500.0) == sample()  # not halted: unchanged


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"channel": "stable", "targetVersion": "v"}, "rolloutId: required field is missing"),
        (
            {
                "rolloutId": "r",
                "channel": "stable",
                "targetVersion": "v",
                "nodes": {"h": {"phase": "drain"}},
            },
            "nodes.h.scaleSet: required field is missing",
        ),
        (
            {"rolloutId": "r", "channel": "stable", "targetVersion": "v", "history": [[1, "h"]]},
            "history[0]: expected [time, hostname, phase]",
        ),
    ],
)
def test_bad_progress_names_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Progress.from_dict(data)
    assert str(err.value).startswith(message)
