"""The ARM template of a release: loading it, its static checks, and the parameters of its
deployment derived from the resource group's last deployment.

A release of the catalog may name a `template` (a JSON ARM template, path relative to the catalog
file, or a file bundled under `controller/templates/`) and `parameters` rules. The seed's way of
upgrading the resource group is "re-run the last deployment with the new template and the old
parameters", so every parameter the new template declares takes, in this order:

1. the rule's `value` (a fixed value), or the last deployment's value of the rule's `from` (a
   renamed parameter);
2. the last deployment's value of the same name (kept);
3. nothing: ARM applies the template's `defaultValue` (a parameter without one is an error).

Pure: no I/O beyond reading the template file at catalog load time.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

MAX_TEMPLATE_BYTES: Final = 256 * 1024
DEPLOYMENT_PREFIX: Final = "swarm-upgrade-"
# The controller reimages scale-set instances node by node; a deployment must never touch them.
FORBIDDEN_TYPES: Final = (
    "microsoft.compute/virtualmachinescalesets",
    "microsoft.compute/virtualmachinescalesets/virtualmachines",
    "microsoft.compute/virtualmachinescalesets/extensions",
)
_TOP_KEYS: Final = ("$schema", "contentVersion", "resources")


class TemplateError(ValueError):
    """A template cannot be used; the message is one line (without the field path)."""


@dataclass(frozen=True)
class ParameterRule:
    """How one parameter of the new template gets its value: `value` or `source` (`from`)."""

    name: str
    source: str = ""
    value: Any = None
    fixed: bool = False  # True when `value` is set (it may legitimately be null)


@dataclass(frozen=True)
class Template:
    """A loaded, statically checked ARM template of a release."""

    source: str  # the catalog's `template` string
    body: Mapping[str, Any] = field(hash=False, compare=False)
    digest: str  # sha256 of the canonical JSON of `body`
    rules: tuple[ParameterRule, ...] = ()

    def declared(self) -> dict[str, Mapping[str, Any]]:
        """The template's `parameters` section: name → declaration."""
        params = self.body.get("parameters") or {}
        return {str(k): v for k, v in params.items() if isinstance(v, Mapping)}

    def resource_types(self) -> list[str]:
        return [str(r.get("type", "")) for r in self.body.get("resources", [])]


def deployment_name(version: str) -> str:
    """The deployment of a release is named after it, so re-running it is idempotent."""
    return f"{DEPLOYMENT_PREFIX}{version}"


def digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _read(ref: str, base_dir: Path | None) -> bytes:
    candidates: list[Path] = []
    if base_dir is not None:
        candidates.append(base_dir / ref)
    for path in candidates:
        if path.is_file():
            if path.stat().st_size > MAX_TEMPLATE_BYTES:
                raise TemplateError(f"is larger than {MAX_TEMPLATE_BYTES} bytes")
            return path.read_bytes()
    bundled = importlib.resources.files("controller") / "templates" / ref
    if "/" not in ref and "\\" not in ref and bundled.is_file():
        data = bundled.read_bytes()
        if len(data) > MAX_TEMPLATE_BYTES:
            raise TemplateError(f"is larger than {MAX_TEMPLATE_BYTES} bytes")
        return data
    where = f"next to the catalog ({base_dir}) nor " if base_dir is not None else ""
    raise TemplateError(f"is not a file {where}in the bundled controller/templates/")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TemplateError(f"has the key {key[:40]!r} twice")
        out[key] = value
    return out


def parse_body(data: bytes) -> dict[str, Any]:
    """The JSON object of a template file; TemplateError if it is not one."""
    try:
        body = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise TemplateError("is not UTF-8") from None
    except json.JSONDecodeError as err:
        raise TemplateError(f"is not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(body, dict):
        raise TemplateError("is not a JSON object")
    return body


def static_problems(body: Mapping[str, Any]) -> list[str]:
    """What makes a template unusable before ARM sees it (one line each)."""
    problems = [f"has no {key!r}" for key in _TOP_KEYS if key not in body]
    resources = body.get("resources", [])
    if not isinstance(resources, list):
        problems.append("'resources' is not a list")
        resources = []
    for index, resource in enumerate(resources):
        if not isinstance(resource, Mapping) or not isinstance(resource.get("type"), str):
            problems.append(f"resources[{index}] has no 'type'")
            continue
        if resource["type"].lower() in FORBIDDEN_TYPES:
            problems.append(
                f"resources[{index}] is a {resource['type']}: scale sets are reimaged node by "
                "node by the controller, never by the deployment"
            )
    params = body.get("parameters", {})
    if not isinstance(params, Mapping):
        problems.append("'parameters' is not an object")
    else:
        for name, decl in params.items():
            if not isinstance(decl, Mapping) or not isinstance(decl.get("type"), str):
                problems.append(f"parameters.{name} has no 'type'")
    return problems


def load(
    ref: str, base_dir: Path | None, rules: tuple[ParameterRule, ...] = ()
) -> Template:
    """Load and statically check the template `ref`; TemplateError (one line) if unusable."""
    body = parse_body(_read(ref, base_dir))
    problems = static_problems(body)
    if problems:
        raise TemplateError(problems[0])
    declared = body.get("parameters", {})
    for rule in rules:
        if rule.name not in declared:
            raise TemplateError(f"declares no parameter {rule.name!r} (named in parameters)")
    return Template(ref, body, digest(body), rules)


def rules_from(mapping: Mapping[str, Any]) -> tuple[ParameterRule, ...]:
    """The catalog's `parameters` mapping (schema-validated) as rules."""
    out: list[ParameterRule] = []
    for name, rule in mapping.items():
        if "value" in rule:
            out.append(ParameterRule(str(name), value=rule["value"], fixed=True))
        else:
            out.append(ParameterRule(str(name), source=str(rule["from"])))
    return tuple(out)


def derive_parameters(
    template: Template, old: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """The new deployment's parameter values (`{name: value}`) from the last deployment's (`old`,
    None when the resource group has none), and the problems (a parameter with no value)."""
    old = old or {}
    rules = {r.name: r for r in template.rules}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, decl in template.declared().items():
        rule = rules.get(name)
        if rule is not None and rule.fixed:
            values[name] = rule.value
        elif rule is not None and rule.source in old:
            values[name] = old[rule.source]
        elif name in old:
            values[name] = old[name]
        elif "defaultValue" not in decl:
            hint = f" (nor {rule.source!r})" if rule is not None else ""
            problems.append(
                f"parameter {name!r} has no defaultValue and the last deployment has no value "
                f"for it{hint}"
            )
    return values, problems


def base_dir_of(source: str | os.PathLike[str]) -> Path | None:
    """The directory templates of the catalog loaded from `source` are relative to."""
    text = os.fspath(source)
    if not text or text == "bundled":
        return None
    return Path(text).resolve().parent
