"""Malformed and hostile declarations: every one is refused with one-line problems that start with
a field path (or `document`), echo only a bounded part of the value, and never a traceback."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.model import DeclarationError, load_desired_text, parse_desired

# A path: a name, then `.name`, `[3]` or `['quoted key']` segments, then ": ".
_QUOTED = r"""\[(\d+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]"""
_SEGMENT = rf"(\.[A-Za-z0-9_-]+|{_QUOTED})"
LINE = re.compile(rf"^(document|[A-Za-z0-9_-]+{_SEGMENT}*|{_QUOTED}{_SEGMENT}*): \S")
MAX_LINE = 400

HEAD = "apiVersion: swarm-upgrade.io/v1alpha1\nkind: SwarmUpgrade\nmetadata: {name: prod}\n"
GOOD = HEAD + "spec:\n  channel: stable\n  version: 17.06.1-ce-azure1\n"


def spec(body: str) -> str:
    return HEAD + "spec:\n  channel: stable\n  version: 17.06.1-ce-azure1\n" + body


def strategy(body: str) -> str:
    return spec("  strategy:\n    " + body + "\n")


def valid_doc() -> dict[str, Any]:
    return {
        "apiVersion": "swarm-upgrade.io/v1alpha1",
        "kind": "SwarmUpgrade",
        "metadata": {"name": "prod"},
        "spec": {
            "channel": "stable",
            "version": "17.06.1-ce-azure1",
            "scaleSets": {"managers": "swarm-manager-vmss", "workers": "swarm-worker-vmss"},
            "strategy": {"maxUnavailableWorkers": 1, "drainTimeout": "15m",
                         "nodeReadyTimeout": "30m", "pauseBetweenNodes": "0s"},
            "removeDownNodes": False,
            "allowDowngrade": False,
            "paused": False,
        },
    }


def assert_refused(data: str | bytes | object, expect: str = "") -> list[str]:
    """`data` (text/bytes: loaded; anything else: parsed) is refused with well-formed lines."""
    with pytest.raises(DeclarationError) as info:
        if isinstance(data, str | bytes):
            load_desired_text(data)
        else:
            parse_desired(data)
    err = info.value
    lines = [str(p) for p in err.problems]
    assert lines, "a DeclarationError without problems"
    assert str(err) == "\n".join(lines)
    for line in lines:
        assert "\n" not in line and "\r" not in line
        assert len(line) <= MAX_LINE, line
        assert LINE.match(line), f"does not start with a field path: {line!r}"
        assert "Traceback" not in line
    if expect:
        assert any(expect in line for line in lines), lines
    return lines


def test_the_good_document_is_good() -> None:
    assert load_desired_text(GOOD).version == "17.06.1-ce-azure1"
    assert parse_desired(valid_doc()).paused is False


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    + GOOD
)

HOSTILE_TEXT: list[tuple[str, str | bytes, str]] = [
    ("billion laughs", BILLION_LAUGHS, "document: YAML aliases"),
    ("a single alias", GOOD + "x: &n 1\ny: *n\n", "document: YAML aliases"),
    ("alias into spec", "v: &v 17.06.1-ce-azure1\n" + HEAD + "spec: {channel: stable, version: *v}",
     "document: YAML aliases"),
    ("merge key", HEAD + "base: &b {channel: stable}\nspec:\n  <<: *b\n", "document: YAML"),
    ("inline merge key", HEAD + "spec:\n  <<: {channel: stable}\n  version: 17.06.1-ce-azure1\n",
     "document: YAML merge keys"),
    ("duplicate top-level key", GOOD + "kind: SwarmUpgrade\n", "document: duplicate key 'kind'"),
    ("duplicate spec key", GOOD + "  version: 17.06.2-ce-azure1\n",
     "document: duplicate key 'version'"),
    ("duplicate key in JSON", '{"kind": "SwarmUpgrade", "kind": "SwarmUpgrade"}',
     "document: duplicate key"),
    ("non-UTF-8 bytes", GOOD.encode() + b"  paused: \xff\xfe\n", "document: is not UTF-8"),
    ("latin-1 text", "metadata: {name: caf\xe9}\n".encode("latin-1"), "document: is not UTF-8"),
    ("UTF-16", GOOD.encode("utf-16"), "document: is not UTF-8"),
    ("1 MB document", GOOD + "#" + "x" * 1_000_000 + "\n", "document: 1000"),
    ("one byte over 64 KiB", GOOD + "#" * (65537 - len(GOOD)), "65537 bytes is larger"),
    ("deep nesting", HEAD + "spec: " + "[" * 5000 + "]" * 5000, "document: nesting deeper"),
    ("deep mappings", HEAD + "spec: " + "{a: " * 100 + "1" + "}" * 100, "document: nesting deeper"),
    ("python object tag", GOOD + "x: !!python/object/apply:os.system ['id']\n",
     "document: YAML tag !!python/object/apply:os.system"),
    ("binary tag", GOOD + "x: !!binary aGVsbG8=\n", "document: YAML tag !!binary"),
    ("set tag", GOOD + "x: !!set {a}\n", "document: YAML tag !!set"),
    ("custom tag", HEAD + "spec: !Spec {channel: stable}\n", "document: YAML tag !Spec"),
    ("two documents", GOOD + "---\n" + GOOD, "document: is not valid YAML"),
    ("tab indentation", HEAD + "spec:\n\tchannel: stable\n", "document: is not valid YAML"),
    ("NUL byte", GOOD + "  paused: \x00\n", "document: is not valid YAML"),
    ("bell character", GOOD + "  paused: \x07\n", "document: is not valid YAML"),
    ("lone surrogate", GOOD + "  paused: \ud800\n", "document: contains an unencodable"),
    ("unterminated flow", HEAD + "spec: {channel: stable\n", "document: is not valid YAML"),
    ("empty document", "", "document: null must be a mapping"),
    ("only a comment", "# nothing\n", "document: null must be a mapping"),
    ("a bare scalar", "hello", "document: 'hello' must be a mapping"),
    ("a list", "- a\n- b\n", "document: a list of 2 item(s) must be a mapping"),
    ("integer key", GOOD + "1: one\n", "document: mapping key 1 is not a string"),
    ("boolean key", GOOD + "on: true\n", "document: mapping key True is not a string"),
    ("complex key", GOOD + "? [a, b]\n: c\n", "document: mapping key ['a', 'b'] is not a string"),
    ("huge scalar", spec("  paused: " + "9" * 5000 + "\n"), "document: a value of 5000 characters"),
    ("huge integer", strategy("maxUnavailableWorkers: " + "9" * 4000),
     "spec.strategy.maxUnavailableWorkers: a 4000-digit number must be at most 1000"),
    ("shell metacharacters", spec("").replace("17.06.1-ce-azure1", "'17.06.1-ce-azure1; rm -rf /'"),
     "spec.version: '17.06.1-ce-azure1; rm -rf /' must be a release name"),
    ("command substitution", spec("").replace("17.06.1-ce-azure1", "'$(reboot)'"),
     "spec.version: '$(reboot)' must be"),
    ("backticks", spec("").replace("17.06.1-ce-azure1", "'`id`'"), "spec.version: '`id`' must be"),
    ("pipe and redirect", spec("").replace("17.06.1-ce-azure1", "'17.06.1 | tee /etc/passwd'"),
     "spec.version: '17.06.1 | tee /etc/passwd' must be"),
    ("newline in version", spec("").replace("17.06.1-ce-azure1", '"17.06.1-ce-azure1\\n"'),
     "spec.version: '17.06.1-ce-azure1\\n' must be"),
    ("fullwidth digits", spec("").replace("17.06.1-ce-azure1", "１７.06.1-ce-azure1"),
     "spec.version: '１７.06.1-ce-azure1' must be"),
    ("long version", spec("").replace("17.06.1-ce-azure1", "'" + "1" * 4000 + "'"),
     "spec.version: '1111"),
    ("long numeric version", spec("").replace("17.06.1-ce-azure1", "1" * 4000),
     "spec.version: a 4000-digit number must be a string"),
    ("timestamp-looking version", spec("").replace("17.06.1-ce-azure1", "2017-06-01"),
     "spec.version: '2017-06-01' must be"),
    ("float version", spec("").replace("17.06.1-ce-azure1", "17.06"),
     "spec.version: 17.06 must be a string"),
    ("infinite workers", strategy("maxUnavailableWorkers: .inf"),
     "spec.strategy.maxUnavailableWorkers: inf must be an integer"),
    ("NaN workers", strategy("maxUnavailableWorkers: .nan"),
     "spec.strategy.maxUnavailableWorkers: nan must be an integer"),
    ("negative workers", strategy("maxUnavailableWorkers: -1"), "-1 must be at least 1"),
    ("underscored workers", strategy("maxUnavailableWorkers: 1_000_000"),
     "1000000 must be at most 1000"),
    ("negative duration", strategy("drainTimeout: -10s"), "spec.strategy.drainTimeout: '-10s'"),
    ("absurd duration", strategy("drainTimeout: 999999h"), "'999999h' is longer than the maximum"),
    ("too many digits", strategy("drainTimeout: 99999999999999s"), "spec.strategy.drainTimeout"),
    ("exponent duration", strategy("nodeReadyTimeout: 1e9s"), "spec.strategy.nodeReadyTimeout"),
    ("ISO duration", strategy("pauseBetweenNodes: P1D"), "spec.strategy.pauseBetweenNodes: 'P1D'"),
    ("spaced duration", strategy("pauseBetweenNodes: 1h 30m"), "'1h 30m' must be a duration"),
    ("numeric duration", strategy("drainTimeout: 900"), "spec.strategy.drainTimeout: 900 must be"),
    ("empty duration", strategy("nodeReadyTimeout: ''"), "spec.strategy.nodeReadyTimeout: ''"),
    ("string boolean", spec("  paused: 'true'\n"), "spec.paused: 'true' must be true or false"),
    ("null channel", spec("").replace("channel: stable", "channel:"),
     "spec.channel: null must be"),
    ("unknown spec field", spec("  rollback: true\n"), "spec.rollback: is not a known field"),
    ("status block", GOOD + "status: {phase: Done}\n", "status: is not a known field"),
    ("namespace", GOOD.replace("{name: prod}", "{name: prod, namespace: x}"),
     "metadata.namespace: is not a known field"),
    ("upper-case name", GOOD.replace("name: prod", "name: Prod_1"), "metadata.name: 'Prod_1'"),
    ("long name", GOOD.replace("name: prod", "name: " + "a" * 1000), "metadata.name: 'aaaa"),
    ("newline key", GOOD + '"sp\\nec": 1\n', "['sp\\nec']: is not a known field"),
    ("bidi override key", GOOD + '"\\u202espec": 1\n', "['\\u202espec']: is not a known field"),
    ("very long key", GOOD + "? " + "k" * 3000 + "\n: 1\n", "['kkkk"),
    ("key longer than YAML allows", GOOD + "k" * 3000 + ": 1\n", "document: is not valid YAML"),
    ("scale set injection", spec("  scaleSets: {managers: '$(id)'}\n"),
     "spec.scaleSets.managers: '$(id)' must be an Azure scale-set name"),
    ("empty scale set", spec("  scaleSets: {workers: ''}\n"), "spec.scaleSets.workers: ''"),
    ("too many labels",
     GOOD.replace("{name: prod}", "{name: prod, labels: {" + ", ".join(
         f"k{i}: v" for i in range(100)) + "}}"),
     "metadata.labels: a mapping of 100 key(s) has more than 64 entries"),
    ("label not a string", GOOD.replace("{name: prod}", "{name: prod, labels: {a: [1]}}"),
     "metadata.labels.a: a list of 1 item(s) must be a string"),
    ("wrong apiVersion", GOOD.replace("v1alpha1", "v2"), "apiVersion: 'swarm-upgrade.io/v2'"),
    ("spec is a string", HEAD + "spec: upgrade please\n",
     "spec: 'upgrade please' must be a mapping"),
    ("spec missing", HEAD, "spec: is required"),
    ("BOM then garbage", b"\xef\xbb\xbf\xff", "document: is not UTF-8"),
]


@pytest.mark.parametrize(
    ("name", "data", "expect"), HOSTILE_TEXT, ids=[case[0] for case in HOSTILE_TEXT]
)
def test_hostile_text_is_refused_in_one_line_per_problem(
    name: str, data: str | bytes, expect: str
) -> None:
    assert_refused(data, expect)


def test_there_are_at_least_fifty_hand_written_cases() -> None:
    assert len(HOSTILE_TEXT) >= 50


def test_many_unknown_fields_are_capped_at_fifty_lines_and_a_summary() -> None:
    doc = valid_doc()
    doc["spec"].update({f"extra{i:03}": i for i in range(300)})
    lines = assert_refused(doc)
    assert len(lines) == 51
    assert lines[0].startswith("spec.extra000: is not a known field")
    assert lines[-1] == "document: and 250 more problem(s)"
    doc["spec"] = {f"extra{i:03}": i for i in range(20)}
    assert len(assert_refused(doc)) == 22  # 20 unknown + channel and version missing


def test_json_document_with_every_problem_at_once() -> None:
    doc = valid_doc()
    doc["spec"]["channel"] = "nightly"
    doc["spec"]["strategy"]["maxUnavailableWorkers"] = "all"
    doc["spec"]["paused"] = "no"
    lines = assert_refused(json.dumps(doc))
    assert [line.split(":")[0] for line in lines] == [
        "spec.channel", "spec.paused", "spec.strategy.maxUnavailableWorkers"]


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        (nested(100_000), "document: nesting deeper than 32 levels"),
        ({**valid_doc(), "spec": ("stable",)}, "document: holds a tuple, not JSON data"),
        ({**valid_doc(), "kind": b"SwarmUpgrade"}, "document: holds a bytes, not JSON data"),
        ({**valid_doc(), 3: "x"}, "document: has a mapping key that is not a string"),
        ({**valid_doc(), "metadata": {"name": {"x"}}}, "document: holds a set, not JSON data"),
    ],
    ids=["deep", "tuple", "bytes", "int key", "set"],
)
def test_data_built_in_code_is_checked_too(doc: object, line: str) -> None:
    assert assert_refused(doc) == [line]


# --- generated -----------------------------------------------------------------------------------

JSON_LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=200)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner,
                                                                max_size=4),
    max_leaves=12,
)

OBJECTS = [(), ("metadata",), ("spec",), ("spec", "scaleSets"), ("spec", "strategy")]
STRING_FIELDS = [("apiVersion",), ("kind",), ("metadata", "name"), ("spec", "channel"),
                 ("spec", "version"), ("spec", "scaleSets", "managers"),
                 ("spec", "scaleSets", "workers"), ("spec", "strategy", "drainTimeout"),
                 ("spec", "strategy", "nodeReadyTimeout"),
                 ("spec", "strategy", "pauseBetweenNodes")]
BOOL_FIELDS = [("spec", "removeDownNodes"), ("spec", "allowDowngrade"), ("spec", "paused")]
INT_FIELDS = [("spec", "strategy", "maxUnavailableWorkers")]
KNOWN = {"apiVersion", "kind", "metadata", "spec", "name", "labels", "annotations", "channel",
         "version", "scaleSets", "strategy", "removeDownNodes", "allowDowngrade", "paused",
         "managers", "workers", "maxUnavailableWorkers", "drainTimeout", "nodeReadyTimeout",
         "pauseBetweenNodes"}


def _at(doc: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def malformed_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with one guaranteed defect: an unknown key, or a wrong-typed value."""
    doc = valid_doc()
    kind = draw(st.sampled_from(["unknown", "string", "bool", "int", "drop"]))
    if kind == "unknown":
        where = _at(doc, draw(st.sampled_from(OBJECTS)))
        key = draw(st.text(min_size=1, max_size=300).filter(lambda k: k not in KNOWN))
        where[key] = draw(JSON_VALUES)
    elif kind == "drop":
        path = draw(st.sampled_from([("apiVersion",), ("kind",), ("metadata",), ("spec",),
                                     ("metadata", "name"), ("spec", "channel"),
                                     ("spec", "version")]))
        del _at(doc, path[:-1])[path[-1]]
    else:
        fields = {"string": STRING_FIELDS, "bool": BOOL_FIELDS, "int": INT_FIELDS}[kind]
        path = draw(st.sampled_from(fields))
        wrong = {
            "string": JSON_VALUES.filter(lambda v: not isinstance(v, str)),
            "bool": JSON_VALUES.filter(lambda v: not isinstance(v, bool)),
            "int": JSON_VALUES.filter(lambda v: isinstance(v, bool) or not isinstance(v, int)),
        }[kind]
        _at(doc, path[:-1])[path[-1]] = draw(wrong)
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_docs())
def test_generated_malformed_documents_are_refused(doc: dict[str, Any]) -> None:
    assert_refused(doc)


@settings(max_examples=150, deadline=None)
@given(malformed_docs())
def test_generated_malformed_documents_are_refused_as_json_text(doc: dict[str, Any]) -> None:
    text = json.dumps(doc, allow_nan=True)
    assert_refused(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_are_refused(data: bytes) -> None:
    assert_refused(data)


YAML_BITS = st.sampled_from(
    ["spec:", "  ", "\n", "- ", "&a ", "*a ", "<<: ", "!!str ", "!!python/name:os.system ", "{",
     "}", "[", "]", ",", ": ", "? ", "'", '"', "|", ">", "#", "---", "...", "%YAML 1.1", "%TAG ",
     "channel: stable", "version: 17.06.1-ce-azure1", "\t", "\\", "~", "null", "1e999", "0x1F",
     "\xff", "\u202e", "\ud7ff", "é"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(YAML_BITS, max_size=40).map("".join))
def test_random_yaml_fragments_are_refused(text: str) -> None:
    assert_refused(HEAD + text)
