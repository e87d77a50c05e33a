"""Table tests of the resources and services phases: one per reason code and rule, each fails if
its rule is removed."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from controller import decision as d
from controller import phases
from controller.catalog import Release, load_catalog
from controller.model import Strategy
from controller.observed import Change, Deployment, Observed, Service, TemplateCheck
from controller.phases import resources_phase, services_phase
from controller.progress import PhaseRecord

CATALOG = load_catalog()
RELEASE = CATALOG.release("stable", "17.06.1-ce-azure1")
assert RELEASE is not None and RELEASE.template is not None
TEMPLATE = RELEASE.template
NAME = "swarm-upgrade-17.06.1-ce-azure1"
NOW = 10_000.0
STRATEGY = Strategy(node_ready_timeout=600.0)
OLD = Deployment("docker4azure", "Succeeded", 100.0,
                 MappingProxyType({"channel": "stable", "swarmVersion": "17.06.0-ce-azure1",
                                   "storageAccountPrefix": "mydiag"}))


def check(valid: bool = True, digest: str = TEMPLATE.digest, **kw: Any) -> TemplateCheck:
    return TemplateCheck(NAME, digest, valid, **kw)


def res(deployments: tuple[Deployment, ...] | None = (OLD,), tc: TemplateCheck | None = None,
        record: PhaseRecord | None = None, release: Release = RELEASE) -> phases.PhaseOutcome:
    return resources_phase(release, Observed(deployments, tc, None), record, STRATEGY, NOW)


def code(out: phases.PhaseOutcome) -> str:
    return out.reasons[0].code


# ---- resources ----


def test_a_release_without_template_has_nothing_to_deploy() -> None:
    bare = dataclasses.replace(RELEASE, template=None)
    out = res(release=bare)
    assert (out.verdict, code(out)) == (d.DONE, d.PHASE_COMPLETED) and out.record.finished


def test_deployments_not_observed_waits() -> None:
    out = res(deployments=None)
    assert (out.verdict, code(out), out.actions) == (d.WAIT, d.NOT_OBSERVED, ())


def test_valid_template_is_deployed_with_the_old_parameters() -> None:
    tc = check(changes=(Change("/x/storage", "Create"), Change("/x/lb", "Modify"),
                        Change("/x/lb2", "Create")))
    out = res(tc=tc)
    assert (out.verdict, code(out)) == (d.PROCEED, d.DEPLOYING)
    (action,) = out.actions
    assert action.kind == d.DEPLOY_TEMPLATE
    assert action.params["deployment"] == NAME and action.params["mode"] == "Incremental"
    assert action.params["templateDigest"] == TEMPLATE.digest
    assert action.params["parameters"] == {
        "channel": "stable",
        "swarmVersion": "17.06.1-ce-azure1",
        "diagnosticsStoragePrefix": "mydiag",  # renamed from storageAccountPrefix
    }
    assert "what-if: 2 Create, 1 Modify" in out.reasons[0].message
    assert (out.record.item, out.record.since) == (NAME, NOW)


def test_template_check_pending_waits_for_this_template() -> None:
    for tc in (None, check(digest="other"), dataclasses.replace(check(), deployment="x")):
        out = res(tc=tc)
        assert (out.verdict, code(out), out.actions) == (d.WAIT, d.TEMPLATE_CHECK_PENDING, ())


def test_arm_refusing_the_template_refuses_the_rollout() -> None:
    out = res(tc=check(False, code="InvalidTemplate", message="bad expression"))
    assert (out.verdict, code(out)) == (d.REFUSED, d.INVALID_TEMPLATE)
    assert out.reasons[0].severity == d.WARNING and not out.actions
    assert "InvalidTemplate: bad expression" in out.reasons[0].message


def test_a_parameter_without_value_refuses_before_asking_arm() -> None:
    need = dataclasses.replace(TEMPLATE, body={**TEMPLATE.body, "parameters": {
        **TEMPLATE.body["parameters"], "adminKey": {"type": "securestring"}}})
    out = res(tc=check(), release=dataclasses.replace(RELEASE, template=need))
    assert (out.verdict, code(out)) == (d.REFUSED, d.INVALID_TEMPLATE)
    assert "'adminKey' has no defaultValue" in out.reasons[0].message


def test_a_recent_request_is_not_sent_twice_but_a_lost_one_is() -> None:
    rec = PhaseRecord(started_at=NOW - 100, item=NAME, target=TEMPLATE.digest, since=NOW - 5)
    out = res(tc=check(), record=rec)
    assert (out.verdict, code(out), out.actions) == (d.WAIT, d.DEPLOYING, ())
    lost = dataclasses.replace(rec, since=NOW - phases.REISSUE_AFTER - 1)
    assert res(tc=check(), record=lost).verdict == d.PROCEED


def test_running_deployment_waits_then_times_out() -> None:
    running = Deployment(NAME, "Running", NOW - 10)
    out = res((OLD, running))
    assert (out.verdict, code(out)) == (d.WAIT, d.DEPLOYING) and out.record.item == NAME
    rec = PhaseRecord(NOW - 700, NAME, TEMPLATE.digest, NOW - 601)
    out = res((OLD, running), record=rec)
    assert (out.verdict, code(out)) == (d.HALTED, d.DEPLOYMENT_TIMEOUT)


def test_succeeded_deployment_finishes_the_phase() -> None:
    out = res((OLD, Deployment(NAME, "Succeeded", NOW - 10)))
    assert (out.verdict, code(out)) == (d.DONE, d.PHASE_COMPLETED) and out.record.finished


def test_our_failed_deployment_halts_with_arm_error() -> None:
    failed = Deployment(NAME, "Failed", NOW - 2, error_code="Conflict", error_message="busy")
    rec = PhaseRecord(NOW - 60, NAME, TEMPLATE.digest, NOW - 30)
    out = res((OLD, failed), check(), rec)
    assert (out.verdict, code(out)) == (d.HALTED, d.DEPLOYMENT_FAILED)
    assert "Conflict: busy" in out.reasons[0].message
    assert out.record.item == "", "a resume deploys again"


def test_a_failure_older_than_our_request_or_not_ours_is_deployed_again() -> None:
    failed = Deployment(NAME, "Failed", NOW - 100)
    stale = PhaseRecord(NOW - 60, NAME, TEMPLATE.digest, NOW - 30)
    assert res((OLD, failed), check(), stale).verdict == d.PROCEED
    assert res((OLD, failed), check(), None).verdict == d.PROCEED


def test_last_deployment_is_the_newest_succeeded_other_one() -> None:
    newer = Deployment("later", "Succeeded", 200.0, MappingProxyType({"a": 1}))
    failed = Deployment("broken", "Failed", 300.0)
    ours = Deployment(NAME, "Succeeded", 400.0)
    assert phases.last_deployment((OLD, newer, failed, ours), NAME) == newer
    assert phases.last_deployment((), NAME) is None


# ---- services ----

SVC_RELEASE = dataclasses.replace(
    RELEASE, system_services=MappingProxyType({"meta": "local/meta:2", "guide": "local/guide:2"})
)
LABELS = {phases.SYSTEM_LABEL: "true"}


def svc(name: str, image: str, **kw: Any) -> Service:
    labels = {**LABELS, phases.SYSTEM_NAME_LABEL: name}
    return Service(f"id-{name}", f"d4a-{name}", image, MappingProxyType(labels), **kw)


def srv(*services: Service, record: PhaseRecord | None = None,
        release: Release = SVC_RELEASE) -> phases.PhaseOutcome:
    return services_phase(release, Observed(None, None, services), record, STRATEGY, NOW)


def test_no_system_services_declared_is_done() -> None:
    out = srv(release=dataclasses.replace(RELEASE, system_services=MappingProxyType({})))
    assert (out.verdict, code(out)) == (d.DONE, d.PHASE_COMPLETED)


def test_services_not_observed_waits() -> None:
    out = services_phase(SVC_RELEASE, Observed(), None, STRATEGY, NOW)
    assert (out.verdict, code(out)) == (d.WAIT, d.NOT_OBSERVED)


def test_one_service_at_a_time_in_catalog_order_with_a_safe_update_config() -> None:
    out = srv(svc("guide", "local/guide:1"), svc("meta", "local/meta:1"))
    assert (out.verdict, code(out)) == (d.PROCEED, d.SERVICE_UPDATING)
    (action,) = out.actions
    assert action.kind == d.UPDATE_SERVICE
    assert action.params["service"] == "d4a-meta" and action.params["image"] == "local/meta:2"
    config = action.params["updateConfig"]
    assert config["parallelism"] == 1 and config["failureAction"] == "rollback"
    assert config["monitor"] > 0
    assert (out.record.item, out.record.target) == ("d4a-meta", "local/meta:2")


def test_unlabelled_services_are_not_platform_services() -> None:
    plain = Service("id-x", "meta", "local/meta:1")
    out = srv(plain)
    assert out.verdict == d.DONE and "2 not deployed in this swarm" in out.reasons[0].message


def test_updating_service_waits_and_a_converged_one_moves_on() -> None:
    rec = PhaseRecord(NOW - 30, "d4a-meta", "local/meta:2", NOW - 20)
    updating = svc("meta", "local/meta:2", update_state="updating", update_started_at=NOW - 19)
    out = srv(updating, svc("guide", "local/guide:1"), record=rec)
    assert (out.verdict, code(out), out.actions) == (d.WAIT, d.SERVICE_UPDATING, ())
    short = svc("meta", "local/meta:2", update_state="completed", running_tasks=1,
                desired_tasks=3)
    assert srv(short, record=rec).verdict == d.WAIT
    done = svc("meta", "local/meta:2@sha256:abc", update_state="completed", running_tasks=3,
               desired_tasks=3)
    out = srv(done, svc("guide", "local/guide:1"), record=rec)
    assert out.actions[0].params["service"] == "d4a-guide"
    assert out.record.done == ("d4a-meta",)


def test_rolled_back_update_halts() -> None:
    rec = PhaseRecord(NOW - 30, "d4a-meta", "local/meta:2", NOW - 20)
    back = svc("meta", "local/meta:1", update_state="rollback_completed",
               update_message="update rolled back due to failure", update_started_at=NOW - 19)
    out = srv(back, record=rec)
    assert (out.verdict, code(out)) == (d.HALTED, d.SERVICE_ROLLED_BACK)
    assert out.reasons[0].severity == d.WARNING
    assert "update rolled back due to failure" in out.reasons[0].message
    assert out.record.item == ""


def test_a_rollback_older_than_our_request_is_not_ours() -> None:
    rec = PhaseRecord(NOW - 60, "d4a-meta", "local/meta:2", NOW - 30)
    old = svc("meta", "local/meta:1", update_state="rollback_completed",
              update_started_at=NOW - 500)
    out = srv(old, record=rec)
    assert out.verdict == d.PROCEED and out.actions[0].kind == d.UPDATE_SERVICE


def test_paused_update_halts() -> None:
    rec = PhaseRecord(NOW - 30, "d4a-meta", "local/meta:2", NOW - 20)
    paused = svc("meta", "local/meta:2", update_state="paused", update_started_at=NOW - 19)
    out = srv(paused, record=rec)
    assert (out.verdict, code(out)) == (d.HALTED, d.SERVICE_UPDATE_PAUSED)


def test_service_that_never_converges_times_out() -> None:
    rec = PhaseRecord(NOW - 700, "d4a-meta", "local/meta:2", NOW - 601)
    stuck = svc("meta", "local/meta:2", update_state="updating", update_started_at=NOW - 600)
    out = srv(stuck, record=rec)
    assert (out.verdict, code(out)) == (d.HALTED, d.SERVICE_TIMEOUT)


def test_recent_service_request_is_not_repeated() -> None:
    rec = PhaseRecord(NOW - 30, "d4a-meta", "local/meta:2", NOW - 3)
    out = srv(svc("meta", "local/meta:1"), record=rec)
    assert (out.verdict, out.actions) == (d.WAIT, ())


def test_every_service_on_target_is_done() -> None:
    out = srv(svc("meta", "local/meta:2"), svc("guide", "local/guide:2"))
    assert (out.verdict, code(out)) == (d.DONE, d.PHASE_COMPLETED)
    assert out.record.finished and set(out.record.done) == {"d4a-meta", "d4a-guide"}
