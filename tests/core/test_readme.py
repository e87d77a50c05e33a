"""The README stays true to the code: every reason code of controller/decision.py has a row in its
troubleshooting table, and the Quick start is exactly the two commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

from controller import decision

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def reason_codes() -> set[str]:
    """The reason-code constants of decision.py: CamelCase strings (verdicts are lower case,
    action kinds snake_case; the two severities are not codes)."""
    return {
        value for name, value in vars(decision).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[A-Z][a-zA-Z]+", value)
        and value not in (decision.NORMAL, decision.WARNING)
    }


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def test_the_reason_codes_are_found() -> None:
    codes = reason_codes()
    assert {"CrossChannel", "VersionSkip", "NodeTimeout", "UpToDate"} <= codes
    assert not {"proceed", "drain", "Normal", "Warning"} & codes


def test_every_reason_code_has_a_troubleshooting_row() -> None:
    rows = {m.group(1) for m in re.finditer(r"^\| `([A-Za-z]+)` \|", section("Troubleshooting"),
                                             re.M)}
    missing = sorted(reason_codes() - rows)
    assert not missing, f"README troubleshooting table lacks rows for: {', '.join(missing)}"
    unknown = sorted(rows - reason_codes())
    assert not unknown, f"README troubleshooting table has codes decision.py lacks: {unknown}"


def test_quick_start_is_two_commands_that_exist() -> None:
    block = re.search(r"```bash\n(.*?)```", section("Quick start"), re.S)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    for command in commands:
        script = ROOT / command
        assert script.is_file() and script.stat().st_mode & 0o111, command
