"""What the planner answers: a verdict, the reasons for it, the rollout order, the next actions.

Pure values shared by the planner, the runtime (which executes `actions` in list order, after
persisting `progress`) and the CLI. Reason codes are constants here so every consumer (events,
metrics, tests) spells them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from controller.progress import Progress

# ---- verdicts ----
PROCEED = "proceed"  # run `actions` (after persisting `progress`), then requeue
WAIT = "wait"  # nothing to do now; look again after `requeue_after`
DONE = "done"  # every node runs the target
REFUSED = "refused"  # the declaration cannot be applied to this cluster; nothing is touched
HALTED = "halted"  # a node failed; nothing more is touched until resumed
VERDICTS = (PROCEED, WAIT, DONE, REFUSED, HALTED)

# ---- severities ----
NORMAL = "Normal"
WARNING = "Warning"

# ---- reason codes: refused ----
INVALID_SPEC = "InvalidSpec"
UNKNOWN_VERSION = "UnknownVersion"
UNKNOWN_IMAGE = "UnknownImage"
CROSS_CHANNEL = "CrossChannel"
VERSION_SKIP = "VersionSkip"
DOWNGRADE = "Downgrade"  # refused, or a Warning when allowDowngrade is set
TOO_FEW_MANAGERS = "TooFewManagers"
DOWN_NODES = "DownNodes"  # refused, or Normal while removeDownNodes removes them
UNMATCHED_NODE = "UnmatchedNode"
# ---- reason codes: wait ----
MANAGER_UNREACHABLE = "ManagerUnreachable"
MANAGER_SETTLE = "ManagerSettle"  # confirming the other managers stay healthy before a demote
SERVICES_RECOVERING = "ServicesRecovering"  # a service's tasks are not all running: no new node
PAUSED = "Paused"
NODE_IN_TRANSITION = "NodeInTransition"
PAUSE_BETWEEN_NODES = "PauseBetweenNodes"
TARGET_CHANGED = "TargetChanged"
# ---- reason codes: halted ----
NODE_TIMEOUT = "NodeTimeout"
NODE_LOST = "NodeLost"
# ---- reason codes of the resources and services phases (controller/phases.py) ----
INVALID_TEMPLATE = "InvalidTemplate"  # refused: the release's template or its parameters
NOT_OBSERVED = "NotObserved"  # wait: deployments/services/template check not in the snapshot
TEMPLATE_CHECK_PENDING = "TemplateCheckPending"  # wait: ARM has not validated this template yet
DEPLOYING = "Deploying"  # proceed/wait: the release's deployment is started / running
DEPLOYMENT_FAILED = "DeploymentFailed"  # halted
DEPLOYMENT_TIMEOUT = "DeploymentTimeout"  # halted
SERVICE_UPDATING = "ServiceUpdating"  # proceed/wait: a platform service is being updated
SERVICE_ROLLED_BACK = "ServiceRolledBack"  # halted: swarm rolled the update back
SERVICE_UPDATE_PAUSED = "ServiceUpdatePaused"  # halted: swarm paused the update
SERVICE_TIMEOUT = "ServiceTimeout"  # halted: the update did not converge in time
PHASE_COMPLETED = "PhaseCompleted"  # Normal: a phase finished this pass
# ---- reason codes: proceed / done ----
UPGRADING = "Upgrading"
HANDOVER = "Handover"
RESUMED = "Resumed"
UP_TO_DATE = "UpToDate"

# ---- action kinds (docs/architecture.md, "Decision and actions") ----
REMOVE_DOWN_NODE = "remove_down_node"
DRAIN = "drain"
DEMOTE = "demote"
SET_MODEL_IMAGE = "set_model_image"
REIMAGE = "reimage"
REMOVE_NODE = "remove_node"
SET_AVAILABILITY = "set_availability"
HANDOVER_LEASE = "handover_lease"
DEPLOY_TEMPLATE = "deploy_template"
UPDATE_SERVICE = "update_service"
ACTION_KINDS = (
    REMOVE_DOWN_NODE,
    DRAIN,
    DEMOTE,
    SET_MODEL_IMAGE,
    REIMAGE,
    REMOVE_NODE,
    SET_AVAILABILITY,
    HANDOVER_LEASE,
    DEPLOY_TEMPLATE,
    UPDATE_SERVICE,
)


@dataclass(frozen=True)
class Reason:
    """Why the planner decided what it did; `message` is one line for people."""

    code: str
    message: str
    severity: str = NORMAL

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "severity": self.severity}


def _empty_params() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Action:
    """One idempotent step for the runtime. `node` is the hostname it concerns (if any).

    `params`: `set_model_image` → {"image": {publisher, offer, sku, version}};
    `set_availability` → {"availability": "active"|"pause"|"drain"};
    `deploy_template` → {"deployment", "channel", "version", "templateDigest", "mode",
    "parameters"} (the template itself is the catalog release's);
    `update_service` → {"serviceId", "service", "image", "updateConfig"}.
    """

    kind: str
    node: str = ""
    scale_set: str = ""
    instance_id: str = ""
    node_id: str = ""
    params: Mapping[str, Any] = field(default_factory=_empty_params)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "action": self.kind,
            "node": self.node,
            "scaleSet": self.scale_set,
            "instanceId": self.instance_id,
            "nodeId": self.node_id,
        }
        if self.params:
            d["params"] = dict(self.params)
        return d


@dataclass(frozen=True)
class Decision:
    """The planner's answer for one reconcile pass. `reasons` is never empty."""

    verdict: str
    reasons: tuple[Reason, ...]
    order: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    progress: Progress | None = None
    requeue_after: float = 60.0

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict: {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        if not self.reasons:
            raise ValueError("reasons: a decision needs at least one reason")
        for a in self.actions:
            if a.kind not in ACTION_KINDS:
                raise ValueError(f"actions: {a.kind!r} is not one of {', '.join(ACTION_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": [r.to_dict() for r in self.reasons],
            "order": list(self.order),
            "next": [a.to_dict() for a in self.actions],
            "requeueAfter": self.requeue_after,
        }
