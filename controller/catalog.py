"""The release catalog: which Docker for Azure releases exist per channel, the VM image of each,
and which releases an upgrade to each one may start from.

The bundled `controller/catalog.yaml` is used unless a path is given (`--catalog`). A catalog is
validated against `crd/catalog.schema.json` and then for consistency (releases oldest first,
`upgradeFrom` naming older releases of the same channel, no image shared by two releases); every
problem is one line naming the field, as for declarations. A release's `template` (its ARM
template of the resource group, controller/arm_template.py) is loaded and statically checked here,
relative to the catalog file or from the bundled controller/templates/.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from controller import arm_template, safeyaml, schemas
from controller.arm_template import Template, TemplateError
from controller.problems import ABSENT, Problem, ProblemsError, format_path

MAX_CATALOG_BYTES: Final = 1024 * 1024
_VERSION: Final = re.compile(r"([0-9]{2})\.([0-9]{2})\.([0-9]{1,3})-ce-azure([0-9]{1,3})")
_IMAGE_KEYS: Final = ("publisher", "offer", "sku", "version")


def version_key(version: str) -> tuple[int, int, int, int]:
    """Sort key of a release name: `'17.06.1-ce-azure2'` -> `(17, 6, 1, 2)`.
    Raises ValueError if `version` is not `YY.MM.P-ce-azureN`."""
    match = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"{str(version)[:40]!r} is not a release name like 17.06.1-ce-azure1")
    year, month, patch, build = (int(g) for g in match.groups())
    return (year, month, patch, build)


@dataclass(frozen=True)
class ImageRef:
    """An Azure marketplace image reference (what a scale-set instance runs)."""

    publisher: str
    offer: str
    sku: str
    version: str

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ImageRef:
        """From `{publisher, offer, sku, version}` (extra keys ignored); ValueError if one is
        missing or not a string."""
        values: list[str] = []
        for key in _IMAGE_KEYS:
            value = d.get(key)
            if not isinstance(value, str):
                raise ValueError(f"image.{key} is missing or not a string")
            values.append(value)
        return cls(*values)

    def to_dict(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in _IMAGE_KEYS}

    def __str__(self) -> str:
        return f"{self.publisher}:{self.offer}:{self.sku}:{self.version}"  # Azure's URN form


@dataclass(frozen=True)
class Release:
    """One release of a channel."""

    channel: str
    version: str
    image: ImageRef
    # Resolved: the catalog's `upgradeFrom`, or (previous release,), or () for the first one.
    upgrade_from: tuple[str, ...]
    system_services: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    # The release's ARM template of the resource group with its parameter rules, if any.
    template: Template | None = field(default=None, hash=False)

    @property
    def key(self) -> tuple[int, int, int, int]:
        return version_key(self.version)


class CatalogError(ProblemsError):
    """The catalog is unusable; `problems` lists every reason, one line each."""


class Catalog:
    """The releases of every channel, oldest first."""

    def __init__(self, releases: Mapping[str, tuple[Release, ...]], source: str = "") -> None:
        self._releases: dict[str, tuple[Release, ...]] = dict(releases)
        self._by_version = {
            (r.channel, r.version): r for rs in self._releases.values() for r in rs
        }
        self._by_image = {r.image: r for rs in self._releases.values() for r in rs}
        self.source = source  # where it was loaded from, for messages ("bundled" or a path)

    def __repr__(self) -> str:
        return f"Catalog(source={self.source!r}, channels={self.channels()!r})"

    def channels(self) -> list[str]:
        return list(self._releases)

    def releases(self, channel: str) -> list[Release]:
        """The releases of `channel`, oldest first (empty for an unknown channel)."""
        return list(self._releases.get(channel, ()))

    def release(self, channel: str, version: str) -> Release | None:
        return self._by_version.get((channel, version))

    def release_for_image(self, image: ImageRef) -> Release | None:
        """The release whose image equals `image` in all four fields."""
        return self._by_image.get(image)

    def latest(self, channel: str) -> Release | None:
        releases = self._releases.get(channel, ())
        return releases[-1] if releases else None

    def next_release(self, channel: str, from_version: str) -> Release | None:
        """The nearest newer release of `channel` whose `upgrade_from` contains `from_version`."""
        try:
            start = version_key(from_version)
        except ValueError:
            return None
        for release in self._releases.get(channel, ()):
            if release.key > start and from_version in release.upgrade_from:
                return release
        return None

    def upgrade_path(
        self, channel: str, from_version: str, to_version: str
    ) -> list[Release] | None:
        """The fewest upgrade steps from `from_version` to `to_version` within `channel`, each
        allowed by the target's `upgrade_from` (e.g. 17.03.0 -> [17.06.1] directly, since 17.06.1
        accepts 17.03.x). `[]` if already there, None if there is no path (or a downgrade)."""
        if from_version == to_version:
            return [] if self.release(channel, to_version) else None
        releases = self._releases.get(channel, ())
        came_from: dict[str, str] = {from_version: ""}
        queue = deque([from_version])
        while queue:
            current = queue.popleft()
            for release in reversed(releases):  # newest first: prefer the biggest allowed step
                if current in release.upgrade_from and release.version not in came_from:
                    came_from[release.version] = current
                    if release.version == to_version:
                        return self._walk_back(channel, came_from, to_version)
                    queue.append(release.version)
        return None

    def _walk_back(self, channel: str, came_from: dict[str, str], to_version: str) -> list[Release]:
        path: list[Release] = []
        version = to_version
        while came_from[version]:
            found = self.release(channel, version)
            assert found is not None
            path.append(found)
            version = came_from[version]
        return path[::-1]


def parse_catalog(
    doc: object, source: str = "", templates_dir: str | os.PathLike[str] | None = None
) -> Catalog:
    """A `Catalog` from loaded YAML/JSON data; raises `CatalogError` listing every problem.

    Release templates are looked up in `templates_dir` (default: the directory of `source` when
    it is a path), then among the bundled ones."""
    odd = safeyaml.plain_problem(doc)
    problems = [odd] if odd else schemas.validate(doc, schemas.catalog_schema())
    if problems:
        raise CatalogError(problems)
    assert isinstance(doc, dict)
    releases: dict[str, tuple[Release, ...]] = {}
    owner_of_image: dict[ImageRef, str] = {}
    base = (
        arm_template.base_dir_of(source) if templates_dir is None else Path(templates_dir)
    )
    for channel, entries in doc["channels"].items():
        built = _parse_channel(channel, entries, problems, base)
        for index, release in enumerate(built):
            first = owner_of_image.setdefault(release.image, f"{channel} {release.version}")
            if first != f"{channel} {release.version}":
                path = format_path(["channels", channel, index, "image"])
                problems.append(Problem(path, str(release.image), f"is also the image of {first}"))
        releases[channel] = built
    if problems:
        raise CatalogError(problems)
    return Catalog(releases, source)


def _template(
    entry: Mapping[str, Any], at: list[object], base: Path | None, problems: list[Problem]
) -> Template | None:
    rules = arm_template.rules_from(entry.get("parameters", {}))
    ref = entry.get("template")
    if ref is None:
        if rules:
            path = format_path([*at, "parameters"])
            problems.append(Problem(path, ABSENT, "needs a template to apply to"))
        return None
    try:
        return arm_template.load(ref, base, rules)
    except TemplateError as err:
        problems.append(Problem(format_path([*at, "template"]), ref, str(err)))
        return None


def _parse_channel(
    channel: str, entries: list[Any], problems: list[Problem], base: Path | None = None
) -> tuple[Release, ...]:
    built: list[Release] = []
    for index, entry in enumerate(entries):
        version: str = entry["version"]
        at = ["channels", channel, index]
        if built and version_key(version) <= built[-1].key:
            problems.append(
                Problem(
                    format_path([*at, "version"]),
                    version,
                    f"is not newer than the release before it ({built[-1].version}); "
                    "list releases oldest first, each once",
                )
            )
            continue
        if "upgradeFrom" in entry:
            upgrade_from = tuple(entry["upgradeFrom"])
            older = {r.version for r in built}
            for position, source in enumerate(upgrade_from):
                if source not in older:
                    problems.append(
                        Problem(
                            format_path([*at, "upgradeFrom", position]),
                            source,
                            f"is not an older release of channel {channel}",
                        )
                    )
        else:
            upgrade_from = (built[-1].version,) if built else ()
        services = MappingProxyType(dict(entry.get("systemServices", {})))
        image = ImageRef.from_dict(entry["image"])
        template = _template(entry, at, base, problems)
        built.append(Release(channel, version, image, upgrade_from, services, template))
    return tuple(built)


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """The catalog at `path`, or the bundled one when `path` is None; raises `CatalogError`."""
    if path is None:
        return _bundled()
    try:
        doc = safeyaml.load_file(path, MAX_CATALOG_BYTES)
    except safeyaml.YamlError as err:
        raise CatalogError(err.problems) from None
    return parse_catalog(doc, os.fspath(path))


@functools.cache
def _bundled() -> Catalog:
    data = (importlib.resources.files("controller") / "catalog.yaml").read_bytes()
    try:
        doc = safeyaml.load(data, MAX_CATALOG_BYTES)
    except safeyaml.YamlError as err:
        raise CatalogError(err.problems) from None
    return parse_catalog(doc, "bundled")
