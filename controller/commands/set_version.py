"""`swarm-upgrade set-version VERSION [--channel C]`: ask for another release (what `upgrade.sh`
did), checked right away.

Takes the declaration in force (the newest config object labelled `swarm-upgrade.desired=true`,
or `--from-file F`, or a minimal one), sets `spec.version` (and `spec.channel`), and runs the pure
planner on it against the live snapshot and the stored progress: a refusal (`CrossChannel`,
`VersionSkip`, `Downgrade`, `UnknownVersion`, `DownNodes`, ...) prints its reason codes and exits
3 with nothing created. Otherwise it publishes a new config object
`swarm-upgrade-desired-<UTC stamp>` with that label (configs are immutable; the controller follows
the newest) and prints the plan it will follow. `--dry-run` stops before publishing.
Exit 0, 1 bad input, 2 usage, 3 refused, 4 cluster unreachable.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

import yaml

from controller import decision as d
from controller import safeyaml
from controller.catalog import CatalogError, load_catalog
from controller.commands import live
from controller.commands.plan import to_json, to_text
from controller.model import MAX_DECLARATION_BYTES, DeclarationError, load_desired_text
from controller.planner import plan
from controller.snapshot import Snapshot

API_VERSION = "swarm-upgrade.io/v1alpha1"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "set-version", help="ask the controller for another release (checked right away)",
        description="Check VERSION against the catalog, the channel rules and the live swarm, "
        "then publish it as a new labelled declaration config object and print the plan. "
        "Exit 0; 3 refused (nothing created); 1 bad input; 2 usage; 4 cluster unreachable.")
    parser.add_argument("version", metavar="VERSION", help="target release, e.g. 17.06.1-ce-azure1")
    parser.add_argument("--channel", help="release channel (default: the declaration's, else "
                        "the scale sets' channel tag)")
    parser.add_argument("--from-file", metavar="F", help="start from this declaration file "
                        "instead of the newest published one (its other settings are kept)")
    parser.add_argument("--dry-run", action="store_true", help="check and plan, publish nothing")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    live.add_connection_flags(parser)
    parser.set_defaults(func=run)


def _fail(code: int, message: str) -> int:
    print(message if code == live.EXIT_BAD_INPUT else f"swarm-upgrade set-version: {message}",
          file=sys.stderr)
    return code


def _channel_of(snapshot: Snapshot) -> str:
    tags = {s.tags.get("channel", "") for s in snapshot.scale_sets} - {""}
    return tags.pop() if len(tags) == 1 else "stable"


def new_document(base: bytes | None, version: str, channel: str) -> dict[str, Any]:
    """The base declaration with `spec.version`/`spec.channel` replaced (or a minimal one)."""
    doc: Any = safeyaml.load(base, MAX_DECLARATION_BYTES) if base else None
    if not isinstance(doc, dict):
        doc = {"apiVersion": API_VERSION, "kind": "SwarmUpgrade",
               "metadata": {"name": "swarm"}, "spec": {}}
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        spec = doc["spec"] = {}
    spec["channel"] = channel
    spec["version"] = version
    return dict(doc)


def config_name(now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{live.DESIRED_NAME_PREFIX}{stamp}-{secrets.token_hex(2)}"


def run(args: argparse.Namespace) -> int:
    try:
        opts = live.resolve_connection(args)
    except live.BadInput as err:
        return _fail(live.EXIT_USAGE, str(err))
    try:
        catalog = load_catalog(opts["catalog"])
    except CatalogError as err:
        return _fail(live.EXIT_BAD_INPUT, "\n".join(f"{opts['catalog']}: {p}"
                                                    for p in err.problems))
    try:
        view = live.read_live(opts, args.from_file)
    except live.Unreachable as err:
        return _fail(live.EXIT_UNREACHABLE, f"cannot reach the cluster: {err}")
    except live.BadInput as err:
        return _fail(live.EXIT_BAD_INPUT, str(err))
    now = time.time()
    snapshot = live.snapshot_of(view, now)
    base = view.declaration
    channel = args.channel
    if channel is None and base is not None:
        try:
            channel = load_desired_text(base.data).channel
        except DeclarationError:
            channel = None
    channel = channel or _channel_of(snapshot)
    try:
        doc = new_document(base.data if base else None, args.version, channel)
    except safeyaml.YamlError as err:
        origin = base.origin if base else "declaration"
        return _fail(live.EXIT_BAD_INPUT, "\n".join(f"{origin}: {p}" for p in err.problems))
    data = yaml.safe_dump(doc, sort_keys=False).encode()
    try:
        desired = load_desired_text(data)
    except DeclarationError as err:
        return _fail(live.EXIT_BAD_INPUT, "\n".join(f"set-version: {p}" for p in err.problems))
    decision = plan(desired, snapshot, view.parsed_progress(), catalog, now)
    refused = decision.verdict == d.REFUSED
    unchanged = base is not None and base.config_id and base.data == data and not args.from_file
    result: dict[str, Any] = {
        "refused": refused, "published": None, "dryRun": bool(args.dry_run),
        "declaration": {"name": desired.name, "channel": desired.channel,
                        "version": desired.version, "from": base.origin if base else "defaults"},
        "plan": to_json(decision, desired, snapshot, catalog),
    }
    if not refused and not args.dry_run and not unchanged:
        name = config_name(now)
        label = opts["desired_config_label"]
        key, _, value = label.partition("=")
        labels = {key: value, "swarm-upgrade.channel": desired.channel,
                  "swarm-upgrade.version": desired.version}
        try:
            config_id = live.publish(opts, name, data, labels)
        except live.Unreachable as err:
            return _fail(live.EXIT_UNREACHABLE, f"cannot publish the declaration: {err}")
        result["published"] = {"name": name, "id": config_id, "label": label}
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(_text(result, decision, desired, snapshot, catalog, unchanged=bool(unchanged)))
    return live.EXIT_REFUSED if refused else live.EXIT_OK


def _text(result: dict[str, Any], decision: d.Decision, desired: Any, snapshot: Snapshot,
          catalog: Any, unchanged: bool) -> str:
    lines = []
    decl = result["declaration"]
    if result["refused"]:
        codes = sorted({r.code for r in decision.reasons})
        lines.append(f"REFUSED ({', '.join(codes)}): {decl['channel']} {decl['version']} cannot "
                     "be applied to this swarm; nothing was published.")
    elif result["published"]:
        pub = result["published"]
        lines.append(f"Published {pub['name']} (label {pub['label']}): {decl['name']} wants "
                     f"{decl['channel']} {decl['version']}. The controller follows it now; watch "
                     "it with `swarm-upgrade status`.")
    elif unchanged:
        lines.append(f"Nothing to publish: {decl['from']} already asks for {decl['channel']} "
                     f"{decl['version']}.")
    else:
        lines.append(f"Dry run: {decl['channel']} {decl['version']} would be published "
                     f"(starting from {decl['from']}).")
    lines += ["", to_text(decision, desired, snapshot, catalog)]
    return "\n".join(lines)
