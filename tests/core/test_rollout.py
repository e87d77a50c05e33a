"""The three-phase flow (controller/rollout.py) through the in-memory cluster of sim.py, extended
with an ARM resource group and platform services: resources → nodes → services, refusals before
anything is touched, halts, and a crashing runtime resuming each phase."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest

from controller import decision as d
from controller import phases, rollout
from controller import progress as pg
from controller.catalog import load_catalog
from controller.decision import Action
from controller.model import Desired, Strategy
from controller.observed import Deployment, Observed, Service, TemplateCheck
from controller.progress import Progress
from controller.snapshot import Snapshot
from tests.core.sim import Chaos, Cluster, Violation, drive

BUNDLED = load_catalog()
OLD = BUNDLED.release("stable", "17.06.0-ce-azure1")
NEW = BUNDLED.release("stable", "17.06.1-ce-azure1")
assert OLD is not None and NEW is not None and NEW.template is not None
IMAGES = {"meta": "local/meta:2", "guide": "local/guide:2"}


class Catalog:
    """The bundled catalog with the target's system services swapped for testbed images."""

    def __init__(self, images: dict[str, str]) -> None:
        self.new = dataclasses.replace(NEW, system_services=MappingProxyType(images))

    def release(self, channel: str, version: str) -> Any:
        if (channel, version) == ("stable", NEW.version):
            return self.new
        return BUNDLED.release(channel, version)

    def __getattr__(self, name: str) -> Any:
        return getattr(BUNDLED, name)


@dataclass
class PhasedCluster(Cluster):
    """Cluster + resource group deployments + platform services, with phase-order checks."""

    deployments: dict[str, Deployment] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    running_until: dict[str, float] = field(default_factory=dict)
    template_valid: bool = True
    failing_images: set[str] = field(default_factory=set)
    touched_nodes: bool = False

    @classmethod
    def make(cls) -> PhasedCluster:
        base = Cluster.build(3, 2, OLD.image, NEW.image)
        c = cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Cluster)})
        c.deployments["docker4azure"] = Deployment(
            "docker4azure", "Succeeded", 1.0, MappingProxyType({"storageAccountPrefix": "p"}))
        for name in ("meta", "guide"):
            labels = {phases.SYSTEM_LABEL: "true", phases.SYSTEM_NAME_LABEL: name}
            c.services[name] = Service(f"id-{name}", f"d4a-{name}", f"local/{name}:1",
                                       MappingProxyType(labels), "", "", 0.0, 2, 2, 1)
        return c

    def snapshot(self) -> Snapshot:
        base = super().snapshot()
        name = f"swarm-upgrade-{NEW.version}"
        check = TemplateCheck(name, NEW.template.digest if NEW.template else "",
                              self.template_valid,
                              "" if self.template_valid else "InvalidTemplate",
                              "" if self.template_valid else "unknown function 'concatt'")
        observed = Observed(tuple(self.deployments.values()), check,
                            tuple(self.services.values()))
        return dataclasses.replace(base, observed=observed)

    def apply(self, a: Action) -> None:
        if a.kind not in (d.DEPLOY_TEMPLATE, d.UPDATE_SERVICE):
            dep = self.deployments.get(f"swarm-upgrade-{NEW.version}")
            if dep is None or dep.provisioning_state != "Succeeded":
                raise Violation(f"{a.kind} before the resource group was deployed")
            self.touched_nodes = True
        super().apply(a)

    def _do_deploy_template(self, a: Action) -> None:
        if not self.template_valid:
            raise Violation("an invalid template was deployed")
        name = a.params["deployment"]
        self.deployments[name] = Deployment(name, "Running", self.now,
                                            MappingProxyType(a.params["parameters"]))
        self.running_until[name] = self.now + 30

    def _do_update_service(self, a: Action) -> None:
        if not all(self.on_target(h) for h in self.originals):
            raise Violation("a platform service updated before every node runs the target")
        busy = [s.name for s in self.services.values() if s.update_state == "updating"]
        if busy:
            raise Violation(f"two services updating at once: {busy}")
        key = next(k for k, s in self.services.items() if s.id == a.params["serviceId"])
        s = self.services[key]
        self.services[key] = dataclasses.replace(
            s, image=a.params["image"], update_state="updating", update_started_at=self.now,
            running_tasks=0, version=s.version + 1)
        self.running_until[key] = self.now + 20

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        for key, until in list(self.running_until.items()):
            if self.now < until:
                continue
            del self.running_until[key]
            if key in self.deployments:
                dep = self.deployments[key]
                self.deployments[key] = dataclasses.replace(
                    dep, provisioning_state="Succeeded", timestamp=self.now)
                continue
            s = self.services[key]
            if s.image in self.failing_images:
                old = f"local/{key}:1"
                self.services[key] = dataclasses.replace(
                    s, image=old, update_state="rollback_completed", running_tasks=2,
                    update_message="rollback completed: task exited with code 1")
            else:
                self.services[key] = dataclasses.replace(
                    s, update_state="completed", running_tasks=s.desired_tasks)


