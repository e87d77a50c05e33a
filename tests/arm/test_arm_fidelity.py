"""Fidelity: every JSON body the ARM endpoint returns fits the SDK's own model for the operation.

Each body is deserialised with the model azure-mgmt-compute uses for that operation and walked
through the model's declared fields (recursively, through nested models, lists and maps): a key
the model does not declare is a misspelt or invented field. The model is then serialised back
(``as_dict``) and the key sets compared recursively, so nothing is dropped on the way back either.
"""

from __future__ import annotations

import enum
import functools
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from azure.mgmt.compute import models
from azure.mgmt.compute._utils.model_base import Model, _deserialize

from testbed.arm import ArmServer
from testbed.arm.fake_driver import FakeDriver

from .conftest import IMAGE_NEW, MANAGERS, RG, SUB, WORKERS

API = "api-version=2026-04-01"
BASE = (f"/subscriptions/{SUB}/resourceGroups/{RG}"
        "/providers/Microsoft.Compute/virtualMachineScaleSets")
# Keys of an Azure-AsyncOperation status body (ARM RPC: "Asynchronous operations").
ASYNC_OPERATION_KEYS = {"id", "name", "status", "startTime", "endTime", "percentComplete",
                        "properties", "error"}


def enum_of(field_type: Any) -> type[enum.Enum] | None:
    """The Enum class a model field deserialises into (the SDK wraps it in partials/unions)."""
    stack = [field_type]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, enum.Enum):
            return item
        if isinstance(item, functools.partial):
            stack.extend(item.args)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def undeclared_keys(value: Any, raw: Any, path: str = "$") -> list[str]:
    """Keys of `raw` that the deserialised `value`'s model classes do not declare, and strings
    outside the enum a field declares."""
    found: list[str] = []
    if isinstance(value, Model):
        assert isinstance(raw, dict), f"{path}: model {type(value).__name__} from {raw!r}"
        rest = type(value)._attr_to_rest_field
        fields = {rf._rest_name: attr for attr, rf in rest.items()}
        for key, item in raw.items():
            if key not in fields:
                found.append(f"{path}.{key} (not in {type(value).__name__})")
                continue
            member = getattr(value, fields[key])
            kind = enum_of(rest[fields[key]]._type)
            if kind is not None and not isinstance(member, kind):
                found.append(f"{path}.{key}={item!r} (not a {kind.__name__})")
            found += undeclared_keys(member, item, f"{path}.{key}")
    elif isinstance(raw, list):
        assert isinstance(value, list) and len(value) == len(raw), path
        for index, (v, r) in enumerate(zip(value, raw, strict=True)):
            found += undeclared_keys(v, r, f"{path}[{index}]")
    elif isinstance(raw, dict):
        assert isinstance(value, dict), f"{path}: {raw!r} deserialised to {value!r}"
        for key, item in raw.items():
            found += undeclared_keys(value[key], item, f"{path}.{key}")
    return found


def key_paths(data: Any, path: str = "$") -> set[str]:
    """Every key path of a JSON value (list items collapse to [])."""
    paths: set[str] = set()
    if isinstance(data, dict):
        for key, item in data.items():
            paths.add(f"{path}.{key}")
            paths |= key_paths(item, f"{path}.{key}")
    elif isinstance(data, list):
        for item in data:
            paths |= key_paths(item, f"{path}[]")
    return paths


def assert_fits(model: type[Model], raw: Any) -> None:
    """`raw` deserialises into `model` with every key declared and serialises back whole."""
    value = _deserialize(model, raw)
    assert undeclared_keys(value, raw) == []
    assert key_paths(value.as_dict()) == key_paths(raw)


def assert_list_fits(model: type[Model], raw: Any) -> None:
    """A list envelope ``{"value": [...], "nextLink"?}`` whose items fit `model`."""
    assert set(raw) <= {"value", "nextLink"}
    assert raw["value"], "an empty page proves nothing"
    values = _deserialize(list[model], raw["value"])  # type: ignore[valid-type]
    assert undeclared_keys(values, raw["value"]) == []
    for value, item in zip(values, raw["value"], strict=True):
        assert key_paths(value.as_dict()) == key_paths(item)


class Raw:
    """A plain HTTPS client with a token from the server, to see the bodies as sent."""

    def __init__(self, server: ArmServer, http: aiohttp.ClientSession, token: str) -> None:
        self.server, self.http, self.token = server, http, token

    async def call(self, method: str, path: str, body: object = None,
                   expect: int = 200) -> tuple[Any, dict[str, str]]:
        url = path if path.startswith("https://") else f"{self.server.url}{path}"
        async with self.http.request(method, url, json=body,
                                     headers={"Authorization": f"Bearer {self.token}"}) as resp:
            text = await resp.text()
            assert resp.status == expect, f"{method} {path}: {resp.status} {text}"
            return (await resp.json() if text else None), dict(resp.headers)


