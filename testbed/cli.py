"""`swarm-testbed`: start, inspect, break and stop a local Docker-for-Azure testbed.

swarm-testbed up --managers 3 --workers 2 --channel stable --version 17.06.0-ce-azure1 [--dir D]
swarm-testbed status | down | sample-service --replicas 4
swarm-testbed fault power-off|start|restart|crash|never-boots|boots-again|reimage|delete HOST
swarm-testbed fault arm NAME [KEY=VALUE ...]        (a method of the ARM server's fault API)
swarm-testbed referee --out FILE [--duration S]     (until SIGINT/SIGTERM without --duration)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testbed import control
from testbed.admin import NODE_FAULTS
from testbed.config import ConfigError, TestbedConfig
from testbed.referee import Referee

DEFAULT_DIR = "/tmp/swarm-testbed"


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir or os.environ.get("TESTBED_DIR") or DEFAULT_DIR)


def cmd_up(args: argparse.Namespace) -> int:
    config = TestbedConfig(
        dir=str(_dir(args)),
        managers=args.managers,
        workers=args.workers,
        channel=args.channel,
        version=args.version,
        reimage_seconds=args.reimage_seconds,
        never_boots_seconds=args.never_boots_seconds,
        ip_base=args.ip_base,
        with_arm=not args.no_arm,
    )
    started = time.monotonic()
    handle = control.up(config)
    if args.sample_service:
        handle.create_service("sample", args.sample_service)
    sys.stdout.write(handle.env_file.read_text())
    print(
        f"# ready in {time.monotonic() - started:.1f}s; env file: {handle.env_file}",
        file=sys.stderr,
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = control.attach(_dir(args)).status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"ARM endpoint: {status.get('armUrl')}")
    print("INSTANCES")
    for i in status["instances"]:
        print(
            f"  {i['computerName']:<22} {i['scaleSet']:<20} id={i['instanceId']:<3} "
            f"{i['powerState']:<9} image={i['image'].get('version')} pid={i['dockerdPid']}"
        )
    print("NODES")
    for n in status["nodes"]:
        role = n["role"] + ("*" if n["leader"] else "")
        print(
            f"  {n['hostname']:<22} {n['id'][:12]:<13} {role:<9} {n['state']:<6} "
            f"{n['availability']:<7} {n['reachability'] or '-':<12} {n['version']}"
        )
    return 0


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_fault(args: argparse.Namespace) -> int:
    handle = control.attach(_dir(args))
    if args.fault == "arm":
        if not args.target:
            raise ConfigError("fault arm: name the ARM fault, e.g. throttle_storm")
        kwargs = {}
        for item in args.args:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"fault arm: argument {item!r} is not KEY=VALUE")
            kwargs[key] = _parse_value(value)
        handle.arm_fault(args.target, **kwargs)
        print(f"ARM fault {args.target} {kwargs}")
        return 0
    if not args.target:
        raise ConfigError(f"fault {args.fault}: name the instance (computer name)")
    print(json.dumps(handle.fault(args.fault, args.target, args.version)))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    left = control.down(_dir(args))
    for item in left:
        print(f"left behind: {item}", file=sys.stderr)
    print(f"down in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 1 if left else 0


def cmd_sample_service(args: argparse.Namespace) -> int:
    print(control.attach(_dir(args)).create_service(args.name, args.replicas))
    return 0


async def _referee(hosts: dict[str, str], out: Path, duration: float | None) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Referee(hosts) as referee:
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
    return referee.write(out)


def cmd_referee(args: argparse.Namespace) -> int:
    hosts = control.attach(_dir(args)).manager_hosts
    report = asyncio.run(_referee(hosts, Path(args.out), args.duration))
    print(
        f"maxManagersOut={report['maxManagersOut']} leaderless={len(report['leaderless'])} "
        f"samples={report['samples']} -> {args.out}",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-testbed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dir", help=f"testbed directory (default $TESTBED_DIR or {DEFAULT_DIR})")
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, "start a testbed and print its env file")
    p.add_argument("--managers", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--channel", default="stable")
    p.add_argument("--version", default="17.06.0-ce-azure1", help="release the instances boot")
    p.add_argument("--reimage-seconds", type=float, default=0.0, help="extra delay per reimage")
    p.add_argument(
        "--never-boots-seconds",
        type=float,
        default=3.0,
        help="how long a never-boots instance hangs before OSProvisioningTimedOut",
    )
    p.add_argument("--ip-base", default="127.0.1", help="loopback /24 prefix of swarm addresses")
    p.add_argument("--no-arm", action="store_true", help="no ARM endpoint (swarm only)")
    p.add_argument(
        "--sample-service",
        type=int,
        default=0,
        metavar="REPLICAS",
        help="also create a busybox sleep service 'sample'",
    )
    p = add("status", cmd_status, "instances and swarm nodes")
    p.add_argument("--json", action="store_true")
    p = add("fault", cmd_fault, "inject a node fault or an ARM fault")
    p.add_argument("fault", choices=[*NODE_FAULTS, "arm"])
    p.add_argument("target", nargs="?", help="computer name (or the ARM fault's name)")
    p.add_argument("args", nargs="*", help="ARM fault arguments KEY=VALUE")
    p.add_argument("--version", help="release to reimage to (fault reimage)")
    add("down", cmd_down, "stop everything, unmount, remove the dir")
    p = add("sample-service", cmd_sample_service, "create a busybox sleep service")
    p.add_argument("--name", default="sample")
    p.add_argument("--replicas", type=int, default=4)
    p = add("referee", cmd_referee, "watch the swarm and write a JSON report")
    p.add_argument("--out", required=True)
    p.add_argument("--duration", type=float, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `swarm-testbed`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except (ConfigError, control.TestbedError) as exc:
        print(f"swarm-testbed: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
