"""The upgrade rules that refuse a declaration or make the planner wait, one reason code each.

Pure: every check reads a `ClusterView` (indexes over one snapshot) and returns `Reason`s.
Nodes in flight (recorded in the progress) are the step machine's business (controller/steps.py)
and are left out of these checks: their old entries go Down and their instances update on purpose.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from controller import decision as d
from controller.catalog import Catalog, ImageRef, Release, version_key
from controller.decision import Reason
from controller.model import Desired
from controller.snapshot import Instance, Node, ScaleSet, Snapshot

MIN_MANAGERS = 3
# The controller's own service (adapters/swarm.py labels it the same way) is not workload.
CONTROLLER_SERVICE_LABEL = "swarm-upgrade.controller"
LIST_LIMIT = 5  # names listed in one reason message before "and N more"


def names(items: Iterable[str]) -> str:
    """`a, b, c` (at most LIST_LIMIT, then `and N more`)."""
    items = list(items)
    shown = ", ".join(items[:LIST_LIMIT])
    more = len(items) - LIST_LIMIT
    return f"{shown} and {more} more" if more > 0 else shown


@dataclass(frozen=True)
class Member:
    """A scale-set instance of the rollout, with the scale set it belongs to."""

    scale_set: ScaleSet
    instance: Instance

    @property
    def hostname(self) -> str:
        return self.instance.computer_name


class ClusterView:
    """Indexes over one snapshot, restricted to the declaration's two scale sets."""

    def __init__(self, desired: Desired, snapshot: Snapshot, catalog: Catalog) -> None:
        self.desired = desired
        self.snapshot = snapshot
        self.catalog = catalog
        self.self_hostname = snapshot.self_hostname
        self.node_by_id: dict[str, Node] = {n.id: n for n in snapshot.nodes}
        self.entries: dict[str, list[Node]] = {}
        for n in snapshot.nodes:
            self.entries.setdefault(n.hostname, []).append(n)
        self._live: dict[str, Node | None] = {}
        self._releases: dict[ImageRef, Release | None] = {}
        self.sets: dict[str, ScaleSet] = {}
        self.members: dict[str, Member] = {}
        for name in (desired.manager_scale_set, desired.worker_scale_set):
            ss = snapshot.scale_set(name)
            if ss is None:
                continue
            self.sets[name] = ss
            for inst in ss.instances:
                self.members[inst.computer_name] = Member(ss, inst)

    def live(self, hostname: str, exclude_id: str = "") -> Node | None:
        """The newest entry of `hostname` that is not Down (and not `exclude_id`)."""
        if not exclude_id and hostname in self._live:
            return self._live[hostname]
        found = [
            n for n in self.entries.get(hostname, ()) if not n.down and n.id != exclude_id
        ]
        best = max(found, key=lambda n: (n.created_at, n.id)) if found else None
        if not exclude_id:
            self._live[hostname] = best
        return best

    def instance(self, scale_set: str, instance_id: str) -> Instance | None:
        ss = self.sets.get(scale_set)
        if ss is None:
            return None
        for inst in ss.instances:
            if inst.instance_id == instance_id:
                return inst
        return None

    def release_of(self, image: ImageRef | None) -> Release | None:
        if image is None:
            return None
        if image not in self._releases:
            self._releases[image] = self.catalog.release_for_image(image)
        return self._releases[image]


def check_spec(desired: Desired, snapshot: Snapshot, catalog: Catalog) -> list[Reason]:
    """InvalidSpec / UnknownVersion: problems of the declaration itself against this cluster."""
    out: list[Reason] = []
    if desired.manager_scale_set == desired.worker_scale_set:
        out.append(
            Reason(
                d.INVALID_SPEC,
                f"managerScaleSet and workerScaleSet are both "
                f"{desired.manager_scale_set!r}; they must name two scale sets",
            )
        )
    for field, name in (
        ("managerScaleSet", desired.manager_scale_set),
        ("workerScaleSet", desired.worker_scale_set),
    ):
        if snapshot.scale_set(name) is None:
            known = names(s.name for s in snapshot.scale_sets) or "none"
            out.append(
                Reason(
                    d.INVALID_SPEC,
                    f"{field} {name!r} is not a scale set of this cluster (found: {known})",
                )
            )
    me = snapshot.self_hostname
    if me and not any(n.hostname == me and n.role == "manager" for n in snapshot.nodes):
        out.append(Reason(d.INVALID_SPEC, f"self {me!r} is not a manager of this swarm"))
    if catalog.release(desired.channel, desired.version) is None:
        if desired.channel not in catalog.channels():
            known = names(catalog.channels())
            msg = f"channel {desired.channel!r} is not in the catalog (channels: {known})"
        else:
            latest = [r.version for r in catalog.releases(desired.channel)][-3:]
            msg = (
                f"version {desired.version!r} is not a release of channel "
                f"{desired.channel!r} (latest: {', '.join(latest)})"
            )
        out.append(Reason(d.UNKNOWN_VERSION, msg))
    return out


