"""State of the fake Microsoft.Compute scale sets and its JSON form (as api-version 2026-04-01).

A `ScaleSet` holds the model (image, tags, upgrade policy) and its `Instance`s; an instance
records the image it runs, whether it is on the latest model, its provisioning state and whether
an operation is running on it. `render_*` turn them into the bodies the REST spec defines for
VirtualMachineScaleSet, VirtualMachineScaleSetVM and VirtualMachineScaleSetVMInstanceView; the
fidelity test checks every key against the SDK's models.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

IMAGE_KEYS = ("publisher", "offer", "sku", "version")
VMSS_TYPE = "Microsoft.Compute/virtualMachineScaleSets"
VM_TYPE = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"


def now_iso() -> str:
    """Current UTC time as ARM writes it."""
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def normalize_image(reference: Mapping[str, object]) -> dict[str, str]:
    """The marketplace image keys of an imageReference (other keys are ignored)."""
    return {k: str(reference[k]) for k in IMAGE_KEYS if reference.get(k) is not None}


def same_image(a: dict[str, str], b: dict[str, str]) -> bool:
    """Two image references name the same image (publisher, offer, sku, version)."""
    return all(a.get(k) == b.get(k) for k in IMAGE_KEYS)


@dataclass
class Context:
    """Where the resources live: subscription, resource group, location."""

    subscription_id: str
    resource_group: str
    location: str = "westeurope"

    def scale_set_id(self, name: str) -> str:
        """The ARM resource id of scale set `name`."""
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/{VMSS_TYPE}/{name}")


@dataclass
class Instance:
    """One scale-set VM as ARM knows it."""

    instance_id: str
    computer_name: str
    image: dict[str, str]
    latest_model_applied: bool = True
    provisioning_state: str = "Succeeded"
    failure: dict[str, str] | None = None
    busy: str | None = None
    vm_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time_created: str = field(default_factory=now_iso)
    status_time: str = field(default_factory=now_iso)

    def set_state(self, provisioning_state: str, failure: dict[str, str] | None = None) -> None:
        """Change the provisioning state (and the failure it carries)."""
        self.provisioning_state = provisioning_state
        self.failure = failure
        self.status_time = now_iso()


@dataclass
class ScaleSet:
    """A Uniform scale set: its model and its instances."""

    name: str
    role: str
    tags: dict[str, str]
    image: dict[str, str]
    computer_name_prefix: str
    upgrade_mode: str = "Manual"
    sku_name: str = "Standard_D2s_v3"
    provisioning_state: str = "Succeeded"
    unique_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time_created: str = field(default_factory=now_iso)
    instances: dict[str, Instance] = field(default_factory=dict)
    next_id: int = 0

    def new_instance(self, image: dict[str, str] | None = None) -> Instance:
        """Register the next instance id with its computer name (prefix + 6-digit id)."""
        instance_id = str(self.next_id)
        self.next_id += 1
        instance = Instance(instance_id, f"{self.computer_name_prefix}{self.next_id - 1:06d}",
                            dict(image or self.image))
        self.instances[instance_id] = instance
        return instance

    def set_model_image(self, image: dict[str, str]) -> None:
        """Change the model's image; instances on another image fall off the latest model."""
        self.image = dict(image)
        for instance in self.instances.values():
            instance.latest_model_applied = same_image(instance.image, self.image)


def render_scale_set(ss: ScaleSet, ctx: Context) -> dict[str, object]:
    """VirtualMachineScaleSet body."""
    return {
        "id": ctx.scale_set_id(ss.name),
        "name": ss.name,
        "type": VMSS_TYPE,
        "location": ctx.location,
        "tags": dict(ss.tags),
        "sku": {"name": ss.sku_name, "tier": "Standard", "capacity": len(ss.instances)},
        "properties": {
            "singlePlacementGroup": True,
            "orchestrationMode": "Uniform",
            "upgradePolicy": {"mode": ss.upgrade_mode},
            "virtualMachineProfile": {
                "osProfile": {
                    "computerNamePrefix": ss.computer_name_prefix,
                    "adminUsername": "docker",
                    "linuxConfiguration": {"disablePasswordAuthentication": True},
                },
                "storageProfile": {
                    "imageReference": dict(ss.image),
                    "osDisk": {
                        "createOption": "FromImage",
                        "caching": "ReadWrite",
                        "managedDisk": {"storageAccountType": "Standard_LRS"},
                    },
                },
            },
            "provisioningState": ss.provisioning_state,
            "overprovision": False,
            "doNotRunExtensionsOnOverprovisionedVMs": False,
            "uniqueId": ss.unique_id,
            "timeCreated": ss.time_created,
        },
    }


