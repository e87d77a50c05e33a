"""Pieces of the operator commands that need no cluster: the label the stack selects, the new
declaration document, config names, the progress bar and tables, usage errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.commands import live
from controller.commands.render import Style, bar, table, visible_len
from controller.commands.set_version import config_name, new_document
from controller.model import load_desired_text

ROOT = Path(__file__).resolve().parents[2]


def test_set_version_labels_what_the_stack_selects() -> None:
    stack = yaml.safe_load((ROOT / "manifests" / "stack.yml").read_text())
    env = stack["services"]["controller"]["environment"]
    assert env["SWARM_UPGRADE_DESIRED_CONFIG_LABEL"] == live.DESIRED_LABEL
    (config,) = stack["configs"].values()
    key, value = live.DESIRED_LABEL.split("=")
    assert config["labels"] == {key: value}
    assert config["name"].startswith(live.DESIRED_NAME_PREFIX)


def test_new_document_keeps_every_other_setting() -> None:
    base = (ROOT / "manifests" / "desired.example.yaml").read_bytes()
    doc = new_document(base, "17.06.2-ce-azure1", "stable")
    desired = load_desired_text(yaml.safe_dump(doc))
    original = load_desired_text(base)
    assert desired.version == "17.06.2-ce-azure1" and desired.name == original.name
    assert desired.strategy == original.strategy
    assert desired.manager_scale_set == original.manager_scale_set
    minimal = load_desired_text(yaml.safe_dump(new_document(None, "17.07.0-ce-azure1", "edge")))
    assert (minimal.channel, minimal.version, minimal.name) == ("edge", "17.07.0-ce-azure1",
                                                                "swarm")


def test_config_names_are_valid_unique_and_sort_by_time() -> None:
    a, b = config_name(1764172800.0), config_name(1764172800.0)
    assert a != b
    assert re.fullmatch(r"swarm-upgrade-desired-20251126T160000-[0-9a-f]{4}", a)
    assert config_name(1764172801.0)[:-5] > a[:-5]


def test_bar_and_table() -> None:
    assert bar(2, 5, width=10) == "[████░░░░░░] 2/5 (40%)"
    assert bar(0, 0, width=4) == "[████] 0/0 (100%)"
    style = Style(colour=True)
    lines = table(["A", "B"], [[style.green("up to date"), "x"], ["y", "zz"]])
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert plain == ["  A           B", "  up to date  x", "  y           zz"]
    assert visible_len(lines[1]) == len(plain[1])
    assert "\x1b[32m" in lines[1] and Style(colour=False).green("a") == "a"


def test_usage_errors_exit_2(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "SWARM_UPGRADE_ENV_FILE"):
        monkeypatch.delenv(name, raising=False)
    for args in (["status"], ["set-version", "17.06.1-ce-azure1"], ["plan"]):
        assert main(args) == live.EXIT_USAGE
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--subscription-id: required" in err
    with pytest.raises(SystemExit) as exc:
        main(["set-version"])  # VERSION missing: argparse
    assert exc.value.code == 2
