"""Reading JSON-shaped values with one-line errors that name the field path and the bad value.

Shared by the pure core's `from_dict` readers (snapshot, progress). Pure, stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

MISSING: Any = object()


def field_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def get(obj: Mapping[str, Any], key: str, where: str, default: Any) -> Any:
    if key in obj and obj[key] is not None:
        return obj[key]
    if default is MISSING:
        raise ValueError(f"{field_path(where, key)}: required field is missing")
    return default


def string(
    obj: Mapping[str, Any],
    key: str,
    where: str,
    default: Any = MISSING,
    choices: Sequence[str] = (),
) -> str:
    value = get(obj, key, where, default)
    if not isinstance(value, str):
        raise ValueError(f"{field_path(where, key)}: expected a string, got {value!r}")
    if choices and value not in choices:
        allowed = ", ".join(c for c in choices if c)
        raise ValueError(f"{field_path(where, key)}: {value!r} is not one of {allowed}")
    return value


def number(obj: Mapping[str, Any], key: str, where: str, default: Any = MISSING) -> float:
    value = get(obj, key, where, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field_path(where, key)}: expected a number, got {value!r}")
    return float(value)


def integer(obj: Mapping[str, Any], key: str, where: str, default: Any = MISSING) -> int:
    value = get(obj, key, where, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{field_path(where, key)}: expected a non-negative integer, got {value!r}"
        )
    return value


def boolean(obj: Mapping[str, Any], key: str, where: str, default: Any = MISSING) -> bool:
    value = get(obj, key, where, default)
    if not isinstance(value, bool):
        raise ValueError(f"{field_path(where, key)}: expected true or false, got {value!r}")
    return value


def array(obj: Mapping[str, Any], key: str, where: str, required: bool = False) -> list[Any]:
    value = get(obj, key, where, MISSING if required else [])
    if not isinstance(value, list):
        raise ValueError(f"{field_path(where, key)}: expected a list, got {type(value).__name__}")
    return value


def labels(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, str]:
    value = get(obj, key, where, {})
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{field_path(where, key)}: expected an object, got {type(value).__name__}"
        )
    for k, v in value.items():
        if not isinstance(v, str):
            raise ValueError(f"{field_path(where, key)}.{k}: expected a string, got {v!r}")
    return MappingProxyType({str(k): v for k, v in value.items()})
