"""Loading untrusted YAML into plain JSON-like data, or a one-line `document:` problem.

Guards, each reported as a `Problem` on `document` (never a traceback):
size cap (checked before parsing), UTF-8 only, a single document, no aliases (so no alias
bombs) and no merge keys, no duplicate keys, string keys only, bounded nesting depth and scalar
length, and only JSON types (timestamps stay strings; !!binary, !!set, !!omap, python tags refused).
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from controller.problems import ABSENT, Problem, ProblemsError, shorten

DEFAULT_MAX_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 32
MAX_SCALAR_CHARS: Final = 4096


class YamlError(ProblemsError):
    """The document could not be loaded; `problems` holds one `document:` problem."""


def _document_problem(message: str) -> YamlError:
    return YamlError([Problem("document", ABSENT, message)])


def _where(node_or_mark: Node | yaml.Mark | None) -> str:
    mark = node_or_mark.start_mark if isinstance(node_or_mark, Node) else node_or_mark
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


class _Refused(yaml.YAMLError):
    """Raised inside the loader for a guard; carries the final message."""


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader with the guards of this module."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(f"YAML aliases (*name) are not allowed{_where(event.start_mark)}")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(f"nesting deeper than {MAX_DEPTH} levels{_where(mark)}")
            node: Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, ScalarNode) and len(node.value) > MAX_SCALAR_CHARS:
            raise _Refused(
                f"a value of {len(node.value)} characters is longer than the "
                f"{MAX_SCALAR_CHARS}-character limit{_where(node)}"
            )
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(f"YAML merge keys (<<) are not allowed{_where(key_node)}")
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise _Refused(
                    f"mapping key {shorten(repr(key), 40)} is not a string{_where(key_node)}"
                )
            if key in seen:
                raise _Refused(f"duplicate key {shorten(repr(key), 40)}{_where(key_node)}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _refuse_tag(loader: yaml.SafeLoader, node: Node) -> Any:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise _Refused(f"YAML tag {shorten(tag, 40)} is not allowed{_where(node)}")


def _keep_text(loader: yaml.SafeLoader, node: Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("binary", "set", "omap", "pairs"):
    _SafeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)
# A timestamp-looking value (`version: 2017-06-01`) stays the text the operator wrote.
_SafeLoader.add_constructor("tag:yaml.org,2002:timestamp", _keep_text)
_SafeLoader.add_constructor(None, _refuse_tag)  # any other tag (!!python/..., !custom)


_PLAIN: Final = (dict, list, str, int, float, bool, type(None))


def plain_problem(doc: object, max_depth: int = MAX_DEPTH) -> Problem | None:
    """For data that did not come through `load()` (e.g. built in code): a `document:` problem if
    it is nested deeper than `max_depth` or holds anything but JSON types, else None."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            return Problem("document", ABSENT, f"nesting deeper than {max_depth} levels")
        if not isinstance(value, _PLAIN):
            return Problem("document", ABSENT, f"holds a {type(value).__name__}, not JSON data")
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                return Problem("document", ABSENT, "has a mapping key that is not a string")
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return None


def decode(data: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """`data` as text: at most `max_bytes` bytes of UTF-8, or a `YamlError`."""
    if isinstance(data, str):
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError as err:
            message = f"contains an unencodable character at offset {err.start}"
            raise _document_problem(message) from None
        if size > max_bytes:
            raise _document_problem(f"{size} bytes is larger than the {max_bytes}-byte limit")
        return data
    if len(data) > max_bytes:
        raise _document_problem(f"{len(data)} bytes is larger than the {max_bytes}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _document_problem(
            f"is not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None
    return text.removeprefix("\ufeff")


def load(data: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> object:
    """Parse one YAML document into dicts, lists, str, int, float, bool and None."""
    text = decode(data, max_bytes)
    loader: _SafeLoader | None = None
    try:
        loader = _SafeLoader(text)
        return loader.get_single_data()
    except _Refused as err:
        raise _document_problem(str(err)) from None
    except yaml.MarkedYAMLError as err:
        what = " ".join(str(part) for part in (err.context, err.problem) if part)
        raise _document_problem(
            f"is not valid YAML: {shorten(what, 120)}{_where(err.problem_mark)}"
        ) from None
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        what = " ".join(str(err).split())
        raise _document_problem(f"is not valid YAML: {shorten(what, 120)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of `path`, reading no more than `max_bytes + 1` (an oversized file is refused)."""
    try:
        with open(path, "rb") as handle:
            return read_stream(handle, max_bytes)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise _document_problem(
            f"cannot read {shorten(repr(os.fspath(path)), 80)}: {reason}"
        ) from None


def read_stream(stream: BinaryIO, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of `stream`, reading no more than `max_bytes + 1` (an oversized one is refused)."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _document_problem(f"is larger than the {max_bytes}-byte limit")
    return data


def load_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> object:
    """`load()` of the file at `path`."""
    return load(read_file(path, max_bytes), max_bytes)
