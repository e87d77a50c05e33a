"""The desired-version declaration (`kind: SwarmUpgrade`): parsing, validation, defaults.

A declaration is validated against the openAPIV3Schema of `crd/swarmupgrade.yaml` (defaults
applied first), then turned into a frozen `Desired`. Every problem is one line naming the field
and the (truncated) value; nothing here raises anything but `DeclarationError` on bad input.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Final

from controller import safeyaml, schemas
from controller.catalog import Catalog
from controller.durations import parse_duration
from controller.problems import ABSENT, Problem, ProblemsError

__all__ = [
    "ABSENT",
    "DeclarationError",
    "Desired",
    "Problem",
    "Strategy",
    "check_against_catalog",
    "declaration_problems",
    "load_desired_file",
    "load_desired_text",
    "parse_desired",
    "parse_duration",
]

MAX_DECLARATION_BYTES: Final = safeyaml.DEFAULT_MAX_BYTES


class DeclarationError(ProblemsError):
    """The declaration is invalid; `problems` lists every reason, str() is one line each."""


@dataclass(frozen=True)
class Strategy:
    """How the rollout paces itself (durations in seconds)."""

    max_unavailable_workers: int = 1
    drain_timeout: float = 900.0
    node_ready_timeout: float = 1800.0
    pause_between_nodes: float = 0.0
    # Every other manager must be seen Ready and Reachable this long (two observations at least
    # this far apart) before a manager is demoted; ≥ the time the leader takes to report a
    # frozen manager (≈3 s measured) with a margin.
    manager_settle: float = 10.0


@dataclass(frozen=True)
class Desired:
    """A validated declaration, with defaults applied."""

    name: str
    channel: str
    version: str
    manager_scale_set: str = "swarm-manager-vmss"
    worker_scale_set: str = "swarm-worker-vmss"
    strategy: Strategy = Strategy()
    remove_down_nodes: bool = False
    allow_downgrade: bool = False
    paused: bool = False
    # sha256 of the canonical JSON of the validated, defaulted spec: changes iff the spec does.
    digest: str = ""


def _spec_digest(spec: object) -> str:
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _schema_problems(doc: object) -> tuple[object, list[Problem]]:
    odd = safeyaml.plain_problem(doc)
    if odd is not None:
        return doc, [odd]
    schema = schemas.declaration_schema()
    defaulted = schemas.apply_defaults(doc, schema)
    problems = schemas.validate(defaulted, schema)
    if not problems:
        spec: dict[str, Any] = defaulted["spec"]  # type: ignore[index]
        managers, workers = spec["scaleSets"]["managers"], spec["scaleSets"]["workers"]
        if managers == workers:
            message = "must differ from spec.scaleSets.managers"
            problems.append(Problem("spec.scaleSets.workers", workers, message))
    return defaulted, problems


def parse_desired(doc: object) -> Desired:
    """A `Desired` from loaded YAML/JSON data; raises `DeclarationError` listing every problem."""
    defaulted, problems = _schema_problems(doc)
    if problems:
        raise DeclarationError(problems)
    assert isinstance(defaulted, dict)
    spec = defaulted["spec"]
    strategy = spec["strategy"]
    return Desired(
        name=defaulted["metadata"]["name"],
        channel=spec["channel"],
        version=spec["version"],
        manager_scale_set=spec["scaleSets"]["managers"],
        worker_scale_set=spec["scaleSets"]["workers"],
        strategy=Strategy(
            max_unavailable_workers=strategy["maxUnavailableWorkers"],
            drain_timeout=parse_duration(strategy["drainTimeout"]),
            node_ready_timeout=parse_duration(strategy["nodeReadyTimeout"]),
            pause_between_nodes=parse_duration(strategy["pauseBetweenNodes"]),
            manager_settle=parse_duration(strategy["managerSettle"]),
        ),
        remove_down_nodes=spec["removeDownNodes"],
        allow_downgrade=spec["allowDowngrade"],
        paused=spec["paused"],
        digest=_spec_digest(spec),
    )


def load_desired_text(data: str | bytes) -> Desired:
    """Parse YAML (or JSON) text safely, then `parse_desired`."""
    try:
        doc = safeyaml.load(data, MAX_DECLARATION_BYTES)
    except safeyaml.YamlError as err:
        raise DeclarationError(err.problems) from None
    return parse_desired(doc)


def load_desired_file(path: str | os.PathLike[str]) -> Desired:
    """`load_desired_text` of the file at `path` (read no further than the size cap)."""
    try:
        data = safeyaml.read_file(path, MAX_DECLARATION_BYTES)
    except safeyaml.YamlError as err:
        raise DeclarationError(err.problems) from None
    return load_desired_text(data)


def _catalog_problems(channel: object, version: object, catalog: Catalog) -> list[Problem]:
    if not isinstance(channel, str):
        return []
    if channel not in catalog.channels():
        known = ", ".join(catalog.channels())
        return [Problem("spec.channel", channel, f"is not a channel of the catalog ({known})")]
    if isinstance(version, str) and catalog.release(channel, version) is None:
        return [Problem("spec.version", version, f"is not a release of channel {channel}")]
    return []


def check_against_catalog(desired: Desired, catalog: Catalog) -> list[Problem]:
    """What makes `desired` impossible with `catalog`: an unknown channel, or a version that is
    not a release of its channel."""
    return _catalog_problems(desired.channel, desired.version, catalog)


def declaration_problems(data: str | bytes, catalog: Catalog | None) -> list[Problem]:
    """Every problem of a declaration document (what `swarm-upgrade validate` reports): safe
    loading, the schema, and — when `catalog` is given — catalog membership, which is checked
    even when the schema also complains about the same version (so the operator sees both)."""
    try:
        doc = safeyaml.load(data, MAX_DECLARATION_BYTES)
    except safeyaml.YamlError as err:
        return err.problems
    _, problems = _schema_problems(doc)
    if catalog is not None:
        spec = doc.get("spec") if isinstance(doc, dict) else None
        if isinstance(spec, dict):
            channel, version = spec.get("channel"), spec.get("version")
            schema_rejected_channel = any(p.path == "spec.channel" for p in problems)
            if not schema_rejected_channel:
                problems.extend(_catalog_problems(channel, version, catalog))
    return problems
