"""`swarm-upgrade validate FILE [--catalog FILE]`: check a declaration without touching anything.

Exit 0 with one OK line, or exit 1 with one line per problem (schema, then catalog membership)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controller import safeyaml
from controller.catalog import CatalogError, load_catalog
from controller.model import MAX_DECLARATION_BYTES, declaration_problems, load_desired_text
from controller.problems import Problem


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help="check a SwarmUpgrade declaration against the schema and the release catalog",
        description="Check a SwarmUpgrade declaration against the CRD schema and the release "
        "catalog. Prints one line per problem (exit 1) or one OK line (exit 0).",
    )
    parser.add_argument(
        "file", metavar="FILE", help="the declaration (YAML or JSON); '-' reads standard input"
    )
    parser.add_argument(
        "--catalog", metavar="FILE", help="release catalog to use instead of the bundled one"
    )
    parser.set_defaults(func=run)


def _catalog_line(problem: Problem) -> Problem:
    path = "catalog" if problem.path == "document" else f"catalog.{problem.path}"
    return Problem(path, problem.value, problem.message)


def _read(name: str) -> bytes:
    if name != "-":
        return safeyaml.read_file(name, MAX_DECLARATION_BYTES)
    return safeyaml.read_stream(sys.stdin.buffer, MAX_DECLARATION_BYTES)


def run(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as err:
        for problem in err.problems:
            print(_catalog_line(problem), file=sys.stderr)
        return 1
    try:
        data = _read(args.file)
    except safeyaml.YamlError as err:
        problems = err.problems
    else:
        problems = declaration_problems(data, catalog)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    desired = load_desired_text(data)
    print(
        f"OK: {desired.name} wants {desired.channel} {desired.version} "
        f"(catalog: {catalog.source})"
    )
    return 0