def check_cluster(view: ClusterView, target: Release, in_flight: Collection[str]) -> list[Reason]:
    """CrossChannel, UnknownImage, VersionSkip, Downgrade, TooFewManagers, UnmatchedNode.

    Downgrades come back as a Warning (not a refusal) when the declaration allows them.
    """
    desired = view.desired
    out: list[Reason] = []
    for ss in view.sets.values():
        tag = ss.tags.get("channel")
        if tag is not None and tag != desired.channel:
            out.append(
                Reason(
                    d.CROSS_CHANNEL,
                    f"scale set {ss.name} runs channel {tag!r}, the declaration asks for "
                    f"{desired.channel!r}; upgrades never cross channels",
                )
            )
    unknown: list[str] = []
    cross: list[str] = []
    skips: dict[str, list[str]] = {}
    downs: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}  # release version -> "ok" | "down" | "skip"
    for host, m in sorted(view.members.items()):
        if host in in_flight or m.instance.image == target.image:
            continue
        rel = view.release_of(m.instance.image)
        if rel is None:
            img = m.instance.image
            shown = f"{img.sku}/{img.version}" if img else "no image"
            unknown.append(f"{host} ({shown})")
        elif rel.channel != desired.channel:
            cross.append(f"{host} ({rel.channel} {rel.version})")
        else:
            if rel.version not in kinds:
                kinds[rel.version] = _kind_of_step(view.catalog, rel, target)
            if kinds[rel.version] == "down":
                downs.setdefault(rel.version, []).append(host)
            elif kinds[rel.version] == "skip":
                skips.setdefault(rel.version, []).append(host)
    if unknown:
        out.append(
            Reason(
                d.UNKNOWN_IMAGE,
                f"instances run an image that is not in the catalog: {names(unknown)}",
            )
        )
    if cross:
        out.append(
            Reason(
                d.CROSS_CHANNEL,
                f"instances run another channel than {desired.channel!r}: {names(cross)}",
            )
        )
    for version, hosts in sorted(skips.items()):
        nxt = view.catalog.next_release(desired.channel, version)
        hint = f"upgrade to {nxt.version} first" if nxt else "no release upgrades from it"
        out.append(
            Reason(
                d.VERSION_SKIP,
                f"{names(hosts)} run {version}; {target.version} upgrades only from "
                f"{', '.join(_upgrade_from(view.catalog, target)) or 'nothing'}: {hint}",
            )
        )
    for version, hosts in sorted(downs.items()):
        if desired.allow_downgrade:
            out.append(
                Reason(
                    d.DOWNGRADE,
                    f"downgrading {names(hosts)} from {version} to {target.version}: "
                    f"downgrades are not tested",
                    d.WARNING,
                )
            )
        else:
            out.append(
                Reason(
                    d.DOWNGRADE,
                    f"{names(hosts)} run {version}, newer than {target.version}; "
                    f"set allowDowngrade: true to downgrade (untested)",
                )
            )
    managers = manager_hosts(view, in_flight)
    if len(managers) < MIN_MANAGERS:
        out.append(
            Reason(
                d.TOO_FEW_MANAGERS,
                f"the swarm has {len(managers)} manager(s); at least {MIN_MANAGERS} are "
                f"needed: reimaging a 1- or 2-manager swarm loses raft quorum, and reimaging a "
                f"single manager destroys the raft state",
            )
        )
    out.extend(check_unmatched(view, in_flight))
    return out


def _kind_of_step(catalog: Catalog, rel: Release, target: Release) -> str:
    if version_key(rel.version) > version_key(target.version):
        return "down"
    return "ok" if rel.version in _upgrade_from(catalog, target) else "skip"


def _upgrade_from(catalog: Catalog, target: Release) -> tuple[str, ...]:
    if target.upgrade_from:
        return target.upgrade_from
    older = [
        r.version
        for r in catalog.releases(target.channel)
        if version_key(r.version) < version_key(target.version)
    ]
    return tuple(older[-1:])


def manager_hosts(view: ClusterView, in_flight: Collection[str]) -> set[str]:
    """Hostnames that are (or, while in flight, were) managers and are not Down."""
    hosts = {n.hostname for n in view.snapshot.nodes if n.role == "manager" and not n.down}
    return hosts | set(in_flight)


def check_unmatched(view: ClusterView, in_flight: Collection[str]) -> list[Reason]:
    """UnmatchedNode: a live swarm node without an instance, or an instance without a node."""
    out: list[Reason] = []
    orphans = sorted(
        f"{n.hostname} ({n.id[:12]})"
        for n in view.snapshot.nodes
        if not n.down and n.hostname and n.hostname not in view.members
        and n.hostname not in in_flight
    )
    if orphans:
        sets = " or ".join(view.sets)
        out.append(
            Reason(d.UNMATCHED_NODE, f"swarm nodes with no instance in {sets}: {names(orphans)}")
        )
    lonely = sorted(
        f"{m.scale_set.name}/{m.instance.instance_id} ({host})"
        for host, m in view.members.items()
        if host not in view.entries and host not in in_flight
    )
    if lonely:
        out.append(
            Reason(
                d.UNMATCHED_NODE,
                f"instances with no swarm node of the same hostname: {names(lonely)}",
            )
        )
    return out


