"""The testbed's swarm: real dockerd nodes as scale-set instances (issue 3, items 1 and 5)."""

from __future__ import annotations

import pytest

from testbed import procs
from testbed.control import TestbedError, TestbedHandle
from testbed.probe import (
    docker_delete,
    docker_get,
    docker_post,
    engine_labels,
    hostname,
    ready_node,
    state,
    swarm_nodes,
    wait_for,
)

TESTBED = {"managers": 3, "workers": 2, "with_arm": False}
MANAGERS = {"swarm-manager000000", "swarm-manager000001", "swarm-manager000002"}
WORKERS = {"swarm-worker000000", "swarm-worker000001"}


def test_up_3_managers_2_workers_is_ready_within_20s(testbed: TestbedHandle) -> None:
    assert testbed.up_seconds <= 20.0, testbed.up_seconds


async def test_every_instance_is_a_ready_node_with_its_own_hostname(testbed: TestbedHandle) -> None:
    nodes = await swarm_nodes(testbed.env["DOCKER_HOST"])
    assert sorted(hostname(n) for n in nodes) == sorted(MANAGERS | WORKERS)
    assert all(state(n) == "ready" for n in nodes)
    roles = {hostname(n): n["Spec"]["Role"] for n in nodes}
    assert {h for h, r in roles.items() if r == "manager"} == MANAGERS
    addrs = [n["ManagerStatus"]["Addr"] for n in nodes if hostname(n) in MANAGERS]
    assert len(set(addrs)) == 3 and all(a.startswith("127.") for a in addrs)
    assert sum(bool(n["ManagerStatus"].get("Leader")) for n in nodes if "ManagerStatus" in n) == 1


async def test_engine_labels_carry_the_booted_image_and_instance(testbed: TestbedHandle) -> None:
    for node in await swarm_nodes(testbed.env["DOCKER_HOST"]):
        labels = engine_labels(node)
        name = hostname(node)
        assert labels["azure.image.publisher"] == "docker"
        assert labels["azure.image.offer"] == "docker4azure"
        assert labels["azure.image.sku"] == "stable"
        assert labels["azure.image.version"] == "17.06.0"
        vmss = "swarm-manager-vmss" if name in MANAGERS else "swarm-worker-vmss"
        assert labels["azure.vmss"] == vmss
        assert labels["azure.instance-id"] == str(int(name[-6:]))


async def test_each_manager_socket_reaches_its_own_daemon(testbed: TestbedHandle) -> None:
    assert set(testbed.manager_hosts) == MANAGERS
    assert testbed.env["DOCKER_HOST"] == testbed.manager_hosts["swarm-manager000000"]
    for name, host in testbed.manager_hosts.items():
        info = await docker_get(host, "/info")
        assert info["Name"] == name
        assert info["Swarm"]["ControlAvailable"] is True


async def test_swarm_heartbeat_is_one_second(testbed: TestbedHandle) -> None:
    swarm = await docker_get(testbed.env["DOCKER_HOST"], "/swarm")
    assert swarm["Spec"]["Dispatcher"]["HeartbeatPeriod"] == 1_000_000_000


async def test_busybox_image_is_loaded_and_a_service_runs(testbed: TestbedHandle) -> None:
    hosts = {i["computerName"]: i["dockerHost"] for i in testbed.status()["instances"]}
    for host in hosts.values():
        images = await docker_get(host, "/images/json")
        assert any("local/busybox:latest" in (i.get("RepoTags") or []) for i in images)
    service_id = testbed.create_service("probe", replicas=3)

    async def three_running() -> bool:
        tasks = await docker_get(testbed.env["DOCKER_HOST"], f"/tasks?service={service_id}")
        return sum(t["Status"]["State"] == "running" for t in tasks) == 3

    await wait_for(three_running, wait_s=30)


async def test_reimage_worker_gives_same_hostname_new_node_id_new_version(
    testbed: TestbedHandle,
) -> None:
    host = testbed.env["DOCKER_HOST"]
    old = await ready_node(host, "swarm-worker000001")
    assert old is not None
    result = await testbed.afault("reimage", "swarm-worker000001", version="17.06.1-ce-azure1")
    assert result["powerState"] == "running"
    new = await wait_for(lambda: ready_node(host, "swarm-worker000001", exclude=[old["ID"]]))
    assert engine_labels(new)["azure.image.version"] == "17.06.1"

    async def old_is_down() -> bool:
        nodes = {n["ID"]: n for n in await swarm_nodes(host)}
        return state(nodes[old["ID"]]) == "down"

    await wait_for(old_is_down, wait_s=10)
    await docker_delete(host, f"/nodes/{old['ID']}")  # the stale entry can be removed
    same_host = [n["ID"] for n in await swarm_nodes(host) if hostname(n) == "swarm-worker000001"]
    assert same_host == [new["ID"]]


