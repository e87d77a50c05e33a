"""Release templates in the catalog: loading (bundled, relative to the catalog file), the static
checks with one line naming the field, and the parameters derived from the last deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller import arm_template
from controller.arm_template import ParameterRule, Template, derive_parameters
from controller.catalog import CatalogError, load_catalog, parse_catalog

IMAGE = {"publisher": "docker", "offer": "docker4azure", "sku": "stable", "version": "17.06.0"}


def template_body(**params: Any) -> dict[str, Any]:
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": params,
        "resources": [{"type": "Microsoft.Storage/storageAccounts", "name": "x"}],
    }


def catalog_doc(**release: Any) -> dict[str, Any]:
    return {"channels": {"stable": [{"version": "17.06.0-ce-azure1", "image": IMAGE, **release}]}}


def write(path: Path, body: object) -> Path:
    path.write_text(json.dumps(body) if not isinstance(body, str) else body)
    return path


def test_bundled_releases_have_templates_that_keep_the_scale_sets_out() -> None:
    catalog = load_catalog()
    for channel in catalog.channels():
        for release in catalog.releases(channel):
            assert release.template is not None, release.version
            types = [t.lower() for t in release.template.resource_types()]
            assert not any(t.startswith("microsoft.compute/") for t in types)
            rules = {r.name: r for r in release.template.rules}
            assert rules["swarmVersion"].value == release.version
            assert rules["channel"].value == channel
    v2 = catalog.release("stable", "17.06.1-ce-azure1")
    assert v2 is not None and v2.template is not None
    assert v2.template.source == "docker4azure-v2.json"
    assert len(v2.template.digest) == 64


def test_template_relative_to_the_catalog_file(tmp_path: Path) -> None:
    write(tmp_path / "rg.json", template_body(channel={"type": "string"}))
    doc = catalog_doc(template="rg.json", parameters={"channel": {"value": "stable"}})
    (tmp_path / "catalog.json").write_text(json.dumps(doc))
    release = load_catalog(tmp_path / "catalog.json").release("stable", "17.06.0-ce-azure1")
    assert release is not None and release.template is not None
    assert release.template.declared() == {"channel": {"type": "string"}}
    assert release.template.rules == (ParameterRule("channel", value="stable", fixed=True),)


def test_a_bare_name_falls_back_to_the_bundled_templates(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text(json.dumps(catalog_doc(template="docker4azure-v1.json")))
    release = load_catalog(tmp_path / "catalog.json").release("stable", "17.06.0-ce-azure1")
    assert release is not None and release.template is not None
    assert "storageAccountPrefix" in release.template.declared()


BAD_TEMPLATES: list[tuple[str, object, str]] = [
    ("not json", "{nope", "is not JSON"),
    ("not an object", [1, 2], "is not a JSON object"),
    ("no resources", {"$schema": "s", "contentVersion": "1"}, "has no 'resources'"),
    ("duplicate key", '{"a": 1, "a": 2}', "has the key 'a' twice"),
    (
        "a scale set",
        {**template_body(), "resources": [{"type": "Microsoft.Compute/virtualMachineScaleSets"}]},
        "resources[0] is a Microsoft.Compute/virtualMachineScaleSets: scale sets are reimaged",
    ),
    ("untyped parameter", template_body(p={"defaultValue": 1}), "parameters.p has no 'type'"),
]


@pytest.mark.parametrize(
    ("name", "body", "message"), BAD_TEMPLATES, ids=[b[0] for b in BAD_TEMPLATES]
)
def test_bad_templates_are_one_line_naming_the_field(
    tmp_path: Path, name: str, body: object, message: str
) -> None:
    write(tmp_path / "rg.json", body)
    with pytest.raises(CatalogError) as err:
        parse_catalog(catalog_doc(template="rg.json"), templates_dir=tmp_path)
    assert str(err.value).startswith("channels.stable[0].template: 'rg.json' " + message)
    assert "\n" not in str(err.value)


def test_missing_template_and_orphan_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(catalog_doc(template="nothere.json"), templates_dir=tmp_path)
    assert str(err.value).startswith("channels.stable[0].template: 'nothere.json' is not a file")
    with pytest.raises(CatalogError) as err:
        parse_catalog(catalog_doc(parameters={"a": {"value": 1}}))
    assert str(err.value) == "channels.stable[0].parameters: needs a template to apply to"


def test_a_rule_for_an_undeclared_parameter_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "rg.json", template_body(a={"type": "int"}))
    doc = catalog_doc(template="rg.json", parameters={"b": {"from": "a"}})
    with pytest.raises(CatalogError) as err:
        parse_catalog(doc, templates_dir=tmp_path)
    assert "declares no parameter 'b'" in str(err.value)


@pytest.mark.parametrize(
    ("parameters", "line"),
    [
        ({"a": {}}, "channels.stable[0].parameters.a"),
        ({"a": {"value": 1, "from": "b"}}, "channels.stable[0].parameters.a"),
        ({"a": {"from": 3}}, "channels.stable[0].parameters.a.from"),
        ({"a": {"rename": "b"}}, "channels.stable[0].parameters.a"),
    ],
)
def test_parameter_rules_are_schema_checked(parameters: dict[str, Any], line: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(catalog_doc(template="docker4azure-v1.json", parameters=parameters))
    assert str(err.value).startswith(line)


def test_template_path_must_be_relative_json() -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(catalog_doc(template="/etc/passwd"))
    assert str(err.value).startswith("channels.stable[0].template: '/etc/passwd'")


def make(params: dict[str, Any], rules: tuple[ParameterRule, ...] = ()) -> Template:
    body = template_body(**params)
    return Template("t.json", body, arm_template.digest(body), rules)


def test_derive_keeps_old_values_renames_sets_and_leaves_defaults_to_arm() -> None:
    template = make(
        {
            "channel": {"type": "string"},
            "prefix": {"type": "string"},
            "kept": {"type": "string"},
            "retention": {"type": "int", "defaultValue": 7},
        },
        (
            ParameterRule("channel", value="stable", fixed=True),
            ParameterRule("prefix", source="oldPrefix"),
        ),
    )
    old = {"channel": "edge", "oldPrefix": "diag", "kept": "k", "dropped": 1}
    values, problems = derive_parameters(template, old)
    assert problems == []
    assert values == {"channel": "stable", "prefix": "diag", "kept": "k"}


def test_derive_a_renamed_parameter_already_renamed_keeps_its_value() -> None:
    template = make({"prefix": {"type": "string"}}, (ParameterRule("prefix", source="oldPrefix"),))
    assert derive_parameters(template, {"prefix": "p"}) == ({"prefix": "p"}, [])


def test_derive_reports_a_parameter_without_any_value() -> None:
    template = make({"need": {"type": "string"}}, (ParameterRule("need", source="gone"),))
    values, problems = derive_parameters(template, None)
    assert values == {}
    assert problems == [
        "parameter 'need' has no defaultValue and the last deployment has no value for it "
        "(nor 'gone')"
    ]


def test_deployment_name_is_the_release() -> None:
    assert arm_template.deployment_name("17.06.1-ce-azure1") == "swarm-upgrade-17.06.1-ce-azure1"