def desired() -> Desired:
    return Desired("prod", "stable", NEW.version, strategy=Strategy(), digest="d1")


def test_one_rollout_runs_resources_then_nodes_then_services() -> None:
    c = PhasedCluster.make()
    seen: list[str] = []
    run = drive(rollout.plan, c, desired(), Catalog(IMAGES),  # type: ignore[arg-type]
                on_decision=lambda dec: seen.append(dec.progress.phase if dec.progress else ""))
    assert run.final.verdict == d.DONE, run.final.reasons
    assert run.final.reasons[0].code == d.UP_TO_DATE
    phases_in_order = [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p]
    assert phases_in_order == ["resources", "nodes", "services", "done"]
    assert c.deployments[f"swarm-upgrade-{NEW.version}"].provisioning_state == "Succeeded"
    assert c.deployments[f"swarm-upgrade-{NEW.version}"].parameters[
        "diagnosticsStoragePrefix"] == "p"
    assert {s.image for s in c.services.values()} == set(IMAGES.values())
    assert all(c.on_target(h) for h in c.originals)
    final = run.final.progress
    assert final is not None and final.phase == pg.PHASE_DONE
    assert final.resources is not None and final.resources.finished
    assert final.services is not None and set(final.services.done) == {"d4a-meta", "d4a-guide"}


def test_invalid_template_is_refused_before_anything_is_touched() -> None:
    c = PhasedCluster.make()
    c.template_valid = False
    run = drive(rollout.plan, c, desired(), Catalog(IMAGES))  # type: ignore[arg-type]
    assert run.final.verdict == d.REFUSED
    assert run.final.reasons[0].code == d.INVALID_TEMPLATE
    assert "unknown function 'concatt'" in run.final.reasons[0].message
    assert not c.touched_nodes and len(c.deployments) == 1
    assert not any(c.on_target(h) for h in c.originals)


def test_a_rolled_back_service_halts_the_rollout_with_the_reason() -> None:
    c = PhasedCluster.make()
    c.failing_images = {"local/meta:2"}
    run = drive(rollout.plan, c, desired(), Catalog(IMAGES))  # type: ignore[arg-type]
    assert run.final.verdict == d.HALTED
    assert run.final.reasons[0].code == d.SERVICE_ROLLED_BACK
    assert "task exited with code 1" in run.final.reasons[0].message
    assert c.services["meta"].image == "local/meta:1"
    assert c.services["guide"].image == "local/guide:1", "nothing after the failed service"
    halted = run.final.progress
    assert halted is not None and halted.halted_code == d.SERVICE_ROLLED_BACK
    # Stays halted on the next pass, touching nothing.
    again = rollout.plan(desired(), c.snapshot(), halted, Catalog(IMAGES), c.now + 60)  # type: ignore[arg-type]
    assert again.verdict == d.HALTED and not again.actions