def foreign_down_nodes(view: ClusterView, in_flight: Collection[str]) -> list[Node]:
    """Down node entries of hosts not in flight (the step machine owns those: their old entry
    goes Down on purpose, a new entry going Down halts the rollout with NodeLost). A manager
    that raft still reaches is not one of them (`Node.down`): check_managers waits for it."""
    return sorted(
        (n for n in view.snapshot.nodes if n.down and n.hostname not in in_flight),
        key=lambda n: (n.hostname, n.id),
    )


def down_nodes_reason(nodes: list[Node], removing: bool) -> Reason:
    listed = "; ".join(f"{n.hostname}: docker node rm {n.id}" for n in nodes[:LIST_LIMIT])
    more = f"; and {len(nodes) - LIST_LIMIT} more" if len(nodes) > LIST_LIMIT else ""
    if removing:
        return Reason(d.DOWN_NODES, f"removing Down nodes first (removeDownNodes): {listed}{more}")
    return Reason(
        d.DOWN_NODES,
        f"remove Down nodes before upgrading ({listed}{more}), or set removeDownNodes: true",
    )


def quorum_holds(view: ClusterView) -> bool:
    """More than half of the raft members (manager entries, any state) are Ready and Reachable."""
    members = [n for n in view.snapshot.nodes if n.role == "manager"]
    healthy = [n for n in members if n.healthy_manager]
    return 2 * len(healthy) > len(members)


def demote_blockers(nodes: Iterable[Node], node_id: str) -> list[str]:
    """The other managers that are not Ready and Reachable (`Node.healthy_manager`), as
    `hostname (state, reachability)`: demoting `node_id` is safe only when there are none.

    Demoting a manager shrinks the raft; if another manager is out at the same moment (crashed,
    frozen, partitioned) the rest may have no majority (3 managers: one demoted, one frozen, one
    left of two members). Stricter than a majority on purpose: a manager the leader has not yet
    noticed is out still looks healthy, so no margin is given away. The planner asks this before
    it demotes (steps.py, with `managerSettle` between two observations) and the runtime asks it
    again on a fresh node list right before the call.
    """
    return sorted(
        f"{n.hostname or n.id[:12]} ({n.state}, {n.reachability or 'unknown'})"
        for n in nodes
        if n.role == "manager" and n.id != node_id and not n.healthy_manager
    )


def check_managers(view: ClusterView, in_flight: Collection[str]) -> list[Reason]:
    """ManagerUnreachable: never act while another manager (not in flight) is unhealthy."""
    bad = sorted(
        f"{n.hostname} ({n.state}, {n.reachability or 'unknown'})"
        for n in view.snapshot.nodes
        if n.role == "manager"
        and not n.down
        and n.hostname != view.self_hostname
        and n.hostname not in in_flight
        and not n.healthy_manager
    )
    if bad:
        return [
            Reason(
                d.MANAGER_UNREACHABLE,
                f"waiting: managers not Ready and Reachable: {names(bad)}",
                d.WARNING,
            )
        ]
    if not quorum_holds(view):
        return [
            Reason(
                d.MANAGER_UNREACHABLE,
                "waiting: fewer than half of the raft members are Ready and Reachable",
                d.WARNING,
            )
        ]
    return []


def services_below_desired(snapshot: Snapshot) -> list[str]:
    """Services (not the controller's own) with fewer running tasks than desired, as
    `name (running/desired)`; none when the services were not observed.

    Draining a node only waits for its tasks to stop; swarm starts their replacements elsewhere,
    which takes seconds (longer on a loaded host). Draining the next node before they run can
    take the last running tasks of a service down (reliability campaign, swarm-hang: the sample
    service had 0 of 4 tasks running as the next node was drained).
    """
    return sorted(
        f"{s.name} ({s.running_tasks}/{s.desired_tasks})"
        for s in snapshot.observed.services or ()
        if CONTROLLER_SERVICE_LABEL not in s.labels and s.running_tasks < s.desired_tasks
    )


def check_transitions(view: ClusterView, in_flight: Collection[str]) -> list[Reason]:
    """NodeInTransition: instances or nodes changing that the rollout did not touch."""
    # A node that just joined is listed before it reported its description (no hostname yet).
    busy: list[str] = [f"a node entry {n.id[:12]} without a hostname yet (joining)"
                       for n in view.snapshot.nodes if not n.hostname and not n.down]
    for host, m in sorted(view.members.items()):
        if host in in_flight:
            continue
        if m.instance.provisioning_state != "Succeeded":
            busy.append(f"{host} (instance {m.instance.provisioning_state})")
            continue
        entries = [n for n in view.entries.get(host, ()) if not n.down]
        if len(entries) > 1:
            busy.append(f"{host} ({len(entries)} live node entries)")
        elif entries and not (entries[0].ready or entries[0].healthy_manager):
            busy.append(f"{host} (node {entries[0].state})")
    if busy:
        return [
            Reason(
                d.NODE_IN_TRANSITION, f"waiting for nodes the rollout did not start: {names(busy)}"
            )
        ]
    return []
