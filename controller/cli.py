"""Entry point of the `swarm-upgrade` command: builds the parser from the subcommand modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module in controller/commands registers one or more subcommands. A subcommand's handler
# is stored as `func` on the parsed namespace and returns the process exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "validate", "plan", "run", "snapshot", "status", "set_version",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-upgrade",
        description="Upgrade a Docker for Azure swarm one node at a time, safely.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"controller.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
