"""Item 2: Azure faults during a real rollout (the testbed's ARM endpoint injects them).

- `arm-429-storm`: every ARM request answers 429 + Retry-After 2 for 20 s from the first drain;
  the controller slows down (≤ 5 requests/s during the storm) and completes
- `arm-500s`: 500s on the manual upgrade, the VM list and the model PATCH; completes
- `token-failures`: the token endpoint fails 8 times, then the active replica is killed (the next
  one needs a token); completes
- `lro-fails`: the manual upgrade of worker 0 ends Failed; `NodeTimeout` halt (Warning), nothing
  touched for 15 s; resumed by a declaration edit, completes
- `never-boots`: worker 1 never boots after its reimage; halts after `nodeReadyTimeout` (40 s),
  nothing touched for 15 s; resumed after it boots again, completes
- `scaleset-changed`: the worker scale set's model is set back to the old image right after the
  controller set it; no instance ends on a wrong image: completes on the target
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from azure.identity.aio import ClientSecretCredential

from controller.adapters.azure import ScaleSetClient
from tests.reliability import invariants as inv
from tests.reliability.harness import Bed, Run, declaration, short
from tests.reliability.rollout import Allowances, During, rollout

WORKERS = "swarm-worker-vmss"
QUIET_S = 15.0


async def quiet_after_halt(run: Run, allow: Allowances, halted_at: float) -> None:
    """Nothing is touched after a halt: no accepted ARM write, the swarm's nodes unchanged."""
    before = await run.bed.nodes()
    await asyncio.sleep(QUIET_S)
    after = await run.bed.nodes()
    writes = inv.accepted_writes(run.arm_log(), halted_at + 0.5)
    allow.violations += [f"touched after the halt: {w}" for w in writes]
    keys = [(n["id"], n["role"], n["availability"]) for n in before]
    if keys != [(n["id"], n["role"], n["availability"]) for n in after]:
        allow.violations.append(f"touched after the halt: nodes {keys} became "
                                f"{[(n['id'], n['role'], n['availability']) for n in after]}")
    allow.details["quietAfterHaltS"] = QUIET_S
    allow.details["writesAfterHalt"] = len(writes)


async def wait_halt(run: Run, after: float, wait_s: float) -> dict[str, Any]:
    def halted(events: list[dict[str, Any]]) -> bool:
        return any(e.get("reason") in ("NodeTimeout", "NodeLost", "ControllerHalted")
                   and inv.epoch(e["time"]) >= after for e in events if e.get("time"))

    events = await run.wait_for(halted, wait_s, "a halt")
    return next(e for e in events if e.get("reason") in ("NodeTimeout", "NodeLost",
                                                           "ControllerHalted")
                and e.get("time") and inv.epoch(e["time"]) >= after)


