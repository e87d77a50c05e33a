"""`swarm-upgrade run`: the controller itself (one replica); `--once` for a single pass.

Every flag has an environment variable (`SWARM_UPGRADE_<FLAG>`, and the usual `DOCKER_HOST`,
`AZURE_*` names); a flag wins over its variable. Events go to stdout, one JSON object per line
(`--log-format text` for people).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from controller.durations import parse_duration

ENV_PREFIX = "SWARM_UPGRADE_"


@dataclass(frozen=True)
class Flag:
    name: str
    help: str
    default: str | None = None
    env: tuple[str, ...] = ()
    kind: str = "str"  # str | duration | int | bool


# The label of the declaration's config objects: what the stack (manifests/stack.yml) creates and
# `set-version` publishes; the source `run` uses unless told otherwise.
DESIRED_LABEL = "swarm-upgrade.desired=true"

FLAGS = (
    Flag("env-file", "KEY=value lines (e.g. the testbed's testbed.env) loaded into the "
         "environment first, like `set -a; . FILE`; flags still win"),
    Flag("desired-file", "the declaration: a YAML file, watched (edits apply without a restart)"),
    Flag("desired-config-label", "the declaration: Docker config objects with this label, the "
         f"newest wins (default without --desired-file: {DESIRED_LABEL}, the label of the "
         "stack's config and of `set-version`'s)"),
    Flag("catalog", "release catalog file (default: the bundled one)"),
    Flag("docker-host", "Docker API of the manager this replica runs on",
         "unix:///var/run/docker.sock", ("DOCKER_HOST",)),
    Flag("subscription-id", "Azure subscription of the scale sets", None,
         ("AZURE_SUBSCRIPTION_ID",)),
    Flag("resource-group", "Azure resource group of the scale sets", None,
         ("AZURE_RESOURCE_GROUP",)),
    Flag("arm-endpoint", "Azure Resource Manager endpoint", "https://management.azure.com",
         ("AZURE_ARM_ENDPOINT",)),
    Flag("polling-interval", "poll interval of Azure long-running operations", "15s",
         kind="duration"),
    Flag("arm-retries", "retries of a throttled/failed ARM request (Retry-After is honoured)",
         "3", kind="int"),
    Flag("arm-timeout", "timeout of one ARM call (including its retries)", "120s",
         kind="duration"),
    Flag("swarm-timeout", "timeout of every swarm API call", "10s", kind="duration"),
    Flag("log-format", "json (one event per line) or text", "json"),
    Flag("metrics-port", "port of /healthz and /metrics (0: any free port, -1: off)", "9100",
         kind="int"),
    Flag("metrics-host", "address of /healthz and /metrics", "0.0.0.0"),
    Flag("resync", "look again at least this often", "30s", kind="duration"),
    Flag("lease-duration", "the lease expires this long after its last renewal", "15s",
         kind="duration"),
    Flag("halt-confirm", "a new halt (node lost, timeout) must be observed this long before it "
         "is recorded", "10s", kind="duration"),
    Flag("event-repeat", "repeat an unchanged wait/refusal event after this long", "60s",
         kind="duration"),
    Flag("replica-id", "this replica's lease holder id (default: hostname-pid-random)"),
    Flag("once", "run one reconcile pass and exit", "false", kind="bool"),
)


def env_names(flag: Flag) -> tuple[str, ...]:
    return (ENV_PREFIX + flag.name.upper().replace("-", "_"), *flag.env)


def seconds(text: str) -> float:
    """`15s`, `2m`, or a plain number of seconds (`0.5`)."""
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


def add_flags(parser: argparse.ArgumentParser, flags: tuple[Flag, ...]) -> None:
    for flag in flags:
        names = ", ".join(env_names(flag))
        default = f" (default {flag.default})" if flag.default is not None else ""
        if flag.kind == "bool":
            parser.add_argument(f"--{flag.name}", action="store_const", const="true",
                                default=None, help=f"{flag.help} [env {names}]")
        else:
            parser.add_argument(f"--{flag.name}", default=None,
                                help=f"{flag.help}{default} [env {names}]")


def load_env_file(path: str) -> None:
    """Load KEY=value lines of `path` into os.environ, as sourcing it would (# comments)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise ValueError(f"--env-file: {path!r} cannot be read ({err.strerror})") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--env-file: {path}:{number}: not a KEY=value line")
        os.environ[key.strip()] = value.strip().strip("'\"")


def resolve(args: argparse.Namespace, flags: tuple[Flag, ...]) -> dict[str, Any]:
    """Flag, else environment variable, else default; typed. ValueError names the bad one."""
    env_file = getattr(args, "env_file", None) or os.environ.get(ENV_PREFIX + "ENV_FILE")
    if env_file:
        load_env_file(env_file)
    out: dict[str, Any] = {}
    for flag in flags:
        key = flag.name.replace("-", "_")
        raw, source = getattr(args, key, None), f"--{flag.name}"
        if raw is None:
            for name in env_names(flag):
                if os.environ.get(name):
                    raw, source = os.environ[name], name
                    break
        if raw is None:
            raw = flag.default
        try:
            if raw is None:
                out[key] = None
            elif flag.kind == "duration":
                out[key] = seconds(raw)
            elif flag.kind == "int":
                out[key] = int(raw)
            elif flag.kind == "bool":
                out[key] = str(raw).lower() in ("1", "true", "yes", "on")
            else:
                out[key] = raw
        except ValueError:
            raise ValueError(f"{source}: {str(raw)[:40]!r} is not a valid {flag.kind}") from None
    return out


def desired_source(opts: dict[str, Any]) -> dict[str, Any]:
    """`opts` with the declaration's source settled: the file, else the config label (default
    DESIRED_LABEL); ValueError if both are given."""
    if opts["desired_file"] and opts["desired_config_label"]:
        raise ValueError("--desired-file / --desired-config-label: give one, not both")
    if not opts["desired_file"]:
        opts["desired_config_label"] = opts["desired_config_label"] or DESIRED_LABEL
    return opts


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="run the controller (one replica)",
        description="Reconcile the swarm's scale sets toward the declaration, one node at a "
        "time. Run one replica per manager; the lease in the swarm picks the active one.")
    add_flags(parser, FLAGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        opts = desired_source(resolve(args, FLAGS))
        if opts["log_format"] not in ("json", "text"):
            raise ValueError(f"--log-format: {opts['log_format']!r} is not one of json, text")
        for key in ("subscription_id", "resource_group"):
            if not opts[key]:
                raise ValueError(f"--{key.replace('_', '-')}: required (or AZURE_"
                                 f"{key.upper()})")
    except ValueError as err:
        print(f"swarm-upgrade run: {err}", file=sys.stderr)
        return 2
    from controller.runtime.app import main as app_main

    async def serve() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        try:
            return await app_main(opts)
        except asyncio.CancelledError:
            return 0

    return asyncio.run(serve())
