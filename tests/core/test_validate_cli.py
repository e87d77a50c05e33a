"""`swarm-upgrade validate`, in process through `controller.cli.main` and as the console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests" / "desired.example.yaml"
SCRIPT = Path(sys.executable).parent / "swarm-upgrade"

BAD_VERSION = """\
apiVersion: swarm-upgrade.io/v1alpha1
kind: SwarmUpgrade
metadata: {name: prod}
spec: {channel: stable, version: "17.6"}
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_example_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, str(EXAMPLE))
    assert (code, err) == (0, "")
    assert out == "OK: production wants stable 17.06.1-ce-azure1 (catalog: bundled)\n"


def test_version_not_in_channel(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_main(capsys, str(write(tmp_path, "d.yaml", BAD_VERSION)))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert "spec.version: '17.6' is not a release of channel stable" in lines
    assert lines == [
        "spec.version: '17.6' must be a release name YY.MM.P-ce-azureN, e.g. 17.06.1-ce-azure1",
        "spec.version: '17.6' is not a release of channel stable",
    ]


def test_well_formed_version_of_another_channel(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = BAD_VERSION.replace('"17.6"', "17.05.0-ce-azure1")
    code, _, err = run_main(capsys, str(write(tmp_path, "d.yaml", text)))
    assert code == 1
    assert err == "spec.version: '17.05.0-ce-azure1' is not a release of channel stable\n"
    text = text.replace("channel: stable", "channel: edge")
    code, out, _ = run_main(capsys, str(write(tmp_path, "d.yaml", text)))
    assert code == 0 and out.startswith("OK: prod wants edge 17.05.0-ce-azure1")


def test_every_problem_is_listed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = BAD_VERSION.replace("{name: prod}", "{name: Prod}").replace(
        "version:", "paused: maybe, version:")
    code, _, err = run_main(capsys, str(write(tmp_path, "d.yaml", text)))
    assert code == 1
    assert err.splitlines() == [
        "metadata.name: 'Prod' must be a DNS label (lower-case letters, digits and '-', at most "
        "63 characters)",
        "spec.paused: 'maybe' must be true or false",
        "spec.version: '17.6' must be a release name YY.MM.P-ce-azureN, e.g. 17.06.1-ce-azure1",
        "spec.version: '17.6' is not a release of channel stable",
    ]


def test_unreadable_and_hostile_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(capsys, str(tmp_path / "missing.yaml"))
    assert code == 1 and err.startswith("document: cannot read ") and err.count("\n") == 1
    code, _, err = run_main(capsys, str(tmp_path))
    assert code == 1 and err.startswith("document: cannot read ")
    big = write(tmp_path, "big.yaml", b"#" * (1 << 20))
    code, _, err = run_main(capsys, str(big))
    assert (code, err) == (1, "document: is larger than the 65536-byte limit\n")
    bomb = write(tmp_path, "bomb.yaml", "a: &a [1, 2]\nb: [*a, *a]\n")
    code, _, err = run_main(capsys, str(bomb))
    assert (code, err) == (1, "document: YAML aliases (*name) are not allowed (line 2, column 5)\n")


def test_custom_catalog(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    catalog = write(
        tmp_path,
        "catalog.yaml",
        "channels:\n  stable:\n  - version: 17.06.1-ce-azure1\n"
        "    image: {publisher: p, offer: o, sku: s, version: '1'}\n",
    )
    code, out, _ = run_main(capsys, str(EXAMPLE), "--catalog", str(catalog))
    assert code == 0 and out.endswith(f"(catalog: {catalog})\n")
    other = write(tmp_path, "d.yaml", BAD_VERSION.replace('"17.6"', "17.06.2-ce-azure1"))
    code, _, err = run_main(capsys, str(other), "--catalog", str(catalog))
    assert (code, err) == (1, "spec.version: '17.06.2-ce-azure1' is not a release of channel "
                              "stable\n")


def test_broken_catalog(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    catalog = write(tmp_path, "catalog.yaml", "channels:\n  stable:\n  - version: 17.6\n")
    code, out, err = run_main(capsys, str(EXAMPLE), "--catalog", str(catalog))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "catalog.channels.stable[0].image: is required",
        "catalog.channels.stable[0].version: 17.6 must be a string",
    ]
    code, _, err = run_main(capsys, str(EXAMPLE), "--catalog", str(tmp_path / "nope.yaml"))
    assert code == 1 and err.startswith("catalog: cannot read ")


def test_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2


def run_script(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert SCRIPT.is_file(), f"the swarm-upgrade console script is not installed at {SCRIPT}"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd="/", input=stdin)


def test_console_script_ok() -> None:
    result = run_script("validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: production wants stable 17.06.1-ce-azure1")


def test_console_script_problems(tmp_path: Path) -> None:
    result = run_script("validate", str(write(tmp_path, "d.yaml", BAD_VERSION)))
    assert result.returncode == 1
    assert "spec.version: '17.6' is not a release of channel stable\n" in result.stderr
    assert "Traceback" not in result.stderr
    garbage = write(tmp_path, "g.yaml", b"\xff\xfe\x00garbage")
    result = run_script("validate", str(garbage))
    assert (result.returncode, result.stderr) == (
        1, "document: is not UTF-8 (byte 0xff at offset 0)\n")


def test_console_script_reads_standard_input() -> None:
    result = run_script("validate", "-", stdin=EXAMPLE.read_text())
    assert result.returncode == 0, result.stderr
    result = run_script("validate", "-", stdin="#" * 70_000)
    assert (result.returncode, result.stderr) == (
        1, "document: is larger than the 65536-byte limit\n")