def storm(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        await run.wait_reason("NodeDraining", 120)
        start = time.time()
        await asyncio.to_thread(run.bed.handle.arm_fault, "throttle_storm", seconds=20,
                                retry_after=2)
        await asyncio.sleep(21)
        log = [e for e in run.arm_log() if start <= e["time"] <= start + 20
               and not e["operation"].startswith("Identity_")]
        rate = len(log) / 20
        allow.measured.update(stormRequests=len(log), stormRequestsPerS=round(rate, 2),
                              storm429=sum(1 for e in log if e["status"] == 429))
        if rate > 5:
            allow.violations.append(f"429 storm: {rate:.1f} requests/s (expected <= 5: the "
                                    f"controller honours Retry-After)")
        if not allow.measured["storm429"]:
            allow.violations.append("429 storm: no request was throttled (the fault did not bite)")
    return go()


def errors(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        await run.wait_reason("NodeDraining", 120)
        for op, count in (("VirtualMachineScaleSets_UpdateInstances", 2),
                          ("VirtualMachineScaleSetVMs_List", 3),
                          ("VirtualMachineScaleSets_Update", 2)):
            await asyncio.to_thread(run.bed.handle.arm_fault, "error", operation=op, count=count)
        allow.details["armed"] = "500 x2 UpdateInstances, x3 VMs_List, x2 Update"
    return go()


def tokens(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        from tests.reliability.harness import holder

        await run.wait_reason("NodeDraining", 120)
        await asyncio.to_thread(run.bed.handle.arm_fault, "fail_tokens", count=8)
        label = holder(run.events())
        replica = run.running(label) if label else None
        if replica is not None:
            await asyncio.to_thread(run.kill9, replica.hostname)
            allow.details["killed"] = label
        await asyncio.sleep(30)
        log = [e for e in run.arm_log() if e["operation"].startswith("Identity_")]
        allow.measured["tokenFailures"] = sum(1 for e in log if e["status"] >= 400)
        if not allow.measured["tokenFailures"]:
            allow.violations.append("token failures: no token request failed (did not bite)")
    return go()


def lro_fails(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        begin = time.time()
        await asyncio.to_thread(run.bed.handle.arm_fault, "fail_lro",
                                operation="VirtualMachineScaleSets_UpdateInstances",
                                scale_set=WORKERS, instance_id="0")
        allow.reimages[f"{WORKERS}/0"] = 2  # the failed request and the one after the resume
        halt = await wait_halt(run, begin, 400)
        allow.details["halt"] = {k: halt[k] for k in ("reason", "object", "message")}
        if not inv.reasons(run.events(), "ReimageFailed"):
            allow.violations.append("lro-fails: no ReimageFailed Warning")
        await quiet_after_halt(run, allow, inv.epoch(halt["time"]))
        run.declare(declaration(target, ready="4m"))  # the operator's edit resumes it
    return go()


def never_boots(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        begin = time.time()
        await asyncio.to_thread(run.bed.handle.arm_fault, "never_boots", scale_set=WORKERS,
                                instance_id="1", seconds=70)
        allow.reimages[f"{WORKERS}/1"] = 2
        reimaging = await run.wait_reason("InstanceReimaging", 400, obj="node/swarm-worker000001",
                                          after=begin)
        halt = await wait_halt(run, inv.epoch(reimaging["time"]), 120)
        took = inv.epoch(halt["time"]) - inv.epoch(reimaging["time"])
        allow.details["halt"] = {k: halt[k] for k in ("reason", "object", "message")}
        allow.measured["haltAfterS"] = round(took, 1)
        if halt["reason"] != "NodeTimeout" or not 35 <= took <= 80:
            allow.violations.append(f"never-boots: {halt['reason']} {took:.0f}s after the "
                                    f"reimage (expected NodeTimeout after nodeReadyTimeout 40s)")
        await quiet_after_halt(run, allow, inv.epoch(halt["time"]))
        await asyncio.to_thread(run.bed.handle.arm_fault, "boots_again", scale_set=WORKERS,
                                instance_id="1")
        await asyncio.sleep(max(0.0, inv.epoch(reimaging["time"]) + 75 - time.time()))
        run.declare(declaration(target, ready="4m"))
    return go()


def scaleset_changed(run: Run, target: str, allow: Allowances) -> Any:
    async def go() -> None:
        old = run.bed.catalog.release("stable", run.bed.version)
        assert old is not None
        await run.wait_reason("ScaleSetModelUpdated", 400, obj=f"scaleset/{WORKERS}")
        env = run.bed.handle.env
        credential = ClientSecretCredential(
            env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
            authority=env["AZURE_AUTHORITY_HOST"], connection_verify=env["SSL_CERT_FILE"])
        client = ScaleSetClient(env["AZURE_SUBSCRIPTION_ID"], env["AZURE_RESOURCE_GROUP"],
                                base_url=env["AZURE_ARM_ENDPOINT"], credential=credential,
                                connection_verify=env["SSL_CERT_FILE"])
        try:
            image = {"publisher": old.image.publisher, "offer": old.image.offer,
                     "sku": old.image.sku, "version": old.image.version}
            changed = await client.set_model_image(WORKERS, image)
        finally:
            await client.close()
            await credential.close()
        allow.details["modelSetBackTo"] = short(old.version) if changed else "(already)"
        for i in range(2):  # an instance reimaged onto the wrong model may be asked again
            allow.reimages[f"{WORKERS}/{i}"] = 2
    return go()


SCENARIOS: dict[str, tuple[Any, Any]] = {
    "arm-429-storm": (storm, None),
    "arm-500s": (errors, None),
    "token-failures": (tokens, None),
    "lro-fails": (lro_fails, None),
    "never-boots": (never_boots, lambda v: declaration(v, ready="40s")),
    "scaleset-changed": (scaleset_changed, None),
}


def as_during(factory: Any) -> During:
    async def during(run: Run, target: str, allow: Allowances) -> None:
        await factory(run, target, allow)
    return during


async def group(c: Any) -> None:
    names = [n for n in SCENARIOS if c.wanted(n)]
    for index in range(c.fault_runs):
        for name in names:
            factory, text = SCENARIOS[name]
            bed: Bed = c.bed_for_run()
            row = await rollout(bed, c.rundir(name, index), name, index, as_during(factory),
                                text=text)
            row["group"] = "azure"
            c.add(row)