async def test_reimage_of_a_demoted_manager_rejoins_as_manager(testbed: TestbedHandle) -> None:
    host = testbed.env["DOCKER_HOST"]
    old = await ready_node(host, "swarm-manager000002")
    assert old is not None and old["Spec"]["Role"] == "manager"
    spec = dict(old["Spec"], Role="worker")
    await docker_post(
        host, f"/nodes/{old['ID']}/update", spec, params={"version": str(old["Version"]["Index"])}
    )
    await testbed.afault("reimage", "swarm-manager000002", version="17.06.1-ce-azure1")
    new = await wait_for(lambda: ready_node(host, "swarm-manager000002", exclude=[old["ID"]]))
    assert new["Spec"]["Role"] == "manager"
    assert engine_labels(new)["azure.image.version"] == "17.06.1"

    async def old_is_down() -> bool:
        nodes = {n["ID"]: n for n in await swarm_nodes(host)}
        return state(nodes[old["ID"]]) == "down"

    await wait_for(old_is_down, wait_s=10)


async def test_crash_leaves_shims_and_start_rejoins_with_the_same_node_id(
    testbed: TestbedHandle,
) -> None:
    host = testbed.env["DOCKER_HOST"]
    before = await ready_node(host, "swarm-worker000000")
    assert before is not None
    inst = {i["computerName"]: i for i in testbed.status()["instances"]}["swarm-worker000000"]
    pid = inst["dockerdPid"]
    await testbed.afault("crash", "swarm-worker000000")
    assert not procs.pid_alive(pid)

    async def down_now() -> bool:
        nodes = {n["ID"]: n for n in await swarm_nodes(host)}
        return state(nodes[before["ID"]]) == "down"

    await wait_for(down_now, wait_s=10)
    await testbed.afault("restart", "swarm-worker000000")
    after = await wait_for(lambda: ready_node(host, "swarm-worker000000"))
    assert after["ID"] == before["ID"]


async def test_restart_right_after_a_crash_boots(testbed: TestbedHandle) -> None:
    # The crashed dockerd's containerd is a zombie until init reaps it; dockerd must not take
    # the stale pidfile naming it for a running containerd (it would time out after 15 s).
    host = testbed.env["DOCKER_HOST"]
    before = await ready_node(host, "swarm-worker000000")
    assert before is not None
    await testbed.afault("crash", "swarm-worker000000")
    await testbed.afault("restart", "swarm-worker000000")
    after = await wait_for(lambda: ready_node(host, "swarm-worker000000"))
    assert after["ID"] == before["ID"]


async def test_power_off_keeps_the_disk_and_start_keeps_the_node_id(
    testbed: TestbedHandle,
) -> None:
    host = testbed.env["DOCKER_HOST"]
    before = await ready_node(host, "swarm-worker000000")
    assert before is not None
    off = await testbed.afault("power-off", "swarm-worker000000")
    assert off["powerState"] == "stopped"
    await testbed.afault("start", "swarm-worker000000")
    after = await wait_for(lambda: ready_node(host, "swarm-worker000000"))
    assert after["ID"] == before["ID"]


async def test_never_boots_fails_the_next_boot_with_os_provisioning_timed_out(
    testbed: TestbedHandle,
) -> None:
    await testbed.afault("never-boots", "swarm-worker000001")
    with pytest.raises(TestbedError, match="OSProvisioningTimedOut"):
        await testbed.afault("reimage", "swarm-worker000001", version="17.06.1-ce-azure1")
    inst = {i["computerName"]: i for i in testbed.status()["instances"]}["swarm-worker000001"]
    assert inst["dockerdPid"] is None  # the OS never came up: no dockerd

    async def no_ready_entry() -> bool:
        return await ready_node(testbed.env["DOCKER_HOST"], "swarm-worker000001") is None

    await wait_for(no_ready_entry, wait_s=10)
    # one-shot: the next reimage boots
    await testbed.afault("reimage", "swarm-worker000001", version="17.06.1-ce-azure1")
    assert await wait_for(lambda: ready_node(testbed.env["DOCKER_HOST"], "swarm-worker000001"))