def test_a_changed_declaration_resumes_the_halted_services_phase() -> None:
    c = PhasedCluster.make()
    c.failing_images = {"local/meta:2"}
    run = drive(rollout.plan, c, desired(), Catalog(IMAGES))  # type: ignore[arg-type]
    c.failing_images = set()  # the operator fixed the image
    fixed = dataclasses.replace(desired(), digest="d2")
    progress = run.final.progress
    for _ in range(200):
        dec = rollout.plan(fixed, c.snapshot(), progress, Catalog(IMAGES), c.now)  # type: ignore[arg-type]
        if dec.verdict == d.DONE:
            break
        assert dec.verdict in (d.PROCEED, d.WAIT), dec.reasons
        progress = dec.progress
        for a in dec.actions:
            c.apply(a)
        c.advance(dec.requeue_after)
    assert dec.verdict == d.DONE
    assert {s.image for s in c.services.values()} == set(IMAGES.values())


def test_paused_and_refusals_of_the_node_planner_still_come_first() -> None:
    c = PhasedCluster.make()
    paused = dataclasses.replace(desired(), paused=True)
    dec = rollout.plan(paused, c.snapshot(), None, Catalog(IMAGES), c.now)  # type: ignore[arg-type]
    assert dec.verdict == d.WAIT and dec.reasons[0].code == d.PAUSED and not dec.actions
    skip = dataclasses.replace(desired(), version="17.12.0-ce-azure1")
    dec = rollout.plan(skip, c.snapshot(), None, Catalog(IMAGES), c.now)  # type: ignore[arg-type]
    assert dec.verdict == d.REFUSED and not dec.actions


def test_a_progress_from_before_phases_continues_in_the_nodes_phase() -> None:
    c = PhasedCluster.make()
    legacy = Progress("r", "stable", NEW.version, c.now - 10, "d1", done=("swarm-worker000001",))
    assert rollout.current_phase(legacy, legacy) == pg.PHASE_NODES
    fresh = Progress("r", "stable", NEW.version, c.now, "d1")
    assert rollout.current_phase(None, fresh) == pg.PHASE_RESOURCES


@pytest.mark.parametrize("seed", range(6))
def test_a_crashing_runtime_still_finishes_every_phase_in_order(seed: int) -> None:
    c = PhasedCluster.make()
    chaos = Chaos(crash_before_write=0.1, crash_after_write=0.15, lost_action=0.1,
                  failed_action=0.05)
    run = drive(rollout.plan, c, desired(), Catalog(IMAGES),  # type: ignore[arg-type]
                rng=random.Random(seed), chaos=chaos)
    assert run.final.verdict == d.DONE, run.final.reasons
    assert {s.image for s in c.services.values()} == set(IMAGES.values())


def test_phase_records_survive_the_json_round_trip() -> None:
    c = PhasedCluster.make()
    dec = rollout.plan(desired(), c.snapshot(), None, Catalog(IMAGES), c.now)  # type: ignore[arg-type]
    assert dec.verdict == d.PROCEED and dec.actions[0].kind == d.DEPLOY_TEMPLATE
    assert dec.progress is not None and dec.progress.phase == pg.PHASE_RESOURCES
    assert not dec.progress.nodes, "no node starts before the resources phase is done"
    text = json.dumps(dec.progress.to_dict())
    assert Progress.from_dict(json.loads(text)) == dec.progress
    snap = json.loads(json.dumps(c.snapshot().to_dict()))
    assert Snapshot.from_dict(snap).observed == c.snapshot().observed


def test_phase_snapshot_and_progress_match_the_schemas() -> None:
    import jsonschema

    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "crd"
    c = PhasedCluster.make()
    c.failing_images = {"local/meta:2"}
    run = drive(rollout.plan, c, desired(), Catalog(IMAGES))  # type: ignore[arg-type]
    assert run.final.progress is not None and run.final.progress.services is not None
    snapshot_schema = json.loads((root / "snapshot.schema.json").read_text())
    progress_schema = json.loads((root / "progress.schema.json").read_text())
    jsonschema.validate(c.snapshot().to_dict(), snapshot_schema)
    jsonschema.validate(run.final.progress.to_dict(), progress_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**run.final.progress.to_dict(), "phase": "vhd"}, progress_schema)
