"""The shipped schema files: the CRD has a CRD's shape, the schemas are valid JSON Schema, and the
loader finds them both in the repository (editable install) and in a built wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controller import safeyaml, schemas

REPO = Path(__file__).resolve().parents[2]


def crd_doc() -> dict[str, Any]:
    doc = safeyaml.load_file(REPO / "crd" / "swarmupgrade.yaml", 1 << 20)
    assert isinstance(doc, dict)
    return doc


def test_the_crd_has_the_shape_of_a_custom_resource_definition() -> None:
    doc = crd_doc()
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["kind"] == "CustomResourceDefinition"
    spec = doc["spec"]
    assert spec["group"] == "swarm-upgrade.io"
    assert spec["names"]["kind"] == "SwarmUpgrade"
    assert doc["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["scope"] in ("Cluster", "Namespaced")
    versions = spec["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    assert sum(1 for v in versions if v["storage"]) == 1
    for version in versions:
        assert version["served"] is True
        assert version["schema"]["openAPIV3Schema"]["type"] == "object"


def test_the_loader_reads_the_repository_crd_in_an_editable_install() -> None:
    assert schemas.crd_path("swarmupgrade.yaml") == REPO / "crd" / "swarmupgrade.yaml"
    assert schemas.declaration_schema() == crd_doc()["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"]
    catalog_schema = json.loads((REPO / "crd" / "catalog.schema.json").read_text())
    assert schemas.catalog_schema() == catalog_schema


def test_the_schemas_are_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(dict(schemas.declaration_schema()))
    jsonschema.Draft202012Validator.check_schema(dict(schemas.catalog_schema()))


def _walk(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += _walk(sub, f"{path}.{name}" if path else name)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        found += _walk(extra, f"{path}.*")
    return found


def test_every_field_is_described_bounded_and_closed() -> None:
    for path, field in _walk(dict(schemas.declaration_schema()), ""):
        if path.endswith(".*"):
            continue  # label/annotation values
        assert field.get("description"), f"{path or 'root'} has no description"
        kind = field["type"]
        if kind == "object" and "properties" in field:
            assert field["additionalProperties"] is False, f"{path} accepts unknown fields"
        elif kind == "object":
            assert "maxProperties" in field, path
        elif kind == "string":
            assert "enum" in field or "maxLength" in field, f"{path} is unbounded"
        elif kind == "integer":
            assert "minimum" in field and "maximum" in field, f"{path} is unbounded"


def test_the_defaults_of_the_crd_are_valid() -> None:
    schema = schemas.declaration_schema()
    doc = {"apiVersion": "swarm-upgrade.io/v1alpha1", "kind": "SwarmUpgrade",
           "metadata": {"name": "x"}, "spec": {"channel": "stable", "version": "17.06.1-ce-azure1"}}
    assert schemas.validate(schemas.apply_defaults(doc, schema), schema) == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True, timeout=300, capture_output=True,
    )
    (built,) = out.glob("swarm_upgrade_controller-*.whl")
    return built


def test_the_wheel_ships_the_crd_and_the_catalog(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("controller/_crd/swarmupgrade.yaml", "controller/_crd/catalog.schema.json",
                 "controller/catalog.yaml"):
        assert name in names


def test_an_installed_wheel_reads_its_own_crd(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; from controller import schemas, model; "
        "print(schemas.crd_path('swarmupgrade.yaml')); "
        "print(model.load_desired_file(sys.argv[1]).version)"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "manifests" / "desired.example.yaml")],
        capture_output=True, text=True, timeout=60, env=env, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(site / "controller" / "_crd" / "swarmupgrade.yaml"), "17.06.1-ce-azure1"]
