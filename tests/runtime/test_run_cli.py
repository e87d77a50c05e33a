"""`swarm-upgrade run` / `snapshot` options: flags, environment variables, env files, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.cli import main
from controller.commands import live
from controller.commands.run import FLAGS, desired_source, env_names, load_env_file, resolve


def test_every_flag_has_an_environment_variable() -> None:
    for flag in FLAGS:
        assert env_names(flag)[0] == "SWARM_UPGRADE_" + flag.name.upper().replace("-", "_")


def test_a_flag_wins_over_its_variable_which_wins_over_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from argparse import Namespace

    monkeypatch.setenv("SWARM_UPGRADE_RESYNC", "2m")
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/x.sock")
    opts = resolve(Namespace(resync=None, lease_duration="0.5"), FLAGS)
    assert opts["resync"] == 120.0 and opts["lease_duration"] == 0.5
    assert opts["docker_host"] == "unix:///tmp/x.sock"
    assert opts["metrics_port"] == 9100 and opts["once"] is False


def test_bad_values_are_one_line_naming_the_flag_or_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    desired = tmp_path / "d.yaml"
    desired.write_text("x")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "s")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("SWARM_UPGRADE_LEASE_DURATION", "forever")
    assert main(["run", "--desired-file", str(desired)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SWARM_UPGRADE_LEASE_DURATION: 'forever'" in err
    monkeypatch.delenv("SWARM_UPGRADE_LEASE_DURATION")
    assert main(["run", "--desired-file", str(desired), "--desired-config-label", "a=b"]) == 2
    assert "--desired-file / --desired-config-label: give one" in capsys.readouterr().err
    assert main(["run", "--desired-file", str(desired), "--log-format", "xml"]) == 2
    assert "--log-format: 'xml'" in capsys.readouterr().err


def test_env_file_is_loaded_like_sourcing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = tmp_path / "testbed.env"
    env.write_text("# comment\nRT_TEST_A=1\nexport RT_TEST_B='two'\nRT_TEST_C=3\n")
    monkeypatch.setenv("RT_TEST_C", "before")
    for name in ("RT_TEST_A", "RT_TEST_B"):
        monkeypatch.setenv(name, "")  # restored (unset) after the test
        monkeypatch.delenv(name)
    load_env_file(str(env))
    assert (os.environ["RT_TEST_A"], os.environ["RT_TEST_B"], os.environ["RT_TEST_C"]) == \
        ("1", "two", "3")
    env.write_text("no equals sign\n")
    with pytest.raises(ValueError, match=r"--env-file: .*:1: not a KEY=value line"):
        load_env_file(str(env))


def test_the_declaration_source_defaults_to_the_stack_and_set_version_label() -> None:
    none = {"desired_file": None, "desired_config_label": None}
    assert desired_source(dict(none))["desired_config_label"] == "swarm-upgrade.desired=true"
    assert desired_source(dict(none))["desired_config_label"] == live.DESIRED_LABEL
    own = desired_source({**none, "desired_config_label": "team=x"})
    assert own["desired_config_label"] == "team=x"
    from_file = desired_source({**none, "desired_file": "d.yaml"})
    assert from_file["desired_config_label"] is None


@pytest.mark.parametrize(
    ("name", "content", "named"),
    [
        ("missing file", None, "cannot read"),
        ("not YAML", b"channels: [\n", "document"),
        ("wrong type", b"channels: 42\n", "channels"),
        ("several problems", b"channels:\n  stable:\n  - version: x\n  - version: y\n",
         "channels.stable[0]"),
    ],
)
def test_a_bad_catalog_is_bad_input_in_one_line(
    name: str, content: bytes | None, named: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """Exit 1 (bad input, not 2 usage) with one line naming --catalog, the file and the field;
    the replica never starts (no swarm or ARM is contacted: none exists here)."""
    desired = tmp_path / "d.yaml"
    desired.write_text("x")
    catalog = tmp_path / "catalog.yaml"
    if content is not None:
        catalog.write_bytes(content)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "s")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    code = main(["run", "--desired-file", str(desired), "--catalog", str(catalog),
                 "--metrics-port", "-1", "--log-format", "text"])
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert code == 1, (name, code, lines)
    assert len(lines) == 1, lines
    assert f"--catalog {catalog}: " in lines[0] and named in lines[0], lines[0]
