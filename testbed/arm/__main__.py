"""Run the ARM endpoint alone, with in-memory instances (FakeDriver), for manual exploration.

    python -m testbed.arm --cert-dir /tmp/arm --managers 3 --workers 2 --env-file /tmp/arm/env

prints (and writes) the environment that points the Azure SDKs at it, then serves until
interrupted. The real testbed (swarm-testbed) runs it with dockerd nodes instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from testbed.arm.fake_driver import FakeDriver
from testbed.arm.server import ArmServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.arm", description=__doc__)
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--channel", default="stable")
    parser.add_argument("--version", default="17.06.0", help="image version of every instance")
    parser.add_argument("--env-file", type=Path)
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = ArmServer(FakeDriver(), subscription_id="00000000-0000-0000-0000-000000000000",
                       resource_group="swarm-testbed", tenant_id="testbed-tenant",
                       client_id="swarm-upgrade-controller", client_secret="testbed-secret",
                       cert_dir=args.cert_dir, host=args.host, port=args.port)
    image = {"publisher": "docker", "offer": "docker4azure", "sku": args.channel,
             "version": args.version}
    for role, count in (("manager", args.managers), ("worker", args.workers)):
        server.add_scale_set(f"swarm-{role}-vmss", role, {"channel": args.channel}, image,
                             count, f"swarm-{role}")
    async with server:
        lines = [f"{key}={value}" for key, value in server.environment().items()]
        if args.env_file:
            args.env_file.write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    """Entry point."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_parser().parse_args()))


if __name__ == "__main__":
    main()
