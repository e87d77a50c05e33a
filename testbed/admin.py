"""The daemon's admin API on the unix socket D/admin.sock: status, faults, services, stop.

Routes (JSON in, JSON out; errors are {"error": "..."} with 400/404/500):
  GET  /_testbed/status                 instances (power state, dockerd pid, image) + swarm nodes
  POST /_testbed/fault     {"fault": F, "instance": HOSTNAME, "version": RELEASE?}
       F: power-off | start | restart | crash | never-boots | boots-again | reimage | delete
  POST /_testbed/arm-fault {"name": METHOD, "args": {...}}   a method of the ARM server's faults
  GET  /_testbed/arm-requests                                the ARM request log
  POST /_testbed/arm-role  {"actions": [...] | null}         the role the ARM endpoint enforces
  GET  /_testbed/arm-operations        long-running operations: status, start/end, targets
  POST /_testbed/service   {"name": N, "replicas": R}        a busybox sleep service
  POST /_testbed/stop                                        shut the testbed down
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from testbed.cluster import Cluster
from testbed.config import ConfigError, catalog_image
from testbed.driver import BootError

if TYPE_CHECKING:
    from testbed.daemon import Daemon

NODE_FAULTS = (
    "power-off",
    "start",
    "restart",
    "crash",
    "never-boots",
    "boots-again",
    "reimage",
    "delete",
)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def node_summary(cluster: Cluster) -> list[dict[str, Any]]:
    """The swarm's nodes, compact, or [] when no manager answers."""
    try:
        nodes = await cluster.nodes()
    except Exception:  # a leaderless swarm must not break status
        return []
    out = []
    for node in nodes:
        desc = node.get("Description", {})
        labels = desc.get("Engine", {}).get("Labels") or {}
        mgr = node.get("ManagerStatus") or {}
        out.append(
            {
                "id": node["ID"],
                "hostname": desc.get("Hostname"),
                "role": node.get("Spec", {}).get("Role"),
                "availability": node.get("Spec", {}).get("Availability"),
                "state": node.get("Status", {}).get("State"),
                "reachability": mgr.get("Reachability"),
                "leader": bool(mgr.get("Leader")),
                "version": labels.get("azure.image.version"),
            }
        )
    return sorted(out, key=lambda n: (str(n["hostname"]), str(n["id"])))


async def apply_node_fault(daemon: Daemon, body: dict[str, Any]) -> dict[str, Any]:
    """Run one node-level fault or driver operation on an instance named by hostname."""
    cluster = daemon.cluster
    fault = body.get("fault")
    if fault not in NODE_FAULTS:
        raise ConfigError(f"fault: unknown fault {fault!r} (known: {', '.join(NODE_FAULTS)})")
    try:
        inst = cluster.by_hostname(str(body.get("instance")))
    except KeyError as exc:
        raise ConfigError(f"instance: {exc.args[0]}") from None
    ss, iid = inst.scale_set, inst.instance_id
    if fault == "power-off":
        await cluster.power_off(ss, iid)
    elif fault == "start":
        await cluster.start(ss, iid)
    elif fault == "restart":
        await cluster.restart(ss, iid)
    elif fault == "crash":
        await cluster.crash(ss, iid)
    elif fault == "never-boots":
        cluster.set_never_boots(ss, iid, True)
    elif fault == "boots-again":
        cluster.set_never_boots(ss, iid, False)
    elif fault == "delete":
        await cluster.delete(ss, iid)
    elif fault == "reimage":
        image = dict(inst.image)
        if body.get("version"):
            image = catalog_image(daemon.config.channel, str(body["version"]))
        await cluster.reimage(ss, iid, inst.computer_name, inst.role, image)
    return {"instance": inst.computer_name, "fault": fault, "powerState": inst.state}


def make_app(daemon: Daemon) -> web.Application:
    """The admin aiohttp application bound to `daemon`."""

    async def status(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "dir": daemon.config.dir,
                "armUrl": daemon.arm_url,
                "instances": daemon.cluster.describe(),
                "nodes": await node_summary(daemon.cluster),
            }
        )

    async def fault(request: web.Request) -> web.Response:
        try:
            return web.json_response(await apply_node_fault(daemon, await request.json()))
        except ConfigError as exc:
            return _error(400, str(exc))
        except BootError as exc:
            return _error(500, f"{exc.code}: {exc.message}")

    async def arm_fault(request: web.Request) -> web.Response:
        if daemon.arm is None:
            return _error(404, "arm: this testbed runs without an ARM endpoint")
        body = await request.json()
        name = str(body.get("name", ""))
        method = getattr(daemon.arm.faults, name, None)
        if name.startswith("_") or not callable(method):
            return _error(400, f"name: unknown ARM fault {name!r}")
        try:
            method(**(body.get("args") or {}))
        except TypeError as exc:
            return _error(400, f"args: {exc}")
        return web.json_response({"armFault": name})

    async def arm_requests(_: web.Request) -> web.Response:
        if daemon.arm is None:
            return _error(404, "arm: this testbed runs without an ARM endpoint")
        return web.json_response([e.to_dict() for e in daemon.arm.request_log])

    async def arm_role(request: web.Request) -> web.Response:
        if daemon.arm is None:
            return _error(404, "arm: this testbed runs without an ARM endpoint")
        actions = (await request.json()).get("actions")
        if actions is not None and (not isinstance(actions, list)
                                    or not all(isinstance(a, str) for a in actions)):
            return _error(400, f"actions: must be a list of strings or null, got {actions!r}")
        daemon.arm.rbac = type(daemon.arm.rbac)(actions)  # testbed.arm.rbac.RoleCheck
        return web.json_response({"actions": actions})

    async def arm_operations(_: web.Request) -> web.Response:
        if daemon.arm is None:
            return _error(404, "arm: this testbed runs without an ARM endpoint")
        return web.json_response(daemon.arm.operations.log())

    async def service(request: web.Request) -> web.Response:
        body = await request.json()
        replicas = body.get("replicas", 4)
        if not isinstance(replicas, int) or replicas < 0:
            return _error(400, f"replicas: must be an integer >= 0, got {replicas!r}")
        sid = await daemon.cluster.create_service(str(body.get("name", "sample")), replicas)
        return web.json_response({"id": sid})

    async def stop(_: web.Request) -> web.Response:
        daemon.stop_event.set()
        return web.json_response({"stopping": True})

    app = web.Application()
    app.router.add_get("/_testbed/status", status)
    app.router.add_post("/_testbed/fault", fault)
    app.router.add_post("/_testbed/arm-fault", arm_fault)
    app.router.add_get("/_testbed/arm-requests", arm_requests)
    app.router.add_post("/_testbed/arm-role", arm_role)
    app.router.add_get("/_testbed/arm-operations", arm_operations)
    app.router.add_post("/_testbed/service", service)
    app.router.add_post("/_testbed/stop", stop)
    return app