@pytest.fixture
async def raw(server: ArmServer) -> AsyncIterator[Raw]:
    token, _ = server.tokens.issue("sp:fidelity")
    context = ssl.create_default_context(cafile=str(server.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        yield Raw(server, http, token)


async def test_the_walker_catches_a_misspelt_key_and_a_bad_enum_value() -> None:
    body = {"instanceId": "0", "properties": {
        "latestModelAplied": True,
        "instanceView": {"statuses": [{"code": "PowerState/running", "level": "Information"}]}}}
    value = _deserialize(models.VirtualMachineScaleSetVM, body)
    assert undeclared_keys(value, body) == [
        "$.properties.latestModelAplied (not in VirtualMachineScaleSetVMProperties)",
        "$.properties.instanceView.statuses[0].level='Information' (not a StatusLevelTypes)"]


async def test_scale_set_bodies(raw: Raw) -> None:
    body, _ = await raw.call("GET", f"{BASE}/{MANAGERS}?{API}")
    assert_fits(models.VirtualMachineScaleSet, body)
    view, _ = await raw.call("GET", f"{BASE}/{MANAGERS}/instanceView?{API}")
    assert_fits(models.VirtualMachineScaleSetInstanceView, view)
    listed, _ = await raw.call("GET", f"{BASE}?{API}")
    assert_list_fits(models.VirtualMachineScaleSet, listed)
    patched, _ = await raw.call("PATCH", f"{BASE}/{MANAGERS}?{API}", {
        "tags": {"channel": "edge"},
        "properties": {"virtualMachineProfile": {"storageProfile": {
            "imageReference": IMAGE_NEW}}}})
    assert_fits(models.VirtualMachineScaleSet, patched)
    put, _ = await raw.call("PUT", f"{BASE}/{WORKERS}?{API}", body | {"name": WORKERS})
    assert_fits(models.VirtualMachineScaleSet, put)
    created, headers = await raw.call("PUT", f"{BASE}/new-vmss?{API}", {
        "location": "westeurope", "sku": {"capacity": 1},
        "properties": {"virtualMachineProfile": {"storageProfile": {
            "imageReference": IMAGE_NEW}}}}, expect=201)
    assert_fits(models.VirtualMachineScaleSet, created)
    status, _ = await raw.call("GET", headers["Azure-AsyncOperation"])
    assert set(status) <= ASYNC_OPERATION_KEYS


async def test_vm_bodies(raw: Raw, driver: FakeDriver) -> None:
    driver.power[(WORKERS, "1")] = "stopped"
    for query in ("", "&$expand=instanceView", "&$filter=properties/latestModelApplied eq true"):
        page, _ = await raw.call("GET", f"{BASE}/{WORKERS}/virtualMachines?{API}{query}")
        assert_list_fits(models.VirtualMachineScaleSetVM, page)
        assert "nextLink" in page
        second, _ = await raw.call("GET", page["nextLink"])
        assert_list_fits(models.VirtualMachineScaleSetVM, second)
    for query in ("", "&$expand=instanceView"):
        vm, _ = await raw.call("GET", f"{BASE}/{WORKERS}/virtualMachines/1?{API}{query}")
        assert_fits(models.VirtualMachineScaleSetVM, vm)
    view, _ = await raw.call("GET", f"{BASE}/{WORKERS}/virtualMachines/1/instanceView?{API}")
    assert_fits(models.VirtualMachineScaleSetVMInstanceView, view)


async def test_failed_instance_bodies_and_lro_status(raw: Raw, server: ArmServer) -> None:
    server.faults.fail_lro("VirtualMachineScaleSetVMs_Reimage", code="OSProvisioningTimedOut")
    _, headers = await raw.call("POST", f"{BASE}/{WORKERS}/virtualMachines/2/reimage?{API}",
                                expect=202)
    assert headers["Location"].startswith("https://")
    await server.operations.wait_all()
    status, _ = await raw.call("GET", headers["Azure-AsyncOperation"])
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "OSProvisioningTimedOut"
    assert set(status) <= ASYNC_OPERATION_KEYS
    assert_fits(models.ApiError, status["error"])
    failed, _ = await raw.call("GET", headers["Location"], expect=500)
    assert_fits(models.CloudError, failed)
    view, _ = await raw.call("GET", f"{BASE}/{WORKERS}/virtualMachines/2/instanceView?{API}")
    assert_fits(models.VirtualMachineScaleSetVMInstanceView, view)
    assert view["statuses"][0]["level"] == "Error"
    vm, _ = await raw.call("GET", f"{BASE}/{WORKERS}/virtualMachines/2?{API}&$expand=instanceView")
    assert_fits(models.VirtualMachineScaleSetVM, vm)


async def test_successful_lro_status_and_location(raw: Raw, server: ArmServer) -> None:
    _, headers = await raw.call("POST", f"{BASE}/{MANAGERS}/manualupgrade?{API}",
                                {"instanceIds": ["0"]}, expect=202)
    await server.operations.wait_all()
    status, _ = await raw.call("GET", headers["Azure-AsyncOperation"])
    assert status["status"] == "Succeeded"
    assert set(status) <= ASYNC_OPERATION_KEYS
    final, _ = await raw.call("GET", headers["Location"])
    assert final is None


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", f"{BASE}/nope?{API}", None, 404),
    ("GET", f"{BASE}/{MANAGERS}/virtualMachines/99?{API}", None, 404),
    ("GET", f"{BASE}/{MANAGERS}", None, 400),
    ("POST", f"{BASE}/{MANAGERS}/manualupgrade?{API}", {"instanceIds": ["42"]}, 400),
    ("PATCH", f"{BASE}/{MANAGERS}?{API}", {"sku": {"capacity": -1}}, 400),
    ("GET", f"{BASE}/{MANAGERS}/virtualMachines?{API}&$filter=foo", None, 400),
    ("DELETE", f"{BASE}?{API}", None, 405),
])
async def test_error_bodies(raw: Raw, method: str, path: str, body: object, status: int) -> None:
    error, _ = await raw.call(method, path, body, expect=status)
    assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}
    assert_fits(models.CloudError, error)
