"""Snapshot JSON: test data reads, round-trips, matches its schema; errors name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controller.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "snapshot-3m2w.json"


def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text())
    return data


def test_bundled_snapshot_reads_and_round_trips() -> None:
    snap = Snapshot.from_dict(raw())
    assert snap.self_hostname == "swarm-manager000000"
    assert [n.hostname for n in snap.nodes] == [
        "swarm-manager000000",
        "swarm-manager000001",
        "swarm-manager000002",
        "swarm-worker000000",
        "swarm-worker000001",
    ]
    managers = snap.scale_set("swarm-manager-vmss")
    assert managers is not None and managers.model is not None
    assert managers.model.version == "17.06.0"
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap


def test_bundled_snapshot_and_its_round_trip_match_the_schema() -> None:
    schema = json.loads((ROOT / "crd" / "snapshot.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(raw(), schema)
    jsonschema.validate(Snapshot.from_dict(raw()).to_dict(), schema)


def test_optional_fields_default() -> None:
    snap = Snapshot.from_dict(
        {
            "nodes": [
                {
                    "id": "x",
                    "hostname": "h",
                    "role": "worker",
                    "state": "ready",
                    "availability": "active",
                }
            ],
            "scaleSets": [{"name": "s", "role": "worker"}],
        }
    )
    assert snap.self_hostname == ""
    assert snap.nodes[0].running_tasks == 0 and snap.nodes[0].reachability == ""
    assert snap.scale_sets[0].instances == () and snap.scale_sets[0].model is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("nodes"), "nodes: required field is missing"),
        (
            lambda d: d["nodes"][1].__setitem__("state", "sleepy"),
            "nodes[1].state: 'sleepy' is not one of ready, down, unknown, disconnected",
        ),
        (lambda d: d["nodes"][0].pop("id"), "nodes[0].id: required field is missing"),
        (
            lambda d: d["nodes"][3].__setitem__("runningTasks", -1),
            "nodes[3].runningTasks: expected a non-negative integer, got -1",
        ),
        (
            lambda d: d["scaleSets"][1]["instances"][0]["image"].pop("sku"),
            "scaleSets[1].instances[0].image.sku: required field is missing",
        ),
        (
            lambda d: d["scaleSets"][0]["instances"][2].__setitem__("provisioningState", "Busy"),
            "scaleSets[0].instances[2].provisioningState: 'Busy' is not one of",
        ),
        (
            lambda d: d["scaleSets"][0].__setitem__("tags", {"channel": 3}),
            "scaleSets[0].tags.channel: expected a string, got 3",
        ),
        (lambda d: d.__setitem__("scaleSets", {}), "scaleSets: expected a list, got dict"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(mutate: Any, message: str) -> None:
    data = copy.deepcopy(raw())
    mutate(data)
    with pytest.raises(ValueError) as err:
        Snapshot.from_dict(data)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_not_an_object() -> None:
    with pytest.raises(ValueError, match="snapshot: expected an object, got list"):
        Snapshot.from_dict([])
