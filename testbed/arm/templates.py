"""ARM template evaluation for the testbed's Microsoft.Resources deployments.

Enough of the template language for the templates the controller ships: parameter checks
(declared, typed, allowedValues, min/maxValue, a value or a defaultValue), variables, and the
expressions ``[parameters('x')]``, ``[variables('x')]``, ``[concat(...)]``, ``[string(x)]``,
``[toLower(x)]``, ``[uniqueString(...)]``, ``[resourceGroup().location|name|id]`` and
``[resourceId('type', 'name', ...)]``. Anything else is ARM's ``InvalidTemplate`` with a message
naming the problem, which is what a real ARM answers for a broken template.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "securestring": (str,),
    "int": (int,),
    "bool": (bool,),
    "object": (dict,),
    "secureobject": (dict,),
    "array": (list,),
}
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<id>[A-Za-z_][\w]*)"
                    r"|(?P<sym>[().,\[\]]))")


class TemplateInvalid(Exception):
    """ARM's ``InvalidTemplate``: `message` says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Scope:
    """Where the deployment runs (for resourceGroup() and resourceId())."""

    subscription_id: str
    resource_group: str
    location: str

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"


def parameter_values(template: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Each declared parameter's value (`given` is ``{name: {"value": v}}``), checked as ARM
    checks them; TemplateInvalid otherwise."""
    declared = template.get("parameters") or {}
    if not isinstance(declared, dict):
        raise TemplateInvalid("The template 'parameters' section is not an object.")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateInvalid(
            f"The template parameters '{', '.join(unknown)}' in the parameters file are not "
            "valid; they are not present in the original template and can therefore not be "
            "provided at deployment time.")
    values: dict[str, Any] = {}
    for name, decl in declared.items():
        kind = str(decl.get("type", "")).lower() if isinstance(decl, dict) else ""
        if kind not in _TYPES:
            raise TemplateInvalid(f"The template parameter '{name}' has an invalid type "
                                  f"'{kind}'.")
        entry = given.get(name)
        if isinstance(entry, dict) and "value" in entry:
            value = entry["value"]
        elif "defaultValue" in decl:
            value = decl["defaultValue"]
        else:
            raise TemplateInvalid(f"Deployment template validation failed: 'The value for the "
                                  f"template parameter '{name}' is not provided.'")
        ok = isinstance(value, _TYPES[kind]) and not (kind == "int" and isinstance(value, bool))
        if not ok:
            raise TemplateInvalid(f"Template parameter '{name}' expects a value of type "
                                  f"'{kind}', got {type(value).__name__}.")
        allowed = decl.get("allowedValues")
        if isinstance(allowed, list) and value not in allowed:
            raise TemplateInvalid(f"The provided value '{value}' for the template parameter "
                                  f"'{name}' is not valid. The parameter value is not part of "
                                  f"the allowed value(s): '{','.join(map(str, allowed))}'.")
        if kind == "int":
            low, high = decl.get("minValue"), decl.get("maxValue")
            if (low is not None and value < low) or (high is not None and value > high):
                raise TemplateInvalid(f"The provided value '{value}' for the template "
                                      f"parameter '{name}' is out of range.")
        values[name] = value
    return values


class Evaluator:
    """Evaluates the expressions of one template with given parameter values."""

    def __init__(self, scope: Scope, parameters: Mapping[str, Any],
                 variables: Mapping[str, Any]) -> None:
        self.scope = scope
        self.parameters = parameters
        self.raw_variables = variables
        self.variables: dict[str, Any] = {}
        self.functions: dict[str, Callable[..., Any]] = {
            "parameters": self._parameter,
            "variables": self._variable,
            "concat": _concat,
            "string": lambda x: x if isinstance(x, str) else str(x).lower()
            if isinstance(x, bool) else str(x),
            "tolower": lambda x: str(x).lower(),
            "toupper": lambda x: str(x).upper(),
            "uniquestring": lambda *a: hashlib.sha256(
                "|".join(map(str, a)).encode()).hexdigest()[:13],
            "resourcegroup": lambda: {"id": scope.group_id, "name": scope.resource_group,
                                      "location": scope.location},
            "subscription": lambda: {"id": f"/subscriptions/{scope.subscription_id}",
                                     "subscriptionId": scope.subscription_id},
            "resourceid": self._resource_id,
        }

    def _parameter(self, name: str) -> Any:
        if name not in self.parameters:
            raise TemplateInvalid(f"The template parameter '{name}' is not found.")
        return self.parameters[name]

    def _variable(self, name: str) -> Any:
        if name not in self.variables:
            if name not in self.raw_variables:
                raise TemplateInvalid(f"The template variable '{name}' is not found.")
            self.variables[name] = self.value(self.raw_variables[name])
        return self.variables[name]

    def _resource_id(self, *parts: str) -> str:
        if len(parts) < 2 or "/" not in parts[0]:
            raise TemplateInvalid("The template function 'resourceId' expects a resource type "
                                  "and a name.")
        namespace, *types = parts[0].split("/")
        names = parts[1:]
        if len(types) != len(names):
            raise TemplateInvalid(f"Unable to evaluate template function 'resourceId': type "
                                  f"'{parts[0]}' needs {len(types)} name segment(s).")
        path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
        return f"{self.scope.group_id}/providers/{namespace}/{path}"

    def value(self, item: Any) -> Any:
        """`item` with every ``[expression]`` string evaluated (recursively)."""
        if isinstance(item, str):
            if item.startswith("[[") or not (item.startswith("[") and item.endswith("]")):
                return item[1:] if item.startswith("[[") else item
            return self.expression(item[1:-1])
        if isinstance(item, list):
            return [self.value(x) for x in item]
        if isinstance(item, dict):
            return {k: self.value(v) for k, v in item.items()}
        return item

    def expression(self, text: str) -> Any:
        tokens = _tokens(text)
        result, rest = self._parse(tokens, 0, text)
        if rest != len(tokens):
            raise TemplateInvalid(f"The template language expression '{text}' is not valid: "
                                  "unexpected text after the expression.")
        return result

    def _parse(self, tokens: list[tuple[str, str]], at: int, text: str) -> tuple[Any, int]:
        if at >= len(tokens):
            raise TemplateInvalid(f"The template language expression '{text}' is incomplete.")
        kind, token = tokens[at]
        if kind == "str":
            value: Any = token[1:-1].replace("''", "'")
            at += 1
        elif kind == "num":
            value, at = int(token), at + 1
        elif kind == "id":
            function = self.functions.get(token.lower())
            if function is None:
                raise TemplateInvalid(f"The template function '{token}' is not valid. Please "
                                      "see https://aka.ms/arm-functions for usage details.")
            if at + 1 >= len(tokens) or tokens[at + 1][1] != "(":
                raise TemplateInvalid(f"The template language expression '{text}' is not "
                                      f"valid: '{token}' must be called.")
            args: list[Any] = []
            at += 2
            while at < len(tokens) and tokens[at][1] != ")":
                arg, at = self._parse(tokens, at, text)
                args.append(arg)
                if at < len(tokens) and tokens[at][1] == ",":
                    at += 1
            if at >= len(tokens):
                raise TemplateInvalid(f"The template language expression '{text}' is missing "
                                      "a ')'.")
            at += 1
            try:
                value = function(*args)
            except TypeError:
                raise TemplateInvalid(f"The template function '{token}' got wrong arguments "
                                      f"in '{text}'.") from None
        else:
            raise TemplateInvalid(f"The template language expression '{text}' is not valid.")
        while at < len(tokens) and tokens[at][1] == ".":
            if at + 1 >= len(tokens) or tokens[at + 1][0] != "id":
                raise TemplateInvalid(f"The template language expression '{text}' is not valid.")
            name = tokens[at + 1][1]
            if not isinstance(value, dict) or name not in value:
                raise TemplateInvalid(f"The language expression property '{name}' doesn't "
                                      "exist.")
            value, at = value[name], at + 2
        return value, at


def _concat(*args: Any) -> Any:
    """ARM's concat: arrays joined if the first argument is an array, else strings."""
    if args and isinstance(args[0], list):
        return [item for arg in args for item in arg]
    return "".join(str(arg) for arg in args)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise TemplateInvalid(f"The template language expression '{text}' is not valid: "
                                  f"unexpected character at position {at}.")
        kind = match.lastgroup or "sym"
        out.append((kind, match.group(kind)))
        at = match.end()
    return out


def evaluate(template: Mapping[str, Any], given: Mapping[str, Any], scope: Scope
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The template's resources, every expression evaluated, and its outputs; TemplateInvalid
    for anything a real ARM would refuse at validation."""
    for key in ("$schema", "contentVersion", "resources"):
        if key not in template:
            raise TemplateInvalid(f"The template is missing the required property '{key}'.")
    if not isinstance(template["resources"], list):
        raise TemplateInvalid("The template 'resources' property must be an array.")
    values = parameter_values(template, given)
    variables = template.get("variables") or {}
    if not isinstance(variables, dict):
        raise TemplateInvalid("The template 'variables' section is not an object.")
    ev = Evaluator(scope, values, variables)
    resources = []
    for index, raw in enumerate(template["resources"]):
        if not isinstance(raw, dict):
            raise TemplateInvalid(f"The template resource at index {index} is not an object.")
        for key in ("type", "name", "apiVersion"):
            if not isinstance(raw.get(key), str):
                raise TemplateInvalid(f"The template resource at index {index} is missing the "
                                      f"required property '{key}'.")
        resources.append(ev.value(raw))
    outputs = {name: {"type": spec.get("type"), "value": ev.value(spec.get("value"))}
               for name, spec in (template.get("outputs") or {}).items()}
    return resources, outputs


def resource_id(resource: Mapping[str, Any], scope: Scope) -> str:
    """The id of an evaluated template resource (extension resources: under their scope)."""
    namespace, *types = str(resource["type"]).split("/")
    names = str(resource["name"]).split("/")
    path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=False))
    base = str(resource.get("scope") or scope.group_id)
    return f"{base}/providers/{namespace}/{path}"
