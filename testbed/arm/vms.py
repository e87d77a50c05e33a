"""Microsoft.Compute scale-set VMs: list (paged, filtered, expanded), get, instance view, actions.

Routes under ``.../virtualMachineScaleSets/{name}/virtualMachines``:

- ``GET`` list: pages of `page_size` with a ``nextLink`` that keeps every query parameter
  (api-version, $filter, $expand) and adds ``$skiptoken``; ``$expand=instanceView`` (or
  ``$select=instanceView``) embeds the instance view; ``$filter`` supports
  ``properties/latestModelApplied eq true|false``;
- ``GET {id}`` (``$expand=instanceView`` too) and ``GET {id}/instanceView``;
- ``POST {id}/reimage|restart|powerOff|start`` and ``DELETE {id}`` as long-running operations.
"""

from __future__ import annotations

import re

from aiohttp import web

from testbed.arm.compute import VMSS_ACTION, VMSS_PATH, ComputeProvider
from testbed.arm.routing import ArmError, ArmRequest, ArmRoute, Handler, json_response
from testbed.arm.state import Instance, ScaleSet, render_instance_view, render_vm

VMS_PATH = VMSS_PATH + "/{vmScaleSetName}/virtualMachines"
VM_ACTION = VMSS_ACTION + "/virtualMachines"
_FILTER = re.compile(r"^\s*properties/latestModelApplied\s+eq\s+(true|false)\s*$", re.IGNORECASE)


class VmRoutes:
    """The scale-set VM routes, served from a `ComputeProvider`'s state."""

    def __init__(self, compute: ComputeProvider) -> None:
        self.compute = compute

    def routes(self) -> list[ArmRoute]:
        """List, get, instance view and the instance actions."""
        one = VMS_PATH + "/{instanceId}"
        a = VM_ACTION
        routes = [
            ArmRoute("GET", VMS_PATH, "VirtualMachineScaleSetVMs_List", f"{a}/read", self.list),
            ArmRoute("GET", one, "VirtualMachineScaleSetVMs_Get", f"{a}/read", self.get),
            ArmRoute("GET", f"{one}/instanceView", "VirtualMachineScaleSetVMs_GetInstanceView",
                     f"{a}/instanceView/read", self.instance_view),
            ArmRoute("DELETE", one, "VirtualMachineScaleSetVMs_Delete", f"{a}/delete",
                     self._action("delete")),
        ]
        for suffix, name, kind in (
            ("reimage", "Reimage", "reimage"),
            ("restart", "Restart", "restart"),
            ("powerOff", "PowerOff", "powerOff"),
            ("start", "Start", "start"),
        ):
            routes.append(ArmRoute("POST", f"{one}/{suffix}", f"VirtualMachineScaleSetVMs_{name}",
                                   f"{a}/{suffix}/action", self._action(kind)))
        return routes

    def _vm(self, ss: ScaleSet, instance: Instance, expand: bool) -> dict[str, object]:
        power = (self.compute.driver.power_state(ss.name, instance.instance_id)
                 if expand else None)
        return render_vm(ss, instance, self.compute.ctx, power_state=power)

    @staticmethod
    def _expand(arm: ArmRequest) -> bool:
        expand = arm.query.get("$expand") or arm.query.get("$select") or ""
        if expand and expand.lower() != "instanceview":
            raise ArmError(400, "InvalidParameter",
                           f"$expand/$select: unsupported value '{expand}' (instanceView only).")
        return bool(expand)

    async def list(self, arm: ArmRequest) -> web.StreamResponse:
        """One page of the scale set's VMs, in instance-id order."""
        ss = self.compute.scale_set(arm, "vmScaleSetName")
        expand = self._expand(arm)
        instances = sorted(ss.instances.values(), key=lambda i: int(i.instance_id))
        text = arm.query.get("$filter")
        if text:
            match = _FILTER.match(text)
            if match is None:
                raise ArmError(400, "InvalidParameter",
                               f"$filter: '{text}' is not supported (the testbed supports "
                               "'properties/latestModelApplied eq true|false').")
            wanted = match.group(1).lower() == "true"
            instances = [i for i in instances if i.latest_model_applied == wanted]
        token = arm.query.get("$skiptoken", "0")
        if not token.isdigit():
            raise ArmError(400, "InvalidParameter", f"$skiptoken: invalid value '{token}'.")
        start = int(token)
        size = self.compute.page_size
        page = instances[start:start + size]
        body: dict[str, object] = {"value": [self._vm(ss, i, expand) for i in page]}
        if start + size < len(instances):
            body["nextLink"] = str(arm.request.url.update_query({"$skiptoken": str(start + size)}))
        return json_response(body)

    async def get(self, arm: ArmRequest) -> web.StreamResponse:
        """One VM (with its instance view when expanded)."""
        ss = self.compute.scale_set(arm)
        instance = self.compute.instance(ss, arm.param("instanceId"))
        return json_response(self._vm(ss, instance, self._expand(arm)))

    async def instance_view(self, arm: ArmRequest) -> web.StreamResponse:
        """The VM's instance view: provisioning and power state statuses."""
        ss = self.compute.scale_set(arm)
        instance = self.compute.instance(ss, arm.param("instanceId"))
        power = self.compute.driver.power_state(ss.name, instance.instance_id)
        return json_response(render_instance_view(instance, power))

    def _action(self, kind: str) -> Handler:
        async def handler(arm: ArmRequest) -> web.StreamResponse:
            ss = self.compute.scale_set(arm)
            instance = self.compute.instance(ss, arm.param("instanceId"))
            return self.compute.accept(arm, kind, ss, [instance])

        handler.__doc__ = f"Instance-level {kind} (LRO)."
        return handler
