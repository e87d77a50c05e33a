"""`swarm-upgrade snapshot`: print the live snapshot (the JSON `plan --snapshot` reads).

With `--desired-file`, the snapshot also carries ARM's validation and what-if of the target
release's template (`templateCheck`), so that `plan` shows what the template changes before the
controller applies it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from controller.commands.run import FLAGS, Flag, add_flags, resolve

SNAPSHOT_FLAGS: tuple[Flag, ...] = (
    *(f for f in FLAGS if f.name in (
        "env-file", "docker-host", "subscription-id", "resource-group", "arm-endpoint",
        "arm-retries", "arm-timeout", "swarm-timeout", "polling-interval", "desired-file",
        "catalog")),
    Flag("managers", "scale set of the managers", "swarm-manager-vmss"),
    Flag("workers", "scale set of the workers", "swarm-worker-vmss"),
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "snapshot", help="print what the controller observes now, as snapshot JSON",
        description="Observe the swarm (through --docker-host) and its scale sets (through "
        "ARM) once and print the snapshot JSON that `plan --snapshot` reads.")
    add_flags(parser, SNAPSHOT_FLAGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        opts = resolve(args, SNAPSHOT_FLAGS)
        for key in ("subscription_id", "resource_group"):
            if not opts[key]:
                raise ValueError(f"--{key.replace('_', '-')}: required (or AZURE_"
                                 f"{key.upper()})")
    except ValueError as err:
        print(f"swarm-upgrade snapshot: {err}", file=sys.stderr)
        return 2
    from controller.adapters.azure import AzureFailure
    from controller.adapters.swarm import SwarmClient, SwarmError
    from controller.catalog import CatalogError, load_catalog
    from controller.commands.live import observe_all
    from controller.model import DeclarationError, load_desired_file

    try:
        catalog = load_catalog(opts["catalog"])
        desired = load_desired_file(opts["desired_file"]) if opts["desired_file"] else None
    except (CatalogError, DeclarationError) as err:
        print(f"swarm-upgrade snapshot: {err}", file=sys.stderr)
        return 2

    async def observe() -> dict[str, Any]:
        async with SwarmClient(opts["docker_host"], timeout=opts["swarm_timeout"]) as swarm:
            return await observe_all(swarm, opts, catalog, opts["managers"], opts["workers"],
                                     desired)

    try:
        snapshot = asyncio.run(observe())
    except (SwarmError, AzureFailure, OSError) as err:
        print(f"swarm-upgrade snapshot: cannot reach the cluster: {err}", file=sys.stderr)
        return 4  # like status, set-version and plan (controller/commands/live.py)
    json.dump(snapshot, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0
