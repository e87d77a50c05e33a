"""The import contract of the pure core covers every core module, and it really can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
NOT_CORE = {"__init__", "__main__", "cli"}  # the CLI may import everything


def contract() -> dict[str, Any]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["include_external_packages"] is True, "external imports would go unchecked"
    (core,) = [c for c in config["contracts"] if c["name"].startswith("The pure core")]
    return dict(core)


def test_every_top_level_module_is_pure_core_and_listed() -> None:
    listed = set(contract()["source_modules"])
    modules = {f"controller.{p.stem}" for p in (REPO / "controller").glob("*.py")
               if p.stem not in NOT_CORE}
    assert modules - listed == set(), "add these pure-core modules to the contract in pyproject"


def test_the_contract_forbids_the_io_libraries() -> None:
    forbidden = set(contract()["forbidden_modules"])
    assert {"asyncio", "aiodocker", "aiohttp", "azure"} <= forbidden
    assert contract()["allow_indirect_imports"] is False


def run_lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=120)


def test_lint_imports_fails_when_the_core_imports_asyncio(tmp_path: Path) -> None:
    shutil.copytree(REPO / "controller", tmp_path / "controller",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    assert run_lint(tmp_path).returncode == 0
    model = tmp_path / "controller" / "model.py"
    model.write_text(model.read_text() + "\nimport asyncio  # noqa\n")
    result = run_lint(tmp_path)
    assert result.returncode == 1
    assert "controller.model is not allowed to import asyncio" in result.stdout
