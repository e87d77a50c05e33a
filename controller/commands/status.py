"""`swarm-upgrade status`: where the upgrade stands, read live from the swarm and ARM.

Per node: hostname, role, instance, current → target release, phase; an overall progress bar;
the replica holding the lease and when the lease expires; the planner's verdict now; the last
steps of the rollout (from the progress record's history). Read-only. `--output json` for
scripts. Exit 0, 3 when the declaration is refused or the rollout halted, 1 for a bad
declaration or catalog, 2 for usage, 4 when the swarm or ARM cannot be reached.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from controller import decision as d
from controller.catalog import Catalog, CatalogError, load_catalog
from controller.commands import live
from controller.commands.plan import _versions, decide
from controller.commands.render import Style, bar, table, use_colour
from controller.decision import Decision
from controller.model import Desired
from controller.progress import Progress
from controller.snapshot import Snapshot

DEFAULT_EVENTS = 10


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="where the upgrade stands: nodes, progress, lease, last steps",
        description="Observe the swarm and its scale sets, read the controller's lease and "
        "progress and the declaration in force, and print where the upgrade stands. "
        "Exit 0; 3 refused/halted; 1 bad declaration; 2 usage; 4 cluster unreachable.")
    live.add_connection_flags(parser)
    parser.add_argument("--desired-file", metavar="FILE",
                        help="read the declaration from this file instead of the config objects")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, metavar="N",
                        help=f"how many of the last rollout steps to show ({DEFAULT_EVENTS})")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    try:
        opts = live.resolve_connection(args)
    except live.BadInput as err:
        print(f"swarm-upgrade status: {err}", file=sys.stderr)
        return live.EXIT_USAGE
    try:
        catalog = load_catalog(opts["catalog"])
    except CatalogError as err:
        for p in err.problems:
            print(f"{opts['catalog']}: {p}", file=sys.stderr)
        return live.EXIT_BAD_INPUT
    try:
        view = live.read_live(opts, args.desired_file)
        desired = live.parse_declaration(view.declaration) if view.declaration else None
    except live.Unreachable as err:
        print(f"swarm-upgrade status: cannot reach the cluster: {err}", file=sys.stderr)
        return live.EXIT_UNREACHABLE
    except live.BadInput as err:
        print(err, file=sys.stderr)
        return live.EXIT_BAD_INPUT
    now = time.time()
    report = build(view, desired, catalog, now, max(0, args.events))
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(to_text(report, Style(use_colour(sys.stdout))))
    return live.EXIT_REFUSED if report["verdict"] in (d.REFUSED, d.HALTED) else live.EXIT_OK


def _phase(host: str, current: str, target: str, progress: Progress | None) -> str:
    if progress is not None and progress.target_version == target:
        rec = progress.nodes.get(host)
        if rec is not None:
            return f"{rec.phase} (halted)" if rec.halted_reason else rec.phase
        if host in progress.done:
            return "upgraded"
    if current == target:
        return "up to date"
    return "pending"


def _nodes(snapshot: Snapshot, catalog: Catalog, decision: Decision | None,
           target: str, progress: Progress | None) -> list[dict[str, Any]]:
    current = _versions(snapshot, catalog)
    instances = {i.computer_name: f"{s.name}/{i.instance_id}"
                 for s in snapshot.scale_sets for i in s.instances}
    entries: dict[str, Any] = {}
    for n in snapshot.nodes:  # the live entry wins over a Down one with the same hostname
        if n.hostname not in entries or entries[n.hostname].state != "ready":
            entries[n.hostname] = n
    hosts = list(decision.order) if decision is not None else []
    for host in sorted(set(instances) | set(entries),
                       key=lambda h: (getattr(entries.get(h), "role", "") != "manager", h)):
        if host not in hosts:
            hosts.append(host)
    rows = []
    for host in hosts:
        node = entries.get(host)
        now = current.get(host, "unknown")
        rows.append({
            "hostname": host,
            "role": node.role if node else "unknown",
            "state": node.state if node else "missing",
            "availability": node.availability if node else "",
            "leader": bool(node and node.leader),
            "instance": instances.get(host, ""),
            "current": now,
            "target": target,
            "phase": _phase(host, now, target, progress) if target else "",
        })
    return rows


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(view: live.LiveView, desired: Desired | None, catalog: Catalog, now: float,
          events: int) -> dict[str, Any]:
    """The status as JSON-ready data (what `--output json` prints)."""
    snapshot = live.snapshot_of(view, now)
    progress = view.parsed_progress()
    decision = decide(desired, snapshot, progress, catalog, now) if desired else None
    target = desired.version if desired else ""
    nodes = _nodes(snapshot, catalog, decision, target, progress)
    upgraded = sum(1 for n in nodes if n["current"] == target)
    lease: dict[str, Any] | None = None
    if view.lease is not None:
        active = bool(view.lease.holder) and view.lease.expires > now
        lease = {"holder": view.lease.holder if active else "", "node": view.lease.node
                 if active else "", "expires": _stamp(view.lease.expires) if active else "",
                 "expiresIn": round(view.lease.expires - now, 1) if active else 0.0,
                 "active": active, "handedOverBy": view.lease.avoid_node}
    rollout: dict[str, Any] | None = None
    if progress is not None:
        rollout = {"id": progress.rollout_id, "channel": progress.channel,
                   "targetVersion": progress.target_version,
                   "startedAt": _stamp(progress.started_at), "phase": progress.phase or "nodes",
                   "upgraded": list(progress.done), "halted": None}
        if progress.halted_code:
            rollout["halted"] = {"code": progress.halted_code,
                                 "message": progress.halted_message,
                                 "node": progress.halted_node, "at": _stamp(progress.halted_at)}
    history = progress.history[-events:] if progress is not None and events else ()
    return {
        "declaration": None if desired is None or view.declaration is None else {
            "origin": view.declaration.origin, "name": desired.name, "channel": desired.channel,
            "version": desired.version, "paused": desired.paused},
        "verdict": decision.verdict if decision else "none",
        "reasons": [r.to_dict() for r in decision.reasons] if decision else [],
        "nodes": nodes,
        "progress": {"upgraded": upgraded, "total": len(nodes), "target": target},
        "lease": lease,
        "rollout": rollout,
        "events": [{"time": _stamp(e.at), "node": e.hostname, "phase": e.phase}
                   for e in history],
        "connectedTo": view.connected_to,
        "observedAt": _stamp(now),
    }


def _verdict_colour(style: Style, verdict: str) -> str:
    if verdict in (d.REFUSED, d.HALTED):
        return style.red(verdict)
    if verdict == d.DONE:
        return style.green(verdict)
    return style.yellow(verdict)


def _phase_colour(style: Style, phase: str) -> str:
    if phase in ("up to date", "upgraded"):
        return style.green(phase)
    if "halted" in phase:
        return style.red(phase)
    if phase == "pending":
        return style.dim(phase)
    return style.yellow(phase)


def to_text(r: dict[str, Any], style: Style) -> str:
    lines: list[str] = []
    decl = r["declaration"]
    if decl is None:
        lines.append(style.bold("No declaration: ") + "nothing is asked of the controller "
                     "(publish one with `swarm-upgrade set-version VERSION`).")
    else:
        paused = " (paused)" if decl["paused"] else ""
        lines.append(f"{style.bold('Declaration')}  {decl['origin']}: {decl['name']} wants "
                     f"{decl['channel']} {decl['version']}{paused}")
        lines.append(f"{style.bold('Verdict')}      {_verdict_colour(style, r['verdict'])}")
        for reason in r["reasons"][:6]:
            mark = "!" if reason["severity"] == d.WARNING else "-"
            lines.append(f"  {mark} {reason['code']}: {reason['message']}")
    lease = r["lease"]
    if lease is None:
        lines.append(f"{style.bold('Controller')}   no replica has ever run on this swarm")
    elif lease["active"]:
        lines.append(f"{style.bold('Controller')}   replica {lease['holder']} on {lease['node']} "
                     f"holds the lease (expires {lease['expires']}, in {lease['expiresIn']:g}s)")
    else:
        extra = f" (handed over by {lease['handedOverBy']})" if lease["handedOverBy"] else ""
        lines.append(f"{style.bold('Controller')}   no replica holds the lease{extra}")
    rows = [[
        n["hostname"] + (" *" if n["leader"] else ""), n["role"], n["instance"] or "-",
        n["state"] + ("" if n["availability"] in ("active", "") else f"/{n['availability']}"),
        f"{n['current']} → {n['target']}" if n["target"] else n["current"],
        _phase_colour(style, n["phase"]) if n["phase"] else "-",
    ] for n in r["nodes"]]
    lines += ["", *table(["NODE", "ROLE", "INSTANCE", "STATE", "VERSION", "PHASE"], rows, ""),
              "  (* = raft leader)", ""]
    p = r["progress"]
    if p["target"]:
        lines.append(f"{style.bold('Progress')}     {bar(p['upgraded'], p['total'])} "
                     f"nodes on {p['target']}")
    rollout = r["rollout"]
    if rollout is not None:
        lines.append(f"{style.bold('Rollout')}      {rollout['id']} → {rollout['channel']} "
                     f"{rollout['targetVersion']}, started {rollout['startedAt']}, phase "
                     f"{rollout['phase']}")
        if rollout["halted"]:
            h = rollout["halted"]
            lines.append(style.red(f"  HALTED {h['code']} on {h['node']}: {h['message']}"))
    if r["events"]:
        lines += ["", style.bold("Last steps")]
        lines += table(["TIME", "NODE", "STEP"],
                       [[e["time"], e["node"], e["phase"]] for e in r["events"]])
    return "\n".join(lines)