def render_statuses(instance: Instance, power_state: str) -> list[dict[str, str]]:
    """The instance view's statuses: ProvisioningState/... then PowerState/..."""
    state = instance.provisioning_state
    provisioning: dict[str, str] = {
        "code": f"ProvisioningState/{state.lower()}",
        "level": "Info",
        "displayStatus": {"Succeeded": "Provisioning succeeded", "Failed": "Provisioning failed",
                          "Updating": "Updating", "Creating": "Creating",
                          "Deleting": "Deleting"}.get(state, state),
        "time": instance.status_time,
    }
    if state == "Failed" and instance.failure:
        provisioning["code"] += "/" + instance.failure["code"]
        provisioning["level"] = "Error"
        provisioning["message"] = instance.failure["message"]
    power = {
        "code": f"PowerState/{power_state}",
        "level": "Info",
        "displayStatus": f"VM {power_state}",
    }
    return [provisioning, power]


def render_instance_view(instance: Instance, power_state: str) -> dict[str, object]:
    """VirtualMachineScaleSetVMInstanceView body."""
    return {
        "platformUpdateDomain": int(instance.instance_id) % 5,
        "platformFaultDomain": int(instance.instance_id) % 3,
        "computerName": instance.computer_name,
        "osName": "linux",
        "osVersion": instance.image.get("version", ""),
        "statuses": render_statuses(instance, power_state),
    }


def render_scale_set_instance_view(ss: ScaleSet, power: dict[str, str]) -> dict[str, object]:
    """VirtualMachineScaleSetInstanceView body: per-status counts over the instances
    (`power` maps instance id → power state)."""
    counts: dict[str, int] = {}
    for instance in ss.instances.values():
        for status in render_statuses(instance, power.get(instance.instance_id, "unknown")):
            counts[status["code"]] = counts.get(status["code"], 0) + 1
    return {
        "virtualMachine": {"statusesSummary": [{"code": code, "count": count}
                                               for code, count in sorted(counts.items())]},
        "statuses": [{
            "code": f"ProvisioningState/{ss.provisioning_state.lower()}",
            "level": "Info",
            "displayStatus": ss.provisioning_state,
            "time": ss.time_created,
        }],
    }


def render_vm(ss: ScaleSet, instance: Instance, ctx: Context, *,
              power_state: str | None = None) -> dict[str, object]:
    """VirtualMachineScaleSetVM body; with `power_state` it includes the instance view."""
    properties: dict[str, object] = {
        "latestModelApplied": instance.latest_model_applied,
        "vmId": instance.vm_id,
        "hardwareProfile": {"vmSize": ss.sku_name},
        "storageProfile": {
            "imageReference": dict(instance.image),
            "osDisk": {
                "osType": "Linux",
                "name": f"{ss.name}_{instance.instance_id}_OsDisk",
                "createOption": "FromImage",
                "caching": "ReadWrite",
                "managedDisk": {"storageAccountType": "Standard_LRS"},
            },
        },
        "osProfile": {
            "computerName": instance.computer_name,
            "adminUsername": "docker",
            "linuxConfiguration": {"disablePasswordAuthentication": True},
        },
        "provisioningState": instance.provisioning_state,
        "timeCreated": instance.time_created,
    }
    if power_state is not None:
        properties["instanceView"] = render_instance_view(instance, power_state)
    return {
        "id": f"{ctx.scale_set_id(ss.name)}/virtualMachines/{instance.instance_id}",
        "name": f"{ss.name}_{instance.instance_id}",
        "type": VM_TYPE,
        "location": ctx.location,
        "tags": dict(ss.tags),
        "instanceId": instance.instance_id,
        "sku": {"name": ss.sku_name, "tier": "Standard"},
        "properties": properties,
    }
