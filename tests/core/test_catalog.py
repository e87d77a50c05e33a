"""The release catalog: the bundled file, the seed's upgrade rules, lookups, and bad catalogs."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest

from controller.catalog import (
    Catalog,
    CatalogError,
    ImageRef,
    load_catalog,
    parse_catalog,
    version_key,
)


def image(sku: str, version: str) -> dict[str, str]:
    return {"publisher": "docker", "offer": "docker4azure", "sku": sku, "version": version}


def small_doc() -> dict[str, Any]:
    return {
        "channels": {
            "stable": [
                {"version": "17.03.0-ce-azure1", "image": image("stable", "17.03.0")},
                {"version": "17.03.1-ce-azure1", "image": image("stable", "17.03.1")},
                {
                    "version": "17.06.0-ce-azure1",
                    "image": image("stable", "17.06.0"),
                    "upgradeFrom": ["17.03.0-ce-azure1", "17.03.1-ce-azure1"],
                    "systemServices": {"meta": "docker4x/meta-azure:17.06.0-ce-azure1"},
                    "notes": "extra fields are allowed",
                },
            ]
        },
        "publishedAt": "2017-08-01",
    }


@pytest.fixture(scope="module")
def bundled() -> Catalog:
    return load_catalog()


def test_bundled_catalog_loads_with_three_channels(bundled: Catalog) -> None:
    assert bundled.channels() == ["stable", "edge", "test"]
    assert bundled.source == "bundled"
    for channel in bundled.channels():
        versions = [r.version for r in bundled.releases(channel)]
        assert versions == sorted(versions, key=version_key), "oldest first"
        assert all(r.channel == channel for r in bundled.releases(channel))


def test_seed_example_17_06_1_stable_accepts_17_03_and_17_06_0(bundled: Catalog) -> None:
    target = bundled.release("stable", "17.06.1-ce-azure1")
    assert target is not None
    for source in ("17.03.0-ce-azure1", "17.03.1-ce-azure1", "17.03.2-ce-azure1",
                   "17.06.0-ce-azure1"):
        assert source in target.upgrade_from
        assert bundled.release("stable", source) is not None
    # Not from another channel's release, not from itself, not from a newer one.
    assert "17.05.0-ce-azure1" not in target.upgrade_from
    assert bundled.release("stable", "17.05.0-ce-azure1") is None
    assert bundled.release("edge", "17.05.0-ce-azure1") is not None
    assert "17.06.1-ce-azure1" not in target.upgrade_from
    assert "17.06.2-ce-azure1" not in target.upgrade_from


def test_seed_example_edge_17_06_1_to_17_07_0(bundled: Catalog) -> None:
    nxt = bundled.next_release("edge", "17.06.1-ce-azure1")
    assert nxt is not None and nxt.version == "17.07.0-ce-azure1"


def test_default_upgrade_from_is_the_previous_release(bundled: Catalog) -> None:
    stable = bundled.releases("stable")
    assert stable[0].upgrade_from == ()
    after = {r.version: r for r in stable}
    assert after["17.06.2-ce-azure1"].upgrade_from == ("17.06.1-ce-azure1",)
    assert after["17.03.1-ce-azure1"].upgrade_from == ("17.03.0-ce-azure1",)
    edge = bundled.releases("edge")
    for previous, release in itertools.pairwise(edge):
        assert release.upgrade_from == (previous.version,)


def test_release_for_image_needs_all_four_fields_equal(bundled: Catalog) -> None:
    found = bundled.release_for_image(ImageRef("docker", "docker4azure", "stable", "17.06.0"))
    assert found is not None and (found.channel, found.version) == ("stable", "17.06.0-ce-azure1")
    found = bundled.release_for_image(ImageRef("docker", "docker4azure", "edge", "17.06.0"))
    assert found is not None and found.channel == "edge"
    for near_miss in (
        ImageRef("docker", "docker4azure", "stable", "17.06.9"),
        ImageRef("other", "docker4azure", "stable", "17.06.0"),
        ImageRef("docker", "docker4azur", "stable", "17.06.0"),
        ImageRef("docker", "docker4azure", "beta", "17.06.0"),
    ):
        assert bundled.release_for_image(near_miss) is None


def test_image_ref_round_trip_and_errors() -> None:
    ref = ImageRef.from_dict({**image("stable", "17.06.1"), "exactVersion": "ignored"})
    assert ref == ImageRef("docker", "docker4azure", "stable", "17.06.1")
    assert ref.to_dict() == image("stable", "17.06.1")
    assert str(ref) == "docker:docker4azure:stable:17.06.1"
    with pytest.raises(ValueError, match=r"image\.sku"):
        ImageRef.from_dict({"publisher": "docker", "offer": "docker4azure", "version": "1"})
    with pytest.raises(ValueError, match=r"image\.version"):
        ImageRef.from_dict({**image("stable", "x"), "version": 17})


def test_system_services_of_a_release(bundled: Catalog) -> None:
    release = bundled.release("stable", "17.06.1-ce-azure1")
    assert release is not None
    assert release.system_services["meta"] == "docker4x/meta-azure:17.06.1-ce-azure1"
    with pytest.raises(TypeError):
        release.system_services["meta"] = "changed"  # type: ignore[index]
    hash(release)  # usable as a dict key / in sets


def test_next_release(bundled: Catalog) -> None:
    def nxt(channel: str, version: str) -> str | None:
        found = bundled.next_release(channel, version)
        return None if found is None else found.version

    assert nxt("stable", "17.03.0-ce-azure1") == "17.03.1-ce-azure1"
    assert nxt("stable", "17.03.2-ce-azure1") == "17.06.0-ce-azure1"
    assert nxt("stable", "17.06.0-ce-azure1") == "17.06.1-ce-azure1"
    assert nxt("stable", "17.06.2-ce-azure1") == "17.09.0-ce-azure1"
    assert nxt("stable", "17.12.0-ce-azure1") is None  # newest
    assert nxt("stable", "17.05.0-ce-azure1") is None  # an edge release
    assert nxt("nightly", "17.03.0-ce-azure1") is None
    assert nxt("stable", "garbage") is None


def test_upgrade_path_takes_the_biggest_allowed_steps(bundled: Catalog) -> None:
    def path(frm: str, to: str) -> list[str] | None:
        found = bundled.upgrade_path("stable", frm, to)
        return None if found is None else [r.version for r in found]

    assert path("17.03.0-ce-azure1", "17.06.1-ce-azure1") == ["17.06.1-ce-azure1"]
    assert path("17.03.0-ce-azure1", "17.06.2-ce-azure1") == [
        "17.06.1-ce-azure1", "17.06.2-ce-azure1"]
    assert path("17.06.1-ce-azure1", "17.06.1-ce-azure1") == []
    assert path("17.06.1-ce-azure1", "17.03.0-ce-azure1") is None  # downgrade
    assert path("17.05.0-ce-azure1", "17.06.1-ce-azure1") is None  # other channel


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("17.06.1-ce-azure2", (17, 6, 1, 2)),
        ("17.03.0-ce-azure1", (17, 3, 0, 1)),
        ("18.12.10-ce-azure11", (18, 12, 10, 11)),
    ],
)
def test_version_key(text: str, key: tuple[int, int, int, int]) -> None:
    assert version_key(text) == key


@pytest.mark.parametrize(
    "text",
    ["17.6", "17.06.1", "17.06.1-ce-azure", "17.06.1-ee-azure1", "v17.06.1-ce-azure1",
     "17.06.1-ce-azure1\n", "17.06.1-ce-azure1; rm -rf /", "", "1.2.3-ce-azure1"],
)
def test_version_key_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        version_key(text)


def test_version_key_orders_numerically() -> None:
    assert version_key("17.10.0-ce-azure1") > version_key("17.09.1-ce-azure1")
    assert version_key("17.06.1-ce-azure10") > version_key("17.06.1-ce-azure9")


def test_extra_fields_and_optional_system_services() -> None:
    doc = small_doc()
    del doc["channels"]["stable"][0]["image"]
    doc["channels"]["stable"][0]["image"] = {**image("stable", "17.03.0"), "extra": 1}
    catalog = parse_catalog(doc)
    first = catalog.releases("stable")[0]
    assert dict(first.system_services) == {}
    assert catalog.releases("stable")[2].upgrade_from == ("17.03.0-ce-azure1", "17.03.1-ce-azure1")


def test_load_catalog_from_a_path(tmp_path: Path) -> None:
    import json

    path = tmp_path / "catalog.json"  # JSON is YAML
    path.write_text(json.dumps(small_doc()))
    catalog = load_catalog(path)
    assert catalog.source == str(path)
    assert [r.version for r in catalog.releases("stable")][-1] == "17.06.0-ce-azure1"


def broken(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(small_doc())
    change(doc)
    return doc


def _set(doc: dict[str, Any], path: list[Any], value: Any) -> None:
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


BAD_CATALOGS: list[tuple[str, Any, str]] = [
    ("not a mapping", lambda d: d.clear(), "channels: is required"),
    ("channel not a list", lambda d: _set(d, ["channels", "stable"], {"a": 1}),
     "channels.stable: a mapping of 1 key(s) must be a list"),
    ("empty channel", lambda d: _set(d, ["channels", "stable"], []),
     "channels.stable: a list of 0 item(s) must not be empty"),
    ("bad channel name", lambda d: _set(d, ["channels", "Stable!"], d["channels"].pop("stable")),
     "channels['Stable!']: is not an allowed name"),
    ("version missing", lambda d: d["channels"]["stable"][1].pop("version"),
     "channels.stable[1].version: is required"),
    ("malformed version", lambda d: _set(d, ["channels", "stable", 1, "version"], "17.3"),
     "channels.stable[1].version: '17.3' must be a release name YY.MM.P-ce-azureN"),
    ("image field missing", lambda d: d["channels"]["stable"][0]["image"].pop("sku"),
     "channels.stable[0].image.sku: is required"),
    ("image field wrong type", lambda d: _set(d, ["channels", "stable", 0, "image", "version"], 17),
     "channels.stable[0].image.version: 17 must be a string"),
    ("upgradeFrom not a list", lambda d: _set(d, ["channels", "stable", 2, "upgradeFrom"], "x"),
     "channels.stable[2].upgradeFrom: 'x' must be a list"),
    ("upgradeFrom unknown release",
     lambda d: _set(d, ["channels", "stable", 2, "upgradeFrom"], ["17.05.0-ce-azure1"]),
     "channels.stable[2].upgradeFrom[0]: '17.05.0-ce-azure1' is not an older release of channel "
     "stable"),
    ("upgradeFrom a newer release",
     lambda d: _set(d, ["channels", "stable", 1, "upgradeFrom"], ["17.06.0-ce-azure1"]),
     "channels.stable[1].upgradeFrom[0]: '17.06.0-ce-azure1' is not an older release"),
    ("out of order", lambda d: d["channels"]["stable"].reverse(),
     "channels.stable[1].version: '17.03.1-ce-azure1' is not newer than the release before it"),
    ("duplicate version",
     lambda d: _set(d, ["channels", "stable", 1, "version"], "17.03.0-ce-azure1"),
     "channels.stable[1].version: '17.03.0-ce-azure1' is not newer"),
    ("shared image",
     lambda d: _set(d, ["channels", "stable", 1, "image"], image("stable", "17.03.0")),
     "channels.stable[1].image: 'docker:docker4azure:stable:17.03.0' is also the image of stable "
     "17.03.0-ce-azure1"),
    ("system service not a string",
     lambda d: _set(d, ["channels", "stable", 2, "systemServices"], {"meta": 3}),
     "channels.stable[2].systemServices.meta: 3 must be a string"),
]


@pytest.mark.parametrize(("name", "change", "line"), BAD_CATALOGS, ids=[b[0] for b in BAD_CATALOGS])
def test_invalid_catalogs_are_rejected_with_field_lines(name: str, change: Any, line: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(broken(change))
    lines = str(info.value).split("\n")
    assert any(candidate.startswith(line) for candidate in lines), lines
    assert [str(p) for p in info.value.problems] == lines


def test_catalog_that_is_not_a_mapping() -> None:
    with pytest.raises(CatalogError, match=r"^document: a list of 1 item\(s\) must be a mapping$"):
        parse_catalog(["x"])


def test_catalog_file_problems_are_document_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"channels: &a {}\nother: *a\n")
    with pytest.raises(CatalogError, match=r"^document: YAML aliases"):
        load_catalog(path)
    with pytest.raises(CatalogError, match=r"^document: cannot read .*missing"):
        load_catalog(tmp_path / "missing.yaml")
