"""`swarm-upgrade plan`: explain what the controller would do for a declaration and a snapshot.

Offline (`--snapshot FILE`): reads the declaration, an observed snapshot (JSON,
crd/snapshot.schema.json), optionally a stored progress (JSON, crd/progress.schema.json) and a
catalog. Live (no `--snapshot`): observes the swarm and its scale sets like the controller does
(`--docker-host`/`DOCKER_HOST`, `AZURE_*`, `--env-file`), reads the stored progress and, without
`--desired`, the declaration in force (the newest labelled config object). Either way it runs the
pure planner once and prints the decision as JSON or text. Exit 0 for proceed/wait/done, 3 for
refused/halted, 1 for bad input files (one line per problem, naming the file and the field), 2 for
usage, 4 when the cluster cannot be reached. Nothing is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from controller import decision as d
from controller import planner, rollout
from controller.catalog import Catalog, CatalogError, ImageRef, load_catalog
from controller.decision import Decision
from controller.model import DeclarationError, Desired, load_desired_file
from controller.progress import Progress
from controller.snapshot import Snapshot

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_REFUSED = 3


class InputError(Exception):
    """Bad input file; each line of str() names the file and the field."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="explain the next steps of an upgrade for a declaration and an observed snapshot",
        description="Run the planner once: what would the controller do now? Offline with "
        "--snapshot FILE, else live from the cluster. Exit 0 (proceed, wait, done), 3 (refused, "
        "halted), 1 (bad input), 2 (usage) or 4 (cluster unreachable).",
    )
    parser.add_argument("--desired", metavar="FILE", help="SwarmUpgrade (YAML); live default: "
                        "the newest config object with --desired-config-label")
    parser.add_argument("--snapshot", metavar="FILE",
                        help="observed state (JSON); without it, observe the cluster")
    parser.add_argument("--catalog", metavar="FILE", help="release catalog instead of the bundled")
    parser.add_argument("--progress", metavar="FILE",
                        help="stored rollout progress (JSON); live default: the stored one")
    parser.add_argument(
        "--now", type=float, metavar="EPOCH", help="time of the pass (default: observedAt or now)"
    )
    parser.add_argument("--output", choices=("json", "text"), default="json")
    from controller.commands.live import CONNECTION_FLAGS
    from controller.commands.run import add_flags

    add_flags(parser, tuple(f for f in CONNECTION_FLAGS if f.name != "catalog"))
    parser.set_defaults(func=run)


