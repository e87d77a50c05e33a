"""The SwarmUpgrade declaration: defaults, each field's bounds, durations, the example manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller import schemas
from controller.catalog import load_catalog
from controller.model import (
    DeclarationError,
    Desired,
    Problem,
    Strategy,
    check_against_catalog,
    load_desired_file,
    load_desired_text,
    parse_desired,
    parse_duration,
)
from controller.problems import ABSENT

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests" / "desired.example.yaml"


def minimal() -> dict[str, Any]:
    return {
        "apiVersion": "swarm-upgrade.io/v1alpha1",
        "kind": "SwarmUpgrade",
        "metadata": {"name": "prod"},
        "spec": {"channel": "stable", "version": "17.06.1-ce-azure1"},
    }


def with_spec(**spec: Any) -> dict[str, Any]:
    doc = minimal()
    doc["spec"].update(spec)
    return doc


def with_strategy(**strategy: Any) -> dict[str, Any]:
    return with_spec(strategy=strategy)


def problems_of(doc: object) -> list[str]:
    with pytest.raises(DeclarationError) as info:
        parse_desired(doc)
    return [str(p) for p in info.value.problems]


def test_defaults() -> None:
    desired = parse_desired(minimal())
    assert desired == Desired(
        name="prod", channel="stable", version="17.06.1-ce-azure1", digest=desired.digest
    )
    assert desired.manager_scale_set == "swarm-manager-vmss"
    assert desired.worker_scale_set == "swarm-worker-vmss"
    assert desired.strategy == Strategy(1, 900.0, 1800.0, 0.0)
    assert (desired.remove_down_nodes, desired.allow_downgrade, desired.paused) == (
        False, False, False)
    assert len(desired.digest) == 64


def test_crd_defaults_agree_with_the_dataclass_defaults() -> None:
    spec = schemas.declaration_schema()["properties"]["spec"]["properties"]
    strategy = spec["strategy"]["properties"]
    assert strategy["maxUnavailableWorkers"]["default"] == Strategy().max_unavailable_workers
    default = Strategy()
    assert parse_duration(strategy["drainTimeout"]["default"]) == default.drain_timeout
    assert parse_duration(strategy["nodeReadyTimeout"]["default"]) == default.node_ready_timeout
    assert parse_duration(strategy["pauseBetweenNodes"]["default"]) == default.pause_between_nodes
    assert spec["scaleSets"]["properties"]["managers"]["default"] == "swarm-manager-vmss"
    assert spec["scaleSets"]["properties"]["workers"]["default"] == "swarm-worker-vmss"
    for flag in ("removeDownNodes", "allowDowngrade", "paused"):
        assert spec[flag]["default"] is False


def test_every_field_is_read() -> None:
    desired = parse_desired(
        with_spec(
            channel="edge",
            version="17.07.0-ce-azure1",
            scaleSets={"managers": "mgr", "workers": "wrk"},
            strategy={"maxUnavailableWorkers": 3, "drainTimeout": "90s",
                      "nodeReadyTimeout": "1h30m", "pauseBetweenNodes": "2m"},
            removeDownNodes=True,
            allowDowngrade=True,
            paused=True,
        )
    )
    assert desired == Desired(
        name="prod", channel="edge", version="17.07.0-ce-azure1", manager_scale_set="mgr",
        worker_scale_set="wrk", strategy=Strategy(3, 90.0, 5400.0, 120.0),
        remove_down_nodes=True, allow_downgrade=True, paused=True, digest=desired.digest,
    )


def test_digest_follows_the_spec_only() -> None:
    base = parse_desired(minimal()).digest
    explicit_defaults = with_spec(strategy={"maxUnavailableWorkers": 1}, paused=False)
    assert parse_desired(explicit_defaults).digest == base
    renamed = minimal()
    renamed["metadata"]["name"] = "other"
    assert parse_desired(renamed).digest == base
    assert parse_desired(with_spec(paused=True)).digest != base
    assert parse_desired(with_spec(version="17.06.2-ce-azure1")).digest != base


def test_example_manifest_validates() -> None:
    desired = load_desired_file(EXAMPLE)
    assert (desired.channel, desired.version) == ("stable", "17.06.1-ce-azure1")
    assert check_against_catalog(desired, load_catalog()) == []


def test_metadata_labels_and_annotations_are_allowed() -> None:
    doc = minimal()
    doc["metadata"]["labels"] = {"team": "infra"}
    doc["metadata"]["annotations"] = {"ticket": "OPS-1"}
    assert parse_desired(doc).name == "prod"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("15m", 900.0), ("1h30m", 5400.0), ("1h", 3600.0), ("2h3m4s", 7384.0),
     ("0", 0.0), ("0s", 0.0), ("90m", 5400.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "90", "-5s", "1.5h", "5ms", "1d", "30s1m", "1h 30m", "h", "1H", "9999999s", " 5s"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("field", "ok", "bad"),
    [
        ("maxUnavailableWorkers", [1, 2, 1000], [0, -1, 1001, 10**30]),
        ("drainTimeout", ["1s", "15m", "24h", "23h59m59s"], ["0s", "0", "24h1s", "999999h"]),
        ("nodeReadyTimeout", ["10s", "30m", "24h"], ["9s", "0", "25h"]),
        ("pauseBetweenNodes", ["0", "0s", "1h", "24h"], ["24h0m1s", "100h"]),
    ],
)
def test_strategy_bounds(field: str, ok: list[Any], bad: list[Any]) -> None:
    for value in ok:
        parse_desired(with_strategy(**{field: value}))
    for value in bad:
        lines = problems_of(with_strategy(**{field: value}))
        assert len(lines) == 1 and lines[0].startswith(f"spec.strategy.{field}: "), lines


def test_duration_bound_messages() -> None:
    assert problems_of(with_strategy(drainTimeout="25h")) == [
        "spec.strategy.drainTimeout: '25h' is longer than the maximum 24h"]
    assert problems_of(with_strategy(nodeReadyTimeout="5s")) == [
        "spec.strategy.nodeReadyTimeout: '5s' is shorter than the minimum 10s"]
    assert problems_of(with_strategy(pauseBetweenNodes=90)) == [
        "spec.strategy.pauseBetweenNodes: 90 must be a string"]


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ({"channel": "beta"}, "spec.channel: 'beta' must be one of stable, edge, test"),
        ({"channel": "Stable"}, "spec.channel: 'Stable' must be one of stable, edge, test"),
        ({"version": "17.6"},
         "spec.version: '17.6' must be a release name YY.MM.P-ce-azureN, e.g. 17.06.1-ce-azure1"),
        ({"scaleSets": {"managers": "-bad"}}, "spec.scaleSets.managers: '-bad' must be an Azure"),
        ({"scaleSets": {"workers": "x" * 65}}, "spec.scaleSets.workers: 'xxxxx"),
        ({"scaleSets": {"managers": "same", "workers": "same"}},
         "spec.scaleSets.workers: 'same' must differ from spec.scaleSets.managers"),
        ({"removeDownNodes": "yes"}, "spec.removeDownNodes: 'yes' must be true or false"),
        ({"allowDowngrade": 1}, "spec.allowDowngrade: 1 must be true or false"),
        ({"paused": None}, "spec.paused: null must be true or false"),
        ({"strategy": {"maxUnavailableWorkers": 2.0}},
         "spec.strategy.maxUnavailableWorkers: 2.0 must be an integer"),
        ({"strategy": {"maxUnavailableWorkers": True}},
         "spec.strategy.maxUnavailableWorkers: true must be an integer"),
        ({"strategy": {"maxUnavailableWorkers": 0}},
         "spec.strategy.maxUnavailableWorkers: 0 must be at least 1"),
        ({"strategy": {"maxUnavailableWorkers": 1001}},
         "spec.strategy.maxUnavailableWorkers: 1001 must be at most 1000"),
        ({"strategy": {"surge": 1}}, "spec.strategy.surge: is not a known field (known: "
         "maxUnavailableWorkers, drainTimeout, nodeReadyTimeout, pauseBetweenNodes, "
         "managerSettle)"),
        ({"pausd": True}, "spec.pausd: is not a known field"),
        ({"strategy": []}, "spec.strategy: a list of 0 item(s) must be a mapping"),
    ],
)
def test_field_errors(spec: dict[str, Any], line: str) -> None:
    lines = problems_of(with_spec(**spec))
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_top_level_errors() -> None:
    doc = minimal()
    doc["apiVersion"] = "v1"
    doc["kind"] = "Deployment"
    doc["status"] = {}
    del doc["metadata"]["name"]
    del doc["spec"]["version"]
    assert problems_of(doc) == [
        "apiVersion: 'v1' must be one of swarm-upgrade.io/v1alpha1",
        "kind: 'Deployment' must be one of SwarmUpgrade",
        "metadata.name: is required",
        "spec.version: is required",
        "status: is not a known field (known: apiVersion, kind, metadata, spec)",
    ]
    assert problems_of(None) == ["document: null must be a mapping"]
    assert problems_of({}) == [f"{f}: is required" for f in ("apiVersion", "kind", "metadata",
                                                             "spec")]


def test_declaration_error_shape() -> None:
    with pytest.raises(DeclarationError) as info:
        parse_desired(with_spec(channel="beta", version="x"))
    err = info.value
    assert isinstance(err, ValueError)
    assert str(err) == "\n".join(str(p) for p in err.problems)
    assert err.problems[0] == Problem("spec.channel", "beta", "must be one of stable, edge, test")


def test_problem_str() -> None:
    assert str(Problem("spec.version", "17.6", "is not a release of channel stable")) == (
        "spec.version: '17.6' is not a release of channel stable")
    assert str(Problem("spec.version", ABSENT, "is required")) == "spec.version: is required"
    long = str(Problem("spec.version", "9" * 100_000, "is too long"))
    assert len(long) < 120 and "…" in long


def test_check_against_catalog() -> None:
    catalog = load_catalog()
    assert check_against_catalog(parse_desired(minimal()), catalog) == []
    edge_only = parse_desired(with_spec(version="17.05.0-ce-azure1"))
    assert [str(p) for p in check_against_catalog(edge_only, catalog)] == [
        "spec.version: '17.05.0-ce-azure1' is not a release of channel stable"]
    on_edge = parse_desired(with_spec(channel="edge", version="17.05.0-ce-azure1"))
    assert check_against_catalog(on_edge, catalog) == []


def test_check_against_catalog_without_the_channel(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "channels:\n  stable:\n  - version: 17.06.1-ce-azure1\n"
        "    image: {publisher: p, offer: o, sku: s, version: v}\n"
    )
    desired = parse_desired(with_spec(channel="test", version="17.10.0-ce-azure1"))
    assert [str(p) for p in check_against_catalog(desired, load_catalog(path))] == [
        "spec.channel: 'test' is not a channel of the catalog (stable)"]


def test_load_desired_text_accepts_json_and_bytes() -> None:
    import json

    text = json.dumps(minimal())
    assert load_desired_text(text) == load_desired_text(text.encode()) == parse_desired(minimal())
