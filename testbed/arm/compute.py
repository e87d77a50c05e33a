"""Microsoft.Compute virtual machine scale sets: the scale-set routes and the shared registry.

Routes (paths under ``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute``):

- ``GET virtualMachineScaleSets`` (list), ``GET|PUT|PATCH|DELETE virtualMachineScaleSets/{name}``,
  ``GET virtualMachineScaleSets/{name}/instanceView`` (status counts);
  PUT creates (201 + LRO booting the instances) or updates; PATCH answers 200 (a capacity change
  adds an Azure-AsyncOperation header and boots/deletes instances in the background);
- ``POST virtualMachineScaleSets/{name}/manualupgrade|reimage|restart|poweroff|start|delete``
  with ``{"instanceIds": [...]}`` (all instances when omitted, except manualupgrade and delete).

A model image change marks every instance on another image ``latestModelApplied=false``. The
VM routes live in vms.py and use `ComputeProvider.accept` for their operations too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from testbed.arm.actions import InstanceActions
from testbed.arm.faults import Faults
from testbed.arm.operations import Operations
from testbed.arm.routing import (
    RESOURCE_GROUP,
    ArmError,
    ArmRequest,
    ArmRoute,
    Handler,
    json_response,
)
from testbed.arm.state import (
    Context,
    Instance,
    ScaleSet,
    normalize_image,
    render_scale_set,
    render_scale_set_instance_view,
)
from testbed.driver import InstanceDriver

VMSS_PATH = RESOURCE_GROUP + "/providers/Microsoft.Compute/virtualMachineScaleSets"
VMSS_ACTION = "Microsoft.Compute/virtualMachineScaleSets"
UPGRADE_MODES = ("Manual", "Automatic", "Rolling")


def _dig(body: object, *keys: str) -> Any:
    """body[k1][k2]... or None when any level is missing or not an object."""
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


class ComputeProvider:
    """The scale sets of one resource group and the operations on them."""

    def __init__(self, ctx: Context, driver: InstanceDriver, faults: Faults,
                 operations: Operations, *, boot_timeout: float = 600.0,
                 page_size: int = 100) -> None:
        self.ctx = ctx
        self.driver = driver
        self.faults = faults
        self.operations = operations
        self.actions = InstanceActions(driver, faults, boot_timeout)
        self.page_size = page_size
        self.scale_sets: dict[str, ScaleSet] = {}

    # -- registry -----------------------------------------------------------------------------

    def add(self, ss: ScaleSet) -> ScaleSet:
        """Register a scale set (names are case-insensitive, as in ARM)."""
        self.scale_sets[ss.name.lower()] = ss
        return ss

    def check_group(self, arm: ArmRequest) -> None:
        """ARM's 404 unless the request names this provider's resource group."""
        if arm.param("resourceGroupName").lower() != self.ctx.resource_group.lower():
            raise ArmError(404, "ResourceGroupNotFound",
                           f"Resource group '{arm.param('resourceGroupName')}' could not be found.")

    def scale_set(self, arm: ArmRequest, param: str = "vmScaleSetName") -> ScaleSet:
        """The scale set a request names, or ARM's 404."""
        self.check_group(arm)
        name = arm.param(param)
        ss = self.scale_sets.get(name.lower())
        if ss is None:
            raise ArmError(404, "ResourceNotFound",
                           f"The Resource '{VMSS_ACTION}/{name}' under resource group "
                           f"'{self.ctx.resource_group}' was not found.")
        return ss

    @staticmethod
    def instance(ss: ScaleSet, instance_id: str) -> Instance:
        """An instance of `ss`, or ARM's 404."""
        instance = ss.instances.get(instance_id)
        if instance is None:
            raise ArmError(404, "NotFound",
                           f"The entity was not found in this Azure location: instance "
                           f"'{instance_id}' of scale set '{ss.name}'.")
        return instance

    def accept(self, arm: ArmRequest, kind: str, ss: ScaleSet,
               instances: list[Instance]) -> web.Response:
        """Start `kind` on `instances` as one LRO; 409 if one is busy; 202 with poll headers."""
        for instance in instances:
            if instance.busy:
                raise ArmError(409, "OperationNotAllowed",
                               f"Operation '{arm.operation}' is not allowed on instance "
                               f"'{instance.instance_id}' of '{ss.name}' while "
                               f"'{instance.busy}' is in progress.")
        for instance in instances:
            self.actions.mark_pending(arm.operation, kind, instance)
        work = self.actions.run_many(arm.operation, kind, ss, instances)
        operation = self.operations.start(arm.operation, work)
        operation.targets = [f"{ss.name}/{i.instance_id}" for i in instances]
        return self.operations.accepted(arm.request, operation)

    def selected(self, ss: ScaleSet, body: object, *, required: bool) -> list[Instance]:
        """The instances named by ``instanceIds`` (every instance if absent and not required)."""
        ids = _dig(body, "instanceIds")
        if ids is None or ids == []:
            if required:
                raise ArmError(400, "InvalidParameter",
                               "Required parameter 'instanceIds' is missing (null).")
            return list(ss.instances.values())
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ArmError(400, "InvalidParameter",
                           f"instanceIds must be a list of strings: {ids!r}")
        for iid in ids:
            if iid not in ss.instances:
                raise ArmError(400, "InvalidParameter",
                               f"The provided instanceId {iid} is not an active Virtual Machine "
                               f"Scale Set VM instanceId.")
        return [ss.instances[iid] for iid in dict.fromkeys(ids)]

    # -- routes -------------------------------------------------------------------------------

    def routes(self) -> list[ArmRoute]:
        """The scale-set routes (the VM routes come from vms.py)."""
        one = VMSS_PATH + "/{vmScaleSetName}"
        a = VMSS_ACTION
        routes = [
            ArmRoute("GET", VMSS_PATH, "VirtualMachineScaleSets_List", f"{a}/read", self.list),
            ArmRoute("GET", one, "VirtualMachineScaleSets_Get", f"{a}/read", self.get),
            ArmRoute("PUT", one, "VirtualMachineScaleSets_CreateOrUpdate", f"{a}/write", self.put),
            ArmRoute("PATCH", one, "VirtualMachineScaleSets_Update", f"{a}/write", self.patch),
            ArmRoute("DELETE", one, "VirtualMachineScaleSets_Delete", f"{a}/delete", self.delete),
            ArmRoute("GET", f"{one}/instanceView", "VirtualMachineScaleSets_GetInstanceView",
                     f"{a}/instanceView/read", self.instance_view),
        ]
        for suffix, name, action, kind, required in (
            ("manualupgrade", "UpdateInstances", "manualUpgrade/action", "upgrade", True),
            ("reimage", "Reimage", "reimage/action", "reimage", False),
            ("restart", "Restart", "restart/action", "restart", False),
            ("poweroff", "PowerOff", "powerOff/action", "powerOff", False),
            ("start", "Start", "start/action", "start", False),
            ("delete", "DeleteInstances", "delete/action", "delete", True),
        ):
            routes.append(ArmRoute("POST", f"{one}/{suffix}", f"VirtualMachineScaleSets_{name}",
                                   f"{a}/{action}", self._instances_op(kind, required)))
        return routes

    async def list(self, arm: ArmRequest) -> web.StreamResponse:
        """All scale sets of the resource group (one page)."""
        self.check_group(arm)
        return json_response({"value": [render_scale_set(ss, self.ctx)
                                        for ss in self.scale_sets.values()]})

    async def get(self, arm: ArmRequest) -> web.StreamResponse:
        """One scale set."""
        return json_response(render_scale_set(self.scale_set(arm), self.ctx))

    async def instance_view(self, arm: ArmRequest) -> web.StreamResponse:
        """Status counts over the scale set's instances."""
        ss = self.scale_set(arm)
        power = {iid: self.driver.power_state(ss.name, iid) for iid in ss.instances}
        return json_response(render_scale_set_instance_view(ss, power))

    async def put(self, arm: ArmRequest) -> web.StreamResponse:
        """Create (201 + LRO booting `sku.capacity` instances) or update the model (200)."""
        self.check_group(arm)
        name = arm.param("vmScaleSetName")
        existing = self.scale_sets.get(name.lower())
        if existing is not None:
            return self._update(arm, existing, arm.body, status=200)
        body = arm.body if isinstance(arm.body, dict) else {}
        reference = _dig(body, "properties", "virtualMachineProfile", "storageProfile",
                         "imageReference")
        if not isinstance(reference, dict) or not normalize_image(reference):
            raise ArmError(400, "InvalidParameter", "Required parameter 'properties."
                           "virtualMachineProfile.storageProfile.imageReference' is missing.")
        tags = body.get("tags") or {}
        prefix = _dig(body, "properties", "virtualMachineProfile", "osProfile",
                      "computerNamePrefix") or name
        role = str(tags.get("role") or ("manager" if "manager" in name.lower() else "worker"))
        ss = ScaleSet(name=name, role=role, tags=dict(tags), image=normalize_image(reference),
                      computer_name_prefix=str(prefix),
                      upgrade_mode=self._upgrade_mode(body) or "Manual",
                      sku_name=str(_dig(body, "sku", "name") or "Standard_D2s_v3"))
        self.add(ss)
        capacity = self._capacity(body)
        return self._resize(arm, ss, 0 if capacity is None else capacity, status=201)

    async def patch(self, arm: ArmRequest) -> web.StreamResponse:
        """Update the model: tags, image, upgrade policy, capacity. Always 200."""
        return self._update(arm, self.scale_set(arm), arm.body, status=200)

    async def delete(self, arm: ArmRequest) -> web.StreamResponse:
        """Delete every instance, then the scale set (LRO)."""
        ss = self.scale_set(arm)
        ss.provisioning_state = "Deleting"

        async def work() -> None:
            await self.actions.run_many(arm.operation, "delete", ss, list(ss.instances.values()))
            self.scale_sets.pop(ss.name.lower(), None)

        for instance in ss.instances.values():
            self.actions.mark_pending(arm.operation, "delete", instance)
        return self.operations.accepted(arm.request, self.operations.start(arm.operation, work()))

    def _instances_op(self, kind: str, required: bool) -> Handler:
        async def handler(arm: ArmRequest) -> web.StreamResponse:
            ss = self.scale_set(arm)
            return self.accept(arm, kind, ss, self.selected(ss, arm.body, required=required))

        handler.__doc__ = f"VMSS-level {kind} of the instances in the body."
        return handler

    # -- model changes ------------------------------------------------------------------------

    @staticmethod
    def _upgrade_mode(body: object) -> str | None:
        mode = _dig(body, "properties", "upgradePolicy", "mode")
        if mode is None:
            return None
        if mode not in UPGRADE_MODES:
            raise ArmError(400, "InvalidParameter",
                           f"properties.upgradePolicy.mode: '{mode}' is not one of "
                           f"{', '.join(UPGRADE_MODES)}.")
        return str(mode)

    @staticmethod
    def _capacity(body: object) -> int | None:
        capacity = _dig(body, "sku", "capacity")
        if capacity is None:
            return None
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ArmError(400, "InvalidParameter", f"sku.capacity: invalid value {capacity!r}.")
        return capacity

    def _update(self, arm: ArmRequest, ss: ScaleSet, body: object, *, status: int
                ) -> web.Response:
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request body must be a JSON object.")
        mode = self._upgrade_mode(body)
        capacity = self._capacity(body)
        reference = _dig(body, "properties", "virtualMachineProfile", "storageProfile",
                         "imageReference")
        if reference is not None and not isinstance(reference, dict):
            raise ArmError(400, "InvalidParameter", "imageReference must be an object.")
        tags = body.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise ArmError(400, "InvalidParameter", f"tags: not an object: {tags!r}.")
        # Validated: apply.
        if mode is not None:
            ss.upgrade_mode = mode
        if tags is not None:
            ss.tags = {str(k): str(v) for k, v in tags.items()}
        if reference:
            ss.set_model_image({**ss.image, **normalize_image(reference)})
        if capacity is None or capacity == len(ss.instances):
            return json_response(render_scale_set(ss, self.ctx), status=status)
        return self._resize(arm, ss, capacity, status=status)

    def _resize(self, arm: ArmRequest, ss: ScaleSet, capacity: int, *, status: int
                ) -> web.Response:
        """Boot new instances or delete the highest ids to reach `capacity` (one LRO)."""
        current = sorted(ss.instances.values(), key=lambda i: int(i.instance_id))
        if capacity > len(current):
            kind, targets = "boot", [ss.new_instance() for _ in range(capacity - len(current))]
        else:
            kind, targets = "delete", current[capacity:]
        for instance in targets:
            if instance.busy:
                raise ArmError(409, "OperationNotAllowed",
                               f"Instance '{instance.instance_id}' is busy with {instance.busy}.")
        for instance in targets:
            self.actions.mark_pending(arm.operation, kind, instance)
        ss.provisioning_state = "Creating" if status == 201 else "Updating"

        async def work() -> None:
            try:
                await self.actions.run_many(arm.operation, kind, ss, targets)
            except BaseException:
                ss.provisioning_state = "Failed"
                raise
            ss.provisioning_state = "Succeeded"

        operation = self.operations.start(arm.operation, work())
        response = self.operations.accepted(arm.request, operation,
                                            body=render_scale_set(ss, self.ctx))
        response.set_status(status)
        return response
