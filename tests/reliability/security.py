"""Item 5: credentials never printed, read-only endpoints, the Azure role is enough and minimal.

- `secrets-and-endpoints`: a testbed whose service principal secret is a marker; a full rollout
  by three replicas with /healthz and /metrics on, through token endpoint failures (the holder is
  killed so the next one must fetch a token), a 429 burst and a 500. Every replica's output, every
  /healthz and /metrics body (sampled every few seconds) and `swarm-upgrade status` (when the
  build has it) must contain neither the marker nor any bearer token the ARM endpoint issued.
  POST, PUT, PATCH, DELETE on /healthz and /metrics answer 405. The ARM endpoint enforces the
  role of manifests/azure-role.json during the whole rollout.
- `role-minus-<action>`: for each action of the role, a rollout starts with that action removed:
  the rollout must stop with a Warning naming the action, and nothing more is accepted by ARM for
  15 s (each such run ends there, halted as expected; the next one gets a fresh testbed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.reliability import invariants as inv
from tests.reliability.harness import Bed, Run, holder
from tests.reliability.rollout import Allowances, rollout

ROLE_FILE = Path(__file__).resolve().parents[2] / "manifests" / "azure-role.json"
PORT = re.compile(r"/healthz and /metrics on port (\d+)")
QUIET_S = 15.0


def role_actions() -> list[str] | None:
    if not ROLE_FILE.is_file():
        return None
    return list(json.loads(ROLE_FILE.read_text())["Actions"])


def marker() -> str:
    return "RELIABILITY-MARKER-" + secrets.token_hex(12)


def ports(run: Run) -> dict[str, int]:
    """replica label -> metrics port, of the replicas that still run."""
    out = {}
    for e in run.events():
        if e.get("reason") == "ControllerStarted":
            match = PORT.search(str(e.get("message", "")))
            if match and run.running(str(e.get("replica"))):
                out[str(e["replica"])] = int(match.group(1))
    return out


def http(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"x" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


async def sample_endpoints(run: Run, texts: dict[str, str], allow: Allowances) -> None:
    """Every 3 s: GET both endpoints of every replica; once per replica: the writes -> 405."""
    checked: set[str] = set()
    refusals = allow.measured.setdefault("endpointWritesRefused", 0)
    while True:
        for label, port in ports(run).items():
            for path in ("/healthz", "/metrics"):
                url = f"http://127.0.0.1:{port}{path}"
                with contextlib.suppress(OSError):
                    status, body = await asyncio.to_thread(http, "GET", url)
                    key = f"{label}{path}"
                    texts[key] = texts.get(key, "") + f"\n--- {status}\n{body}"
                if label in checked:
                    continue
                for method in ("POST", "PUT", "PATCH", "DELETE"):
                    with contextlib.suppress(OSError):
                        status, _ = await asyncio.to_thread(http, method, url)
                        if status != 405:
                            allow.violations.append(f"{method} {path} of {label} answered "
                                                    f"{status}, not 405")
                        else:
                            refusals += 1
                            allow.measured["endpointWritesRefused"] = refusals
            checked.add(label)
        await asyncio.sleep(3)


def status_output(bed: Bed) -> str | None:
    """`swarm-upgrade status` against the testbed, or None if this build has no such command."""
    env = {k: v for k, v in os.environ.items() if k not in bed.handle.env}
    probe = subprocess.run(["swarm-upgrade", "status", "--help"], capture_output=True,
                           env=env, timeout=30, check=False)
    if probe.returncode != 0:
        return None
    out = []
    for extra in ([], ["--output", "json"]):
        proc = subprocess.run(["swarm-upgrade", "status", "--env-file", str(bed.handle.env_file),
                               *extra], capture_output=True, env=env, timeout=60, check=False)
        out.append((proc.stdout + proc.stderr).decode(errors="replace"))
    return "\n".join(out)


def secrets_during(secret: str) -> Any:
    async def during(run: Run, target: str, allow: Allowances) -> None:
        texts: dict[str, str] = {}
        allow.details["texts"] = texts
        sampler = asyncio.create_task(sample_endpoints(run, texts, allow))
        try:
            await run.wait_reason("NodeDraining", 120)
            handle = run.bed.handle
            await asyncio.to_thread(handle.arm_fault, "fail_tokens", count=3)
            await asyncio.to_thread(handle.arm_fault, "throttle_storm", requests=3,
                                    retry_after=1)
            await asyncio.to_thread(handle.arm_fault, "error",
                                    operation="VirtualMachineScaleSetVMs_List", count=1)
            label = holder(run.events())
            replica = run.running(label) if label else None
            if replica is not None:
                await asyncio.to_thread(run.kill9, replica.hostname)
            await asyncio.sleep(3600)  # sampled until the rollout ends and cancels this
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    return during


def read_logs(directory: Path) -> dict[str, str]:
    return {f"log {log.name}": log.read_text(errors="replace")
            for log in sorted(directory.glob("*.jsonl"))}


async def secrets_and_endpoints(bed: Bed, directory: Path, secret: str) -> dict[str, Any]:
    row = await rollout(bed, directory, "secrets-and-endpoints", 0, secrets_during(secret),
                        run_args=["--metrics-port", "0", "--metrics-host", "127.0.0.1"])
    details = row["details"]
    texts: dict[str, str] = details.pop("texts", {})
    texts.update(await asyncio.to_thread(read_logs, directory))
    status = status_output(bed)
    if status is not None:
        texts["swarm-upgrade status"] = status
    found = inv.leaked(texts, [secret])
    row["violations"] += found
    row["ok"] = row["ok"] and not found
    row["measured"].update(textsChecked=len(texts), bytesChecked=sum(map(len, texts.values())),
                           statusChecked=status is not None,
                           roleEnforced=role_actions() is not None)
    return row


def minus(action: str, actions: list[str]) -> Any:
    async def during(run: Run, target: str, allow: Allowances) -> None:
        begin = time.time()
        await asyncio.to_thread(run.bed.handle.arm_role, [a for a in actions if a != action])

        def warned(events: list[dict[str, Any]]) -> bool:
            return any(e.get("type") == "Warning" and action.lower() in
                       str(e.get("message", "")).lower() for e in events)

        events = await run.wait_for(warned, 180, f"a Warning naming {action}")
        warning = next(e for e in events if e.get("type") == "Warning"
                       and action.lower() in str(e.get("message", "")).lower())
        at = inv.epoch(warning["time"])
        allow.details["warning"] = {k: warning[k] for k in ("reason", "message")}
        allow.measured["warningAfterS"] = round(at - begin, 1)
        await asyncio.sleep(QUIET_S)
        writes = inv.accepted_writes(run.arm_log(), at + 0.5)
        later = [e for e in run.events() if e.get("time") and inv.epoch(e["time"]) > at + 0.5
                 and e.get("reason") in ("NodeDraining", "NodeDemoted", "InstanceReimaging",
                                         "OldNodeRemoved", "ScaleSetModelUpdated")]
        allow.violations += [f"went on after the 403: {w}" for w in writes]
        allow.violations += [f"went on after the 403: {e['reason']} {e['object']}"
                             for e in later]
        allow.details["stopped"] = not writes and not later
        allow.expect = "halted"  # the run ends here; the next one gets a fresh testbed
    return during


async def group(c: Any) -> None:
    actions = role_actions()
    secret = marker()
    if c.wanted("secrets-and-endpoints"):
        bed: Bed = c.fresh_bed(client_secret=secret, role_actions=actions)
        c.add(await secrets_and_endpoints(bed, c.rundir("secrets", 0), secret))
    if actions is None:
        c.add({"scenario": "role", "run": 0, "outcome": "not run", "expected": "completed",
               "ok": False, "violations": ["manifests/azure-role.json is not in this tree"]})
        return
    for index, action in enumerate(actions):
        name = "role-minus-" + action.removeprefix("Microsoft.Compute/")
        if not c.wanted(name):
            continue
        bed = c.bed_for_run(client_secret=secret, role_actions=actions)
        await asyncio.to_thread(bed.handle.arm_role, actions)
        row = await rollout(bed, c.rundir("role", index), name, 0, minus(action, actions))
        row["group"] = "security"
        c.add(row)
