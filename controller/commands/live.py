"""What the operator commands read from a live swarm: the snapshot, the state object (lease and
progress) and the declaration in force (the newest labelled config object, or a file).

Shared by `status`, `set-version` and `plan` without `--snapshot`; read-only (publishing a new
declaration is `publish`). Also the exit codes every operator command uses:
0 ok, 1 bad input, 2 usage, 3 refused or halted, 4 the swarm or ARM cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from dataclasses import dataclass
from typing import Any

from controller.catalog import Catalog, load_catalog
from controller.commands.run import DESIRED_LABEL, FLAGS, Flag, add_flags, resolve
from controller.model import DeclarationError, Desired, load_desired_file, load_desired_text
from controller.progress import Progress
from controller.snapshot import Snapshot

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4

# `set-version` labels its config objects with DESIRED_LABEL (what `run` follows by default and
# the stack's config carries); their names are `swarm-upgrade-desired-<stamp>`.
DESIRED_NAME_PREFIX = "swarm-upgrade-desired-"
DEFAULT_MANAGERS = "swarm-manager-vmss"
DEFAULT_WORKERS = "swarm-worker-vmss"

CONNECTION_FLAGS: tuple[Flag, ...] = (
    *(f for f in FLAGS if f.name in (
        "env-file", "catalog", "docker-host", "subscription-id", "resource-group",
        "arm-endpoint", "arm-retries", "arm-timeout", "swarm-timeout", "polling-interval")),
    Flag("desired-config-label", "the declaration: the newest config object with this label",
         DESIRED_LABEL),
)


class Unreachable(Exception):
    """The swarm or ARM cannot be reached (exit 4)."""


class BadInput(Exception):
    """A flag or file is wrong (exit 1, or 2 for usage); str() is one line per problem."""


@dataclass(frozen=True)
class Declaration:
    """One version of the declaration and where it came from."""

    data: bytes
    origin: str  # config/<name>, a file path
    config_id: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class Lease:
    holder: str
    node: str
    expires: float
    avoid_node: str


@dataclass(frozen=True)
class LiveView:
    """One read of the cluster for an operator command."""

    snapshot: dict[str, Any]
    connected_to: str  # hostname of the manager behind --docker-host
    lease: Lease | None
    progress: dict[str, Any] | None
    declaration: Declaration | None

    def active_node(self, now: float) -> str:
        """The manager whose replica holds the lease (else the one we are connected to)."""
        if self.lease is not None and self.lease.holder and self.lease.expires > now:
            return self.lease.node or self.connected_to
        return self.connected_to

    def parsed_progress(self) -> Progress | None:
        if not self.progress:
            return None
        try:
            return Progress.from_dict(self.progress)
        except ValueError:
            return None


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, CONNECTION_FLAGS)


def resolve_connection(args: argparse.Namespace) -> dict[str, Any]:
    """Resolved connection options; BadInput (usage) naming a missing one."""
    try:
        opts = resolve(args, CONNECTION_FLAGS)
    except ValueError as err:
        raise BadInput(str(err)) from None
    for key in ("subscription_id", "resource_group"):
        if not opts[key]:
            raise BadInput(f"--{key.replace('_', '-')}: required (or AZURE_{key.upper()}, "
                           "or --env-file)")
    return opts


def parse_declaration(decl: Declaration) -> Desired:
    """The declaration as `Desired`; BadInput naming its origin and the field."""
    try:
        return load_desired_text(decl.data)
    except DeclarationError as err:
        lines = str(err).splitlines() or ["invalid declaration"]
        raise BadInput("\n".join(f"{decl.origin}: {line}" for line in lines)) from None


def read_file_declaration(path: str) -> Declaration:
    try:
        load_desired_file(path)  # the size cap and safe loading, with field errors
    except DeclarationError as err:
        lines = str(err).splitlines() or ["invalid declaration"]
        raise BadInput("\n".join(f"{path}: {line}" for line in lines)) from None
    with open(path, "rb") as f:
        return Declaration(f.read(), path)


async def newest_declaration(swarm: Any, label: str) -> Declaration | None:
    """The newest (CreatedAt) config object carrying `label`, as the controller picks it."""
    from controller.adapters.swarm import parse_time

    configs = await swarm.configs(label=label)
    if not configs:
        return None
    newest = max(configs, key=lambda c: (parse_time(c.get("CreatedAt")), c["ID"]))
    spec = newest.get("Spec") or {}
    return Declaration(base64.b64decode(spec.get("Data") or ""),
                       f"config/{spec.get('Name', newest['ID'])}", str(newest["ID"]),
                       str(newest.get("CreatedAt", "")))


def _scale_sets(decl: Declaration | None) -> tuple[str, str]:
    if decl is not None:
        try:
            desired = load_desired_text(decl.data)
            return desired.manager_scale_set, desired.worker_scale_set
        except DeclarationError:
            pass
    return DEFAULT_MANAGERS, DEFAULT_WORKERS


async def observe_all(swarm: Any, opts: dict[str, Any], catalog: Catalog, managers: str,
                      workers: str, desired: Desired | None) -> dict[str, Any]:
    """The raw snapshot the controller plans from: nodes and scale sets, plus what the resources
    and services phases read (platform services, deployments) and, for `desired`, ARM's check
    of its template. Shared by `plan`/`status`/`set-version` and `snapshot`."""
    from controller.runtime.app import make_azure, make_resources
    from controller.runtime.events import EventSink
    from controller.runtime.observe import observe_dict
    from controller.runtime.phases import PhaseRuntime

    azure = make_azure(opts)
    resources = make_resources(opts, azure)
    try:
        raw = await observe_dict(swarm, azure, managers, workers)
        phases = PhaseRuntime(swarm, resources, catalog, EventSink(sys.stderr))
        raw.update(await phases.observe())
        if desired is not None:
            await phases.check_for(desired, raw)
        return raw
    finally:
        await resources.close()
        await azure.close()


async def _read(opts: dict[str, Any], desired_file: str | None, check: bool) -> LiveView:
    from controller.adapters.swarm import SwarmClient
    from controller.runtime.store import StateStore

    async with SwarmClient(opts["docker_host"], timeout=opts["swarm_timeout"]) as swarm:
        if desired_file:
            decl: Declaration | None = read_file_declaration(desired_file)
        else:
            decl = await newest_declaration(swarm, opts["desired_config_label"])
        managers, workers = _scale_sets(decl)
        desired = _parsed_or_none(decl) if check else None
        raw = await observe_all(swarm, opts, load_catalog(opts["catalog"]), managers, workers,
                                desired)
        state = await StateStore(swarm).peek()
    lease = None
    if state is not None:
        lease = Lease(state.lease.holder, state.lease.node, state.lease.expires,
                      state.lease.avoid_node)
    return LiveView(raw, str(raw.get("self", "")), lease,
                    state.progress if state is not None else None, decl)


def _parsed_or_none(decl: Declaration | None) -> Desired | None:
    """The declaration as `Desired`, or None when there is none or it is invalid (the command
    reports that itself)."""
    if decl is None:
        return None
    try:
        return load_desired_text(decl.data)
    except DeclarationError:
        return None


def read_live(
    opts: dict[str, Any], desired_file: str | None = None, check_template: bool = False
) -> LiveView:
    """Observe the cluster once. Unreachable (exit 4) if the swarm or ARM does not answer.
    `check_template` also asks ARM to validate the declaration's template and what it would
    change (POSTs that change nothing, but that the ARM log counts as writes)."""
    from controller.adapters.azure import AzureFailure
    from controller.adapters.swarm import SwarmError

    try:
        return asyncio.run(_read(opts, desired_file, check_template))
    except (SwarmError, AzureFailure) as err:
        raise Unreachable(str(err)) from None
    except OSError as err:
        raise Unreachable(f"{opts['docker_host']}: {err}") from None


def snapshot_of(view: LiveView, now: float | None = None) -> Snapshot:
    """The snapshot as the active replica would see it (its own node goes last)."""
    raw = dict(view.snapshot)
    raw["self"] = view.active_node(time.time() if now is None else now)
    return Snapshot.from_dict(raw)


def publish(opts: dict[str, Any], name: str, data: bytes, labels: dict[str, str]) -> str:
    """Create a config object; its id. Unreachable (exit 4) if the swarm does not answer."""
    from controller.adapters.swarm import SwarmClient, SwarmError

    async def create() -> str:
        async with SwarmClient(opts["docker_host"], timeout=opts["swarm_timeout"]) as swarm:
            return await swarm.create_config(name, data, labels)

    try:
        return asyncio.run(create())
    except SwarmError as err:
        raise Unreachable(str(err)) from None
