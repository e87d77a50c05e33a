"""Wires one controller replica together from resolved options (see commands/run.py)."""

from __future__ import annotations

import logging
import os
from typing import Any

from controller.adapters.azure import ScaleSetClient
from controller.adapters.resources import ResourceGroupClient
from controller.adapters.swarm import SwarmClient
from controller.catalog import CatalogError, load_catalog
from controller.runtime import events as ev
from controller.runtime.events import EventSink
from controller.runtime.health import HealthServer, Metrics
from controller.runtime.loop import Controller, LoopConfig
from controller.runtime.sources import ConfigSource, DesiredSource, FileSource
from controller.runtime.store import new_replica_id

# A full listing of the scale sets at most every 5 minutes; in between only the instances the
# controller operates on or that are busy are re-read (adapters/azure.py, ScaleSetClient.observe).
# The same age for the resource group's deployments, re-listed after the controller deployed
# and while one runs (adapters/resources.py, ResourceGroupClient.deployments).
ARM_LISTING_MAX_AGE = 300.0

SECRET_VARIABLES = ("AZURE_CLIENT_SECRET", "IDENTITY_HEADER", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
                    "MSI_SECRET")


def make_azure(opts: dict[str, Any], metrics: Metrics | None = None) -> ScaleSetClient:
    return ScaleSetClient(
        opts["subscription_id"], opts["resource_group"], base_url=opts["arm_endpoint"],
        polling_interval=opts["polling_interval"], retry_total=opts["arm_retries"],
        timeout=opts["arm_timeout"], connection_verify=os.environ.get("SSL_CERT_FILE") or None,
        on_call=metrics.arm_call if metrics else None, observe_cache=ARM_LISTING_MAX_AGE,
    )


def make_resources(opts: dict[str, Any], azure: ScaleSetClient,
                   metrics: Metrics | None = None) -> ResourceGroupClient:
    """The resource group's deployments client, sharing the compute client's credential."""
    return ResourceGroupClient(
        opts["subscription_id"], opts["resource_group"], credential=azure.credential,
        base_url=opts["arm_endpoint"], polling_interval=opts["polling_interval"],
        retry_total=opts["arm_retries"], timeout=opts["arm_timeout"],
        connection_verify=os.environ.get("SSL_CERT_FILE") or None,
        on_call=metrics.arm_call if metrics else None, observe_cache=ARM_LISTING_MAX_AGE,
        budget=azure.budget,
    )


async def main(opts: dict[str, Any]) -> int:
    # The SDKs' own log lines (multi-line, on stderr) would break "one event per line"; what
    # they say reaches the events through the adapters' exceptions.
    logging.getLogger("azure").setLevel(logging.CRITICAL)
    sink = EventSink(fmt=opts["log_format"], repeat_after=opts["event_repeat"])
    for name in SECRET_VARIABLES:
        sink.add_secret(os.environ.get(name))
    try:
        catalog = load_catalog(opts["catalog"])
    except CatalogError as err:
        # Bad input (exit 1), in one line naming the field: the first problem, and a count.
        more = len(err.problems) - 1
        sink.emit(ev.WARNING, ev.CONTROLLER_HALTED, "controller/catalog",
                  f"--catalog {opts['catalog']}: {err.problems[0]}"
                  + (f" (and {more} more problem(s))" if more > 0 else ""))
        return 1
    metrics = Metrics()
    swarm = SwarmClient(opts["docker_host"], timeout=opts["swarm_timeout"],
                        on_call=metrics.swarm_call)
    azure = make_azure(opts, metrics)
    resources = make_resources(opts, azure, metrics)
    replica = opts["replica_id"] or new_replica_id()
    controller: Controller | None = None

    def trigger() -> None:
        if controller is not None:
            controller.trigger()

    source: DesiredSource
    if opts["desired_file"]:
        source = FileSource(opts["desired_file"], catalog, sink, trigger)
    else:
        source = ConfigSource(swarm, opts["desired_config_label"], catalog, sink, trigger,
                              resync=opts["resync"])
    cfg = LoopConfig(replica=replica, resync=opts["resync"],
                     lease_duration=opts["lease_duration"], once=opts["once"],
                     halt_confirm=opts["halt_confirm"])
    controller = Controller(cfg, swarm, azure, source, catalog, sink, metrics,
                            resources=resources)
    health: HealthServer | None = None
    try:
        if opts["metrics_port"] >= 0 and not opts["once"]:
            health = HealthServer(metrics, controller.status, host=opts["metrics_host"],
                                  port=opts["metrics_port"],
                                  stale_after=max(120.0, 4 * opts["resync"]))
            port = await health.start()
        sink.emit(ev.NORMAL, "ControllerStarted", f"controller/{replica}",
                  f"replica {replica} watching {source.description} through "
                  f"{opts['docker_host']}; ARM {opts['arm_endpoint']}"
                  + (f"; /healthz and /metrics on port {port}" if health else ""))
        return await controller.run()
    finally:
        if health is not None:
            await health.stop()
        await swarm.close()
        await resources.close()
        await azure.close()
