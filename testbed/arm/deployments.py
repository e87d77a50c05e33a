"""Microsoft.Resources deployments of the testbed's resource group.

Routes (under ``/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.Resources``):

- ``PUT deployments/{name}``: validates the template (templates.py; a broken one answers 400
  ``InvalidTemplate``), answers 201 with the deployment ``Accepted`` and an
  ``Azure-AsyncOperation`` header, then runs it in the background: ``Running``, every resource
  recorded in `resources` (a ``Microsoft.Resources/tags`` resource scoped to a scale set replaces
  that scale set's tags), ``Succeeded`` (or ``Failed`` for a `faults.fail_lro` on
  ``Deployments_CreateOrUpdate``); a second PUT while it runs answers 409 ``DeploymentActive``;
- ``GET deployments/{name}``, ``GET deployments`` (list);
- ``POST deployments/{name}/validate``: 200 with the validated resources, or 400
  ``InvalidTemplate``;
- ``POST deployments/{name}/whatIf``: 202 + ``Location``; the result lists each resource as
  ``Create``, ``Modify``, ``NoChange`` (and ``Ignore``/``Delete`` for recorded resources the
  template leaves out, by mode);
- ``GET deployments/{name}/operationStatuses/{id}`` and ``.../operationResults/{id}``.

Bodies follow azure-mgmt-resource-deployments' models (tests/arm/test_arm_deployments.py checks).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testbed.arm.faults import Faults
from testbed.arm.operations import Operation, OperationFailed, Operations
from testbed.arm.routing import (
    RESOURCE_GROUP,
    ArmError,
    ArmRequest,
    ArmRoute,
    arm_error,
    json_response,
)
from testbed.arm.state import Context, ScaleSet, now_iso
from testbed.arm.templates import Scope, TemplateInvalid, evaluate, resource_id

DEPLOYMENTS = RESOURCE_GROUP + "/providers/Microsoft.Resources/deployments"
ACTION = "Microsoft.Resources/deployments"
OPERATION = "Deployments_CreateOrUpdate"
MODES = ("Incremental", "Complete")
TERMINAL = ("Succeeded", "Failed", "Canceled")


@dataclass
class Deployment:
    """One deployment as ARM keeps it."""

    name: str
    template: dict[str, Any]
    parameters: dict[str, Any]  # {name: {"value": v}} as sent
    mode: str
    state: str = "Accepted"
    timestamp: str = field(default_factory=now_iso)
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    outputs: dict[str, Any] = field(default_factory=dict)
    output_resources: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None
    types: dict[str, str] = field(default_factory=dict)  # declared parameter types

    @property
    def template_hash(self) -> str:
        text = json.dumps(self.template, sort_keys=True, separators=(",", ":"))
        return str(int(hashlib.sha256(text.encode()).hexdigest()[:15], 16))


class DeploymentsProvider:
    """The deployments of one resource group and the resources they "created"."""

    def __init__(self, ctx: Context, operations: Operations, faults: Faults, *,
                 scale_sets: Mapping[str, ScaleSet] | None = None,
                 allows: Callable[[str], bool] | None = None, seconds: float = 0.3) -> None:
        self.ctx = ctx
        self.scope = Scope(ctx.subscription_id, ctx.resource_group, ctx.location)
        self.operations = operations
        self.faults = faults
        self.scale_sets = scale_sets if scale_sets is not None else {}
        self.allows = allows or (lambda action: True)  # the caller's role (server.rbac)
        self.seconds = seconds  # how long a deployment runs
        self.deployments: dict[str, Deployment] = {}
        self.resources: dict[str, dict[str, Any]] = {}  # lower-case id → recorded resource
        self._ops: dict[str, tuple[Operation, Deployment, dict[str, Any] | None]] = {}

    def routes(self) -> list[ArmRoute]:
        one = DEPLOYMENTS + "/{deploymentName}"
        return [
            ArmRoute("GET", DEPLOYMENTS, "Deployments_ListByResourceGroup",
                     f"{ACTION}/read", self.list),
            ArmRoute("PUT", one, OPERATION, f"{ACTION}/write", self.create),
            ArmRoute("GET", one, "Deployments_Get", f"{ACTION}/read", self.get),
            ArmRoute("POST", one + "/validate", "Deployments_Validate",
                     f"{ACTION}/validate/action", self.validate),
            ArmRoute("POST", one + "/whatIf", "Deployments_WhatIf",
                     f"{ACTION}/whatIf/action", self.what_if),
            ArmRoute("GET", one + "/operationStatuses/{operationId}",
                     "Deployments_OperationStatus", f"{ACTION}/operationstatuses/read",
                     self.status),
            ArmRoute("GET", one + "/operationResults/{operationId}",
                     "Deployments_OperationResult", f"{ACTION}/operationstatuses/read",
                     self.result),
        ]

    # -- helpers ------------------------------------------------------------------------------

    def _check_group(self, arm: ArmRequest) -> None:
        if arm.param("resourceGroupName").lower() != self.ctx.resource_group.lower():
            raise ArmError(404, "ResourceGroupNotFound",
                           f"Resource group '{arm.param('resourceGroupName')}' could not be "
                           "found.")

    def _request(self, arm: ArmRequest) -> tuple[dict[str, Any], dict[str, Any], str]:
        props = arm.body.get("properties") if isinstance(arm.body, dict) else None
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidRequestContent",
                           "The request content must have a 'properties' object.")
        template = props.get("template")
        if not isinstance(template, dict):
            raise ArmError(400, "InvalidTemplate",
                           "The deployment needs an inline 'template' (templateLink is not "
                           "served by the testbed).")
        parameters = props.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ArmError(400, "InvalidRequestContent", "'parameters' must be an object.")
        mode = props.get("mode", "Incremental")
        if mode not in MODES:
            raise ArmError(400, "InvalidDeploymentMode",
                           f"The deployment mode '{mode}' is not one of {', '.join(MODES)}.")
        return template, parameters, mode

    def _evaluate(self, template: dict[str, Any], parameters: dict[str, Any]
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            resources, outputs = evaluate(template, parameters, self.scope)
        except TemplateInvalid as err:
            raise ArmError(400, "InvalidTemplate", err.message) from None
        self._authorize(resources)
        return resources, outputs

    def _authorize(self, resources: list[dict[str, Any]]) -> None:
        """ARM checks the caller may write every resource a deployment would write."""
        for resource in resources:
            action = f"{resource['type']}/write"
            if not self.allows(action):
                raise ArmError(403, "LinkedAuthorizationFailed",
                               f"The client has permission to perform action "
                               f"'Microsoft.Resources/deployments/write' but does not have "
                               f"permission to perform action '{action}' on the linked scope "
                               f"'{resource_id(resource, self.scope)}'.")

    def _id(self, name: str) -> str:
        return f"{self.scope.group_id}/providers/Microsoft.Resources/deployments/{name}"

    def render(self, dep: Deployment) -> dict[str, Any]:
        """The DeploymentExtended body."""
        values = {}
        for key, entry in dep.parameters.items():
            kind = dep.types.get(key, "String")
            value = entry.get("value") if isinstance(entry, dict) else None
            values[key] = ({"type": kind} if kind.lower().startswith("secure")
                           else {"type": kind, "value": value})
        props: dict[str, Any] = {
            "provisioningState": dep.state,
            "correlationId": dep.correlation_id,
            "timestamp": dep.timestamp,
            "duration": "PT1S",
            "mode": dep.mode,
            "templateHash": dep.template_hash,
            "parameters": values,
            "outputs": dep.outputs,
            "outputResources": [{"id": rid} for rid in dep.output_resources],
            "providers": [],
            "dependencies": [],
        }
        if dep.error is not None:
            props["error"] = dict(dep.error)
        return {"id": self._id(dep.name), "name": dep.name,
                "type": "Microsoft.Resources/deployments", "properties": props}

    def _find(self, arm: ArmRequest) -> Deployment:
        self._check_group(arm)
        dep = self.deployments.get(arm.param("deploymentName").lower())
        if dep is None:
            raise ArmError(404, "DeploymentNotFound",
                           f"Deployment '{arm.param('deploymentName')}' could not be found.")
        return dep

    def _status_url(self, arm: ArmRequest, name: str, kind: str, operation: Operation) -> str:
        return (f"{arm.request.scheme}://{arm.request.host}{self._id(name)}/{kind}/"
                f"{operation.id}?api-version={arm.query.get('api-version', '')}")

    # -- handlers -----------------------------------------------------------------------------

    async def list(self, arm: ArmRequest) -> web.Response:
        self._check_group(arm)
        return json_response({"value": [self.render(x) for x in self.deployments.values()]})

    async def get(self, arm: ArmRequest) -> web.Response:
        return json_response(self.render(self._find(arm)))

    async def create(self, arm: ArmRequest) -> web.Response:
        self._check_group(arm)
        name = arm.param("deploymentName")
        running = self.deployments.get(name.lower())
        if running is not None and running.state not in TERMINAL:
            raise ArmError(409, "DeploymentActive",
                           f"The deployment '{name}' is still active ({running.state}).")
        template, parameters, mode = self._request(arm)
        resources, outputs = self._evaluate(template, parameters)
        types = {k: str(v.get("type", "String")) for k, v in
                 (template.get("parameters") or {}).items() if isinstance(v, dict)}
        dep = Deployment(name, template, parameters, mode, types=types)
        self.deployments[name.lower()] = dep
        operation = self.operations.start(OPERATION, self._run(dep, resources, outputs))
        self._ops[operation.id] = (operation, dep, None)
        url = self._status_url(arm, name, "operationStatuses", operation)
        return json_response(self.render(dep), status=201,
                             headers={"Azure-AsyncOperation": url})

    async def _run(self, dep: Deployment, resources: list[dict[str, Any]],
                   outputs: dict[str, Any]) -> None:
        await asyncio.sleep(self.seconds / 2 + self.faults.delay(OPERATION))
        dep.state, dep.timestamp = "Running", now_iso()
        await asyncio.sleep(self.seconds / 2)
        failure = self.faults.take_lro_failure(OPERATION, None, None)
        if failure is not None:
            dep.error = {"code": failure.code,
                         "message": failure.message or f"Deployment '{dep.name}' failed "
                                                       "(injected)."}
            dep.state, dep.timestamp = "Failed", now_iso()
            raise OperationFailed(dep.error["code"], dep.error["message"])
        applied = []
        for resource in resources:
            rid = resource_id(resource, self.scope)
            if str(resource["type"]).lower() == "microsoft.resources/tags":
                tags = (resource.get("properties") or {}).get("tags") or {}
                self._tag(str(resource.get("scope") or ""), tags)
            self.resources[rid.lower()] = {**resource, "id": rid, "deployment": dep.name}
            applied.append(rid)
        if dep.mode == "Complete":
            keep = {r.lower() for r in applied}
            for rid in [r for r in self.resources if r not in keep]:
                del self.resources[rid]
        dep.output_resources, dep.outputs = applied, outputs
        dep.state, dep.timestamp = "Succeeded", now_iso()

    def _tag(self, scope: str, tags: Mapping[str, Any]) -> None:
        marker = "/providers/microsoft.compute/virtualmachinescalesets/"
        if marker in scope.lower():
            ss = self.scale_sets.get(scope.rstrip("/").rsplit("/", 1)[-1].lower())
            if ss is not None:
                ss.tags = {str(k): str(v) for k, v in tags.items()}

    async def validate(self, arm: ArmRequest) -> web.Response:
        self._check_group(arm)
        template, parameters, mode = self._request(arm)
        try:
            resources, _ = evaluate(template, parameters, self.scope)
        except TemplateInvalid as err:
            return json_response({"error": {"code": "InvalidTemplate", "message": err.message}},
                                 status=400)
        self._authorize(resources)
        dep = Deployment(arm.param("deploymentName"), template, parameters, mode,
                         state="Succeeded")
        body = self.render(dep)
        body["properties"]["validatedResources"] = [
            {"id": resource_id(r, self.scope)} for r in resources]
        del body["properties"]["outputResources"]
        return json_response(body)

    async def what_if(self, arm: ArmRequest) -> web.Response:
        self._check_group(arm)
        template, parameters, mode = self._request(arm)
        resources, _ = self._evaluate(template, parameters)
        changes = []
        seen = set()
        for resource in resources:
            rid = resource_id(resource, self.scope)
            seen.add(rid.lower())
            after = {k: v for k, v in resource.items() if k not in ("dependsOn", "apiVersion")}
            before = self.resources.get(rid.lower())
            if before is None:
                changes.append({"resourceId": rid, "changeType": "Create", "after": after})
                continue
            old = {k: v for k, v in before.items() if k in after}
            kind = "NoChange" if old == {**after, "id": rid} or old == after else "Modify"
            changes.append({"resourceId": rid, "changeType": kind, "before": old,
                            "after": after})
        for rid, before in self.resources.items():
            if rid not in seen:
                changes.append({"resourceId": before["id"],
                                "changeType": "Delete" if mode == "Complete" else "Ignore"})
        result = {"status": "Succeeded", "properties": {"changes": changes}}
        operation = self.operations.start("Deployments_WhatIf", asyncio.sleep(self.seconds / 3))
        self._ops[operation.id] = (operation, Deployment(arm.param("deploymentName"), template,
                                                         parameters, mode), result)
        url = self._status_url(arm, arm.param("deploymentName"), "operationResults", operation)
        return web.Response(status=202, headers={"Location": url})

    def _operation(self, arm: ArmRequest) -> tuple[Operation, Deployment, dict[str, Any] | None]:
        self._check_group(arm)
        found = self._ops.get(arm.param("operationId"))
        if found is None:
            raise ArmError(404, "OperationNotFound",
                           f"Operation '{arm.param('operationId')}' could not be found.")
        return found

    async def status(self, arm: ArmRequest) -> web.Response:
        operation, _, _ = self._operation(arm)
        status = "Running" if operation.status == "InProgress" else operation.status
        body: dict[str, Any] = {"status": status}
        if operation.error is not None:
            body["error"] = dict(operation.error)
        return json_response(body)

    async def result(self, arm: ArmRequest) -> web.StreamResponse:
        operation, _, result = self._operation(arm)
        if operation.status == "InProgress":
            return web.Response(status=202, headers={"Location": str(arm.request.url)})
        if operation.status != "Succeeded":
            error = operation.error or {"code": "Failed", "message": "Operation failed."}
            return arm_error(500, error["code"], error["message"])
        return json_response(result if result is not None else {})
