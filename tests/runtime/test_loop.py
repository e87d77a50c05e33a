"""The reconcile loop against a real 3-manager swarm and the HTTPS ARM endpoint (FakeDriver:
instances are reimaged in ARM only, so a node never rejoins — the loop must wait, never ask twice,
and a replica that takes over after a crash must resume from the progress in the swarm)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.azure import ScaleSetClient
from controller.adapters.resources import ResourceGroupClient
from controller.adapters.swarm import SwarmClient
from controller.catalog import load_catalog
from controller.runtime.events import EventSink
from controller.runtime.health import Metrics
from controller.runtime.loop import Controller, LoopConfig
from controller.runtime.sources import FileSource
from controller.runtime.store import StateStore
from testbed.arm import ArmServer
from testbed.arm.fake_driver import FakeDriver
from tests.runtime.localswarm import LocalSwarm

SUB, RG = "00000000-0000-0000-0000-0000000000bb", "rg"
LEASE = 8.0  # long enough for a pass on a loaded machine (the resources phase adds passes)
OLD = {"publisher": "docker", "offer": "docker4azure", "sku": "stable", "version": "17.06.0"}
# managerSettle 0s: these passes follow each other without waiting (the settle rule has its
# own tests: tests/core/test_planner_managers.py, and the demote re-check below).
DESIRED = ("apiVersion: swarm-upgrade.io/v1alpha1\nkind: SwarmUpgrade\nmetadata:\n  name: t\n"
           "spec:\n  channel: stable\n  version: 17.06.1-ce-azure1\n"
           "  strategy:\n    managerSettle: 0s\n")


@pytest.fixture
async def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ArmServer]:
    server = ArmServer(FakeDriver(), subscription_id=SUB, resource_group=RG, tenant_id="t",
                       client_id="c", client_secret="s3cret-s3cret", cert_dir=tmp_path / "certs")
    server.add_scale_set("swarm-manager-vmss", "manager", {"channel": "stable"}, OLD, 3,
                         "rt-manager")
    server.add_scale_set("swarm-worker-vmss", "worker", {"channel": "stable"}, OLD, 0,
                         "rt-worker")
    server.deployments.seconds = 0.05  # the resources phase before the first node: quick
    await server.start()
    for key, value in server.environment().items():
        monkeypatch.setenv(key, value)
    yield server
    await server.stop()


def make(swarm: LocalSwarm, arm: ArmServer, index: int, desired: Path, out: io.StringIO,
         replica: str) -> Controller:
    client = SwarmClient(swarm.daemons[index].docker_host, timeout=5)
    azure = ScaleSetClient(SUB, RG, base_url=arm.url, connection_verify=str(arm.ca_path),
                           polling_interval=0.05)
    sink = EventSink(out)
    source = FileSource(str(desired), load_catalog(), sink, lambda: None)
    source.poll()
    resources = ResourceGroupClient(SUB, RG, credential=azure.credential, base_url=arm.url,
                                    connection_verify=str(arm.ca_path), polling_interval=0.05)
    return Controller(LoopConfig(replica=replica, lease_duration=LEASE), client, azure, source,
                      load_catalog(), sink, Metrics(), resources=resources)


async def close(c: Controller) -> None:
    await c.executor.close()
    await c.swarm.close()
    if c.phases.resources is not None:
        await c.phases.resources.close()
    await c.azure.close()


# Events of the resources phase, which runs before the first node (tests/e2e/test_phases.py).
RESOURCE_EVENTS = {"PhaseStarted", "PhaseCompleted", "DeploymentStarted", "DeploymentSucceeded",
                   "Deploying", "TemplateCheckPending"}


def reasons(out: io.StringIO) -> list[str]:
    return [r for r in (json.loads(line)["reason"] for line in out.getvalue().splitlines())
            if r not in RESOURCE_EVENTS]


async def test_one_node_goes_through_its_steps_and_is_reimaged_once(
    swarm3: LocalSwarm, arm: ArmServer, tmp_path: Path
) -> None:
    desired = tmp_path / "desired.yaml"
    desired.write_text(DESIRED)
    out_a, out_b = io.StringIO(), io.StringIO()
    a = make(swarm3, arm, 0, desired, out_a, "replica-a")
    b = make(swarm3, arm, 2, desired, out_b, "replica-b")
    try:
        for _ in range(50):  # the resources phase: ARM validates, then the template is deployed
            await a.reconcile()
            await b.reconcile()
            if a.phases.phase == "nodes":
                break
            await asyncio.sleep(0.05)
        deployed = [e for e in arm.request_log if e.operation == "Deployments_CreateOrUpdate"]
        assert len(deployed) == 1 and a.phases.phase == "nodes"
        for _ in range(8):
            await a.reconcile()
            await b.reconcile()  # never acts: a holds the lease
        log_a = reasons(out_a)
        assert log_a[:3] == ["DeclarationLoaded", "LeaseAcquired", "RolloutStarted"]
        for step in ("NodeDraining", "NodeDrained", "NodeDemoted", "ScaleSetModelUpdated",
                     "InstanceReimaging"):
            assert log_a.count(step) == 1, (step, log_a)
        assert "LeaseAcquired" not in reasons(out_b)
        started = next(e["message"] for e in map(json.loads, out_a.getvalue().splitlines())
                       if e["reason"] == "RolloutStarted")
        assert "virtualMachineScaleSets/swarm-manager-vmss/instances" in started
        assert "virtualMachineScaleSets/swarm-worker-vmss/instances" in started
        reimages = [e for e in arm.request_log
                    if e.operation == "VirtualMachineScaleSets_UpdateInstances"]
        assert len(reimages) == 1
        state = await StateStore(a.swarm).read()
        assert state.progress is not None
        (host,) = state.progress["nodes"]
        assert host != swarm3.daemons[0].hostname  # the replica's own node goes last
        assert state.progress["nodes"][host]["phase"] == "reimage"
        # a crashes (no release): b takes over once the lease expires and resumes — it waits
        # for the rejoin and does not ask for a second reimage.
        await close(a)
        await asyncio.sleep(LEASE + 0.2)
        for _ in range(4):
            await b.reconcile()
        assert "LeaseAcquired" in reasons(out_b), out_b.getvalue()
        assert "RolloutStarted" not in reasons(out_b)
        assert "InstanceReimaging" not in reasons(out_b)
        assert len([e for e in arm.request_log
                    if e.operation == "VirtualMachineScaleSets_UpdateInstances"]) == 1
        nodes = await b.swarm.nodes()
        drained = [n for n in nodes if n["Description"]["Hostname"] == host]
        assert drained[0]["Spec"] == {**drained[0]["Spec"], "Role": "worker",
                                      "Availability": "drain"}
    finally:
        await close(b)


async def test_a_refusal_while_following_a_reimage_halts_instead_of_reporting_a_failure(
    swarm3: LocalSwarm, arm: ArmServer, tmp_path: Path
) -> None:
    """Without `locations/operations/read` the manual upgrade is accepted but cannot be followed
    (403 on the operation status). That is not a failed reimage (the instance is reimaged) but a
    permission problem: the controller halts with a Warning naming the action, as for any 403."""
    from testbed.arm.rbac import RoleCheck

    desired = tmp_path / "desired.yaml"
    desired.write_text(DESIRED)
    # Everything but the operation status: the scale sets, and the resources phase's
    # deployments (with the writes of the template's resources).
    arm.rbac = RoleCheck(["Microsoft.Compute/virtualMachineScaleSets/*", "Microsoft.Resources/*",
                          "Microsoft.Storage/*", "Microsoft.Network/*"])
    out = io.StringIO()
    a = make(swarm3, arm, 0, desired, out, "replica-a")
    try:
        for _ in range(60):  # the resources phase, then the first node's steps
            await a.reconcile()
            if "InstanceReimaging" in reasons(out):
                break
            await asyncio.sleep(0.05)
        assert "InstanceReimaging" in reasons(out), reasons(out)
        for _ in range(100):  # the tracking task meets the 403 on the operation's status
            if any(e.status == 403 for e in arm.request_log):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        await a.reconcile()
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        halted = [e for e in events if e["reason"] == "ControllerHalted"]
        assert halted and "locations/operations/read" in halted[0]["message"], events[-3:]
        assert "ReimageFailed" not in reasons(out)
        before = len(arm.request_log)
        await a.reconcile()  # halted: nothing more is asked of ARM
        assert [e for e in arm.request_log[before:] if e.kind == "write"] == []
    finally:
        await close(a)


def scripted(verdicts: list[str]) -> Any:
    """A planner that answers the given verdicts in turn (then the last one again)."""
    from controller import decision as d
    from controller.decision import Decision, Reason
    from controller.progress import Progress

    calls: list[str] = []

    def planner(desired: Any, snapshot: Any, progress: Any, catalog: Any, now: float) -> Any:
        verdict = verdicts[min(len(calls), len(verdicts) - 1)]
        calls.append(verdict)
        prog = Progress("r-1", "stable", "17.06.1-ce-azure1", now, desired.digest)
        if verdict == d.HALTED:
            prog = prog.halt(d.NODE_LOST, "m1 went Down before its reimage", "m1", now)
            return Decision(d.HALTED, (Reason(d.NODE_LOST, "m1 went Down", d.WARNING),),
                            progress=prog)
        return Decision(d.WAIT, (Reason(d.NODE_IN_TRANSITION, "waiting"),), progress=prog)

    planner.calls = calls  # type: ignore[attr-defined]
    return planner


@pytest.mark.parametrize("verdicts, halted", [(["halted", "wait"], False),
                                              (["halted"], True)])
async def test_a_new_halt_is_confirmed_by_a_second_look(
    swarm1: LocalSwarm, arm: ArmServer, tmp_path: Path, verdicts: list[str], halted: bool
) -> None:
    desired = tmp_path / "desired.yaml"
    desired.write_text(DESIRED)
    out = io.StringIO()
    c = make(swarm1, arm, 0, desired, out, f"replica-{halted}")
    c.cfg = LoopConfig(replica=c.cfg.replica, lease_duration=5.0, halt_confirm=1.0)
    c.planner = scripted(verdicts)
    try:
        await c.reconcile()
        state = await StateStore(c.swarm).read()
        assert state.progress is not None
        assert ("halted" in state.progress) is halted
        assert "ConfirmingHalt" in reasons(out)
        assert ("NodeLost" in reasons(out)) is halted
        assert len(c.planner.calls) >= 2  # type: ignore[attr-defined]
        await c.store.release(c.cfg.replica, 0.0)
        await c.store.write(await c.store.read(), (await c.store.read()).lease, None)
    finally:
        await close(c)
