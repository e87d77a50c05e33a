"""The JSON schemas shipped in `crd/` (the SwarmUpgrade CRD, the catalog schema): loading them,
applying their defaults, and turning validation errors into one-line `Problem`s.

The files are found in the installed wheel (`controller/_crd`, force-included by pyproject) or,
for an editable install, in the repository's `crd/` directory next to the package.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import jsonschema
import jsonschema.validators
from jsonschema.exceptions import ValidationError

import controller
from controller import safeyaml
from controller.durations import format_duration, parse_duration
from controller.problems import ABSENT, Problem, capped, format_path, join_path

CRD_FILE: Final = "swarmupgrade.yaml"
CATALOG_SCHEMA_FILE: Final = "catalog.schema.json"
API_VERSION: Final = "swarm-upgrade.io/v1alpha1"
KIND: Final = "SwarmUpgrade"
_SCHEMA_MAX_BYTES: Final = 1024 * 1024


def crd_path(name: str) -> Path:
    """Where the shipped schema file `name` is: the wheel's `controller/_crd`, else the repo's
    `crd/` (editable install)."""
    packaged = importlib.resources.files("controller") / "_crd" / name
    if packaged.is_file():
        return Path(str(packaged))
    return Path(controller.__file__).resolve().parent.parent / "crd" / name


def _load_shipped(name: str) -> object:
    path = crd_path(name)
    data = safeyaml.read_file(path, _SCHEMA_MAX_BYTES)
    if name.endswith(".json"):
        return json.loads(data)
    return safeyaml.load(data, _SCHEMA_MAX_BYTES)


@functools.cache
def crd() -> Mapping[str, Any]:
    """The CustomResourceDefinition document of SwarmUpgrade."""
    doc = _load_shipped(CRD_FILE)
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        raise RuntimeError(f"{crd_path(CRD_FILE)} is not a CustomResourceDefinition")
    return doc


@functools.cache
def declaration_schema() -> Mapping[str, Any]:
    """The openAPIV3Schema of the served version of SwarmUpgrade, read from the CRD."""
    want = API_VERSION.split("/", 1)[1]
    for version in crd()["spec"]["versions"]:
        if version.get("name") == want:
            schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise RuntimeError(f"{crd_path(CRD_FILE)} defines no version {want}")


@functools.cache
def catalog_schema() -> Mapping[str, Any]:
    """The JSON schema of release catalogs."""
    doc = _load_shipped(CATALOG_SCHEMA_FILE)
    if not isinstance(doc, dict):
        raise RuntimeError(f"{crd_path(CATALOG_SCHEMA_FILE)} is not a JSON schema")
    return doc


# --- validation ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _anchored(pattern: str) -> re.Pattern[str]:
    # JSON Schema regexes follow ECMA-262, where `$` does not match before a trailing newline.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(
    validator: Any, pattern: str, instance: object, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not _anchored(pattern).search(instance):
        yield ValidationError(f"does not match {pattern}")


def _duration_range(
    validator: Any, bounds: Mapping[str, str], instance: object, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """`x-swarm-upgrade-duration: {minimum: 1s, maximum: 24h}` bounds a duration string."""
    if not isinstance(instance, str):
        return
    try:
        seconds = parse_duration(instance)
    except ValueError:
        return  # the `pattern` keyword reports the format
    low = parse_duration(bounds.get("minimum", "0"))
    high = parse_duration(bounds.get("maximum", "0")) if "maximum" in bounds else None
    if seconds < low:
        yield ValidationError(f"is shorter than the minimum {format_duration(low)}")
    elif high is not None and seconds > high:
        yield ValidationError(f"is longer than the maximum {format_duration(high)}")


def _is_integer(checker: object, instance: object) -> bool:
    # 3.0 is a number, not an integer: counts must be written as counts.
    return isinstance(instance, int) and not isinstance(instance, bool)


_Base: Any = jsonschema.Draft202012Validator
_TYPES = _Base.TYPE_CHECKER.redefine("integer", _is_integer)
_Validator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    _Base,
    validators={"pattern": _pattern, "x-swarm-upgrade-duration": _duration_range},
    type_checker=_TYPES,
)

_TYPE_WORDS: Final = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
# When several checks fail on one field, report the most basic one.
_RANK: Final = {"type": 0, "required": 1, "additionalProperties": 2, "enum": 3, "maxLength": 4}


def _words(schema_type: object) -> str:
    if isinstance(schema_type, list):
        return " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in schema_type)
    return _TYPE_WORDS.get(str(schema_type), str(schema_type))


def _problems_of(error: ValidationError, root: str) -> list[Problem]:
    path = format_path(error.absolute_path, root)
    keyword, value = error.validator, error.instance
    expected: Any = error.validator_value
    schema: Any = error.schema
    if "propertyNames" in error.relative_schema_path:
        return [Problem(join_path(path, str(value)), ABSENT, "is not an allowed name")]
    if keyword == "required" and isinstance(value, dict):
        return [
            Problem(join_path(path, name), ABSENT, "is required")
            for name in expected
            if name not in value
        ]
    if keyword == "additionalProperties" and expected is False and isinstance(value, dict):
        known = schema.get("properties", {})
        allowed = ", ".join(known) or "none"
        return [
            Problem(join_path(path, str(key)), ABSENT, f"is not a known field (known: {allowed})")
            for key in value
            if key not in known
        ]
    message: str
    if keyword == "type":
        message = f"must be {_words(expected)}"
    elif keyword == "enum":
        message = "must be one of " + ", ".join(str(v) for v in expected)
    elif keyword == "pattern":
        message = "must be " + str(schema.get("x-expected", f"text matching {expected}"))
    elif keyword == "minLength":
        message = f"must be at least {expected} characters" if expected > 1 else "must not be empty"
    elif keyword == "maxLength":
        message = f"is longer than {expected} characters"
    elif keyword == "minimum":
        message = f"must be at least {expected}"
    elif keyword == "maximum":
        message = f"must be at most {expected}"
    elif keyword in ("minProperties", "minItems"):
        message = "must not be empty" if expected == 1 else f"needs at least {expected} entries"
    elif keyword in ("maxProperties", "maxItems"):
        message = f"has more than {expected} entries"
    elif keyword == "uniqueItems":
        message = "has duplicate entries"
    else:
        message = " ".join(error.message.split())[:120]
    return [Problem(path, value, message)]


def validate(instance: object, schema: Mapping[str, Any], root: str = "") -> list[Problem]:
    """The problems of `instance` against `schema`, one per field path, sorted by path (at most
    `MAX_PROBLEMS`, then a summary line). `root` prefixes the paths (e.g. `catalog`)."""
    validator = _Validator(schema)
    errors = sorted(
        validator.iter_errors(instance),
        key=lambda e: (len(e.absolute_path), _RANK.get(str(e.validator), 9)),
    )
    seen: dict[str, Problem] = {}
    for error in errors:
        for problem in _problems_of(error, root):
            seen.setdefault(problem.path, problem)
    return capped(sorted(seen.values(), key=lambda p: p.path))


def apply_defaults(instance: object, schema: Mapping[str, Any]) -> object:
    """A deep copy of `instance` with the schema's `default`s filled in for absent properties of
    objects (recursively, defaults included), as a Kubernetes API server does before validating."""
    result = copy.deepcopy(instance)
    _fill(result, schema)
    return result


def _fill(instance: object, schema: Mapping[str, Any]) -> None:
    if not isinstance(instance, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill(instance[name], sub)