def _read_json(path: str, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot read the {what}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the {what} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: the {what} is not JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None


def load_inputs(
    args: argparse.Namespace,
) -> tuple[Desired, Snapshot, Progress | None, Catalog]:
    """Everything `plan` needs, or InputError naming the file and the field."""
    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as err:
        raise InputError("\n".join(f"{args.catalog}: {p}" for p in err.problems)) from None
    try:
        desired = load_desired_file(args.desired)
    except DeclarationError as err:
        lines = str(err).splitlines() or ["invalid declaration"]
        raise InputError("\n".join(f"{args.desired}: {line}" for line in lines)) from None
    try:
        snapshot = Snapshot.from_dict(_read_json(args.snapshot, "snapshot"))
    except ValueError as err:
        raise InputError(f"{args.snapshot}: {err}") from None
    progress = None
    if args.progress:
        try:
            progress = Progress.from_dict(_read_json(args.progress, "progress"))
        except ValueError as err:
            raise InputError(f"{args.progress}: {err}") from None
    return desired, snapshot, progress, catalog


def run(args: argparse.Namespace) -> int:
    if args.snapshot is None:
        return run_live(args)
    if args.desired is None:
        print("swarm-upgrade plan: --desired: required with --snapshot", file=sys.stderr)
        return 2
    try:
        desired, snapshot, progress, catalog = load_inputs(args)
    except InputError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    now = args.now if args.now is not None else (snapshot.observed_at or time.time())
    return _report(args, decide(desired, snapshot, progress, catalog, now), desired, snapshot,
                   catalog)


def run_live(args: argparse.Namespace) -> int:
    """`plan` without `--snapshot`: observe the cluster, read the stored progress."""
    from controller.commands import live

    try:
        opts = live.resolve_connection(args)
    except live.BadInput as err:
        print(f"swarm-upgrade plan: {err}", file=sys.stderr)
        return live.EXIT_USAGE
    try:
        catalog = load_catalog(opts["catalog"])
        view = live.read_live(opts, args.desired, check_template=True)
        if view.declaration is None:
            raise live.BadInput(f"no declaration: no config object carries the label "
                                f"{opts['desired_config_label']} (give --desired FILE)")
        desired = live.parse_declaration(view.declaration)
        progress = view.parsed_progress()
        if args.progress:
            progress = Progress.from_dict(_read_json(args.progress, "progress"))
    except CatalogError as err:
        print("\n".join(f"{args.catalog}: {p}" for p in err.problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    except live.Unreachable as err:
        print(f"swarm-upgrade plan: cannot reach the cluster: {err}", file=sys.stderr)
        return live.EXIT_UNREACHABLE
    except (live.BadInput, InputError) as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as err:
        print(f"{args.progress}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    now = args.now if args.now is not None else time.time()
    snapshot = live.snapshot_of(view, now)
    return _report(args, decide(desired, snapshot, progress, catalog, now), desired, snapshot,
                   catalog)


def _report(args: argparse.Namespace, decision: Decision, desired: Desired, snapshot: Snapshot,
            catalog: Catalog) -> int:
    """Print the decision (text or JSON); the exit code: 3 refused/halted, else 0."""
    if args.output == "json":
        print(json.dumps(to_json(decision, desired, snapshot, catalog), indent=2))
    else:
        print(to_text(decision, desired, snapshot, catalog))
    return EXIT_REFUSED if decision.verdict in (d.REFUSED, d.HALTED) else EXIT_OK


def decide(
    desired: Desired, snapshot: Snapshot, progress: Progress | None, catalog: Catalog, now: float
) -> Decision:
    """The three-phase plan (resources → nodes → services) when the snapshot observed the
    resource group or the services (`swarm-upgrade snapshot` does); the node phase alone for an
    older snapshot without them."""
    seen = snapshot.observed
    if seen.deployments is None and seen.services is None:
        return planner.plan(desired, snapshot, progress, catalog, now)
    return rollout.plan(desired, snapshot, progress, catalog, now)


def _what_if(snapshot: Snapshot) -> list[dict[str, str]]:
    check = snapshot.observed.template_check
    if check is None:
        return []
    return [{"resourceId": c.resource_id, "changeType": c.change_type} for c in check.changes]


def _versions(snapshot: Snapshot, catalog: Catalog) -> dict[str, str]:
    """hostname -> the release (or image version) its instance runs now."""
    out: dict[str, str] = {}
    for ss in snapshot.scale_sets:
        for inst in ss.instances:
            out[inst.computer_name] = _release_name(inst.image, catalog)
    return out


def _release_name(image: ImageRef | None, catalog: Catalog) -> str:
    if image is None:
        return "unknown"
    rel = catalog.release_for_image(image)
    return rel.version if rel else f"{image.sku}/{image.version} (not in the catalog)"


def to_json(
    decision: Decision, desired: Desired, snapshot: Snapshot, catalog: Catalog
) -> dict[str, Any]:
    out = decision.to_dict()
    out["reasons"] = [
        {"code": r.code, "message": r.message, "severity": r.severity} for r in decision.reasons
    ]
    out["target"] = {"channel": desired.channel, "version": desired.version}
    current = _versions(snapshot, catalog)
    out["nodes"] = [
        {"hostname": h, "current": current.get(h, "unknown"), "target": desired.version}
        for h in decision.order
    ]
    if decision.progress is not None:
        out["progress"] = decision.progress.to_dict()
        out["phase"] = decision.progress.phase or "nodes"
    if snapshot.observed.template_check is not None:
        out["whatIf"] = _what_if(snapshot)
    return out


def to_text(decision: Decision, desired: Desired, snapshot: Snapshot, catalog: Catalog) -> str:
    lines = [
        f"{desired.name}: {desired.channel} {desired.version} — verdict: {decision.verdict}",
        "",
        "Why:",
    ]
    for r in decision.reasons:
        mark = "!" if r.severity == d.WARNING else "-"
        lines.append(f"  {mark} {r.code}: {r.message}")
    if decision.progress is not None and decision.progress.phase:
        lines += ["", f"Phase: {decision.progress.phase} (resources → nodes → services)"]
    changes = _what_if(snapshot)
    if changes:
        lines += ["", "What the release's template changes (ARM what-if):"]
        lines += [f"  {c['changeType']:<9} {c['resourceId']}" for c in changes]
    if decision.order:
        current = _versions(snapshot, catalog)
        in_flight = decision.progress.nodes if decision.progress is not None else {}
        lines += ["", "Rollout order (managers, workers, this manager last):"]
        width = max(len(h) for h in decision.order)
        for i, host in enumerate(decision.order, 1):
            now = current.get(host, "unknown")
            if now == desired.version:
                state = "already on target"
            elif host in in_flight:
                state = f"in progress: {in_flight[host].phase}"
            else:
                state = "pending"
            suffix = " (this manager)" if host == snapshot.self_hostname else ""
            lines.append(f"  {i:>3}. {host:<{width}}  {now} → {desired.version}  [{state}]{suffix}")
    lines += ["", "Next steps:"]
    if decision.actions:
        for a in decision.actions:
            lines.append(f"  - {_describe(a)}")
    elif decision.verdict == d.REFUSED:
        lines.append("  (nothing is touched: fix the reasons above, then plan again)")
    elif decision.verdict == d.HALTED:
        lines.append("  (nothing is touched until the declaration changes or the rollout resumes)")
    elif decision.verdict == d.DONE:
        lines.append("  (nothing: the swarm runs the target)")
    else:
        lines.append(f"  (none now; look again in {decision.requeue_after:g}s)")
    return "\n".join(lines)


def _describe(a: d.Action) -> str:
    where = f" ({a.scale_set}/{a.instance_id})" if a.instance_id else ""
    if a.kind == d.SET_MODEL_IMAGE:
        image = a.params.get("image", {})
        return f"set_model_image: scale set {a.scale_set} → image version {image.get('version')}"
    if a.kind == d.SET_AVAILABILITY:
        return f"set_availability: {a.node} → {a.params.get('availability')}"
    if a.kind == d.DEPLOY_TEMPLATE:
        return f"deploy_template: {a.params.get('deployment')} ({a.params.get('mode')})"
    if a.kind == d.UPDATE_SERVICE:
        return f"update_service: {a.params.get('service')} → {a.params.get('image')}"
    if a.kind == d.HANDOVER_LEASE:
        return f"handover_lease: {a.node} hands the rollout to a replica on another manager"
    node_id = f" node {a.node_id[:12]}" if a.node_id else ""
    return f"{a.kind}: {a.node}{where}{node_id}"
