"""The stack files, the Azure role and the Dockerfile say what issue 5 asks of them.

The stack files are read twice: as YAML, for their structure, and through the real docker CLI's
compose loader (`docker stack config`), which validates them against the compose 3.8 schema and
merges the overrides the way `docker stack deploy` does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from controller.commands import run as run_command

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
STACK_FILES = ("stack.yml", "stack.sp-secret.yml", "stack.catalog.yml", "stack.testbed.yml")
ROLE_ACTIONS = {
    "Microsoft.Compute/virtualMachineScaleSets/read",
    "Microsoft.Compute/virtualMachineScaleSets/write",
    "Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
    "Microsoft.Compute/locations/operations/read",
    # The resources phase (issue 6): the release's template, and the writes ARM checks for the
    # resource types of the bundled templates (tests/packaging/test_packaging_role.py).
    "Microsoft.Resources/deployments/read",
    "Microsoft.Resources/deployments/write",
    "Microsoft.Resources/deployments/validate/action",
    "Microsoft.Resources/deployments/whatIf/action",
    "Microsoft.Resources/deployments/operationstatuses/read",
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.Network/publicIPAddresses/write",
    "Microsoft.Network/loadBalancers/write",
    "Microsoft.Resources/tags/write",
}


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((MANIFESTS / name).read_text())
    assert isinstance(data, dict), name
    return data


def controller(stack: dict[str, Any]) -> dict[str, Any]:
    service = stack["services"]["controller"]
    assert isinstance(service, dict)
    return service


def deploy_env(tmp_path: Path) -> dict[str, str]:
    """Every deploy-time variable the stack files require, pointing at real files."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("channels: {}\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "SWARM_UPGRADE_DESIRED": str(MANIFESTS / "desired.example.yaml"),
        "SWARM_UPGRADE_CATALOG_FILE": str(catalog),
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_RESOURCE_GROUP": "swarm-rg",
        "AZURE_TENANT_ID": "tenant",
        "AZURE_CLIENT_ID": "client",
        "TESTBED_DIR": str(tmp_path / "tb"),
        "AZURE_ARM_ENDPOINT": "https://127.66.0.1:8443",
        "AZURE_AUTHORITY_HOST": "https://127.66.0.1:8443",
        "SSL_CERT_FILE": str(ca),
    }


def stack_config(files: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The merged, interpolated stack as the docker CLI's compose loader produces it."""
    argv = ["docker", "stack", "config"]
    for name in files:
        argv += ["-c", str(MANIFESTS / name)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    merged = yaml.safe_load(proc.stdout)
    assert isinstance(merged, dict)
    return merged


def test_every_stack_file_is_compose_3_8_and_names_only_the_controller_service() -> None:
    for name in STACK_FILES:
        stack = load(name)
        assert stack["version"] == "3.8", name
        assert set(stack["services"]) == {"controller"}, name


def test_stack_runs_one_replica_on_every_manager_with_the_engine_socket() -> None:
    service = controller(load("stack.yml"))
    deploy = service["deploy"]
    assert deploy["mode"] == "global"
    assert deploy["placement"]["constraints"] == ["node.role == manager"]
    assert {
        "type": "bind",
        "source": "/var/run/docker.sock",
        "target": "/var/run/docker.sock",
    } in service["volumes"]
    assert deploy["restart_policy"]["condition"] == "any"
    assert set(deploy["resources"]["limits"]) == {"cpus", "memory"}
    assert deploy["update_config"]["parallelism"] == 1
    assert deploy["labels"]["swarm-upgrade.component"] == "controller"
    assert service["logging"]["options"]["max-size"]


def test_stack_health_check_is_the_images_with_timings_and_a_fixed_metrics_port() -> None:
    service = controller(load("stack.yml"))
    # No `test` here: the image's HEALTHCHECK (GET /healthz) is used, and an override can still
    # disable it (compose would append a second `test` list instead of replacing the first).
    assert "test" not in service["healthcheck"]
    assert {"interval", "timeout", "retries", "start_period"} <= set(service["healthcheck"])
    assert service["environment"]["SWARM_UPGRADE_METRICS_PORT"] == "9100"


def test_declaration_is_a_labelled_config_the_controller_follows() -> None:
    stack = load("stack.yml")
    service = controller(stack)
    key, value = service["environment"]["SWARM_UPGRADE_DESIRED_CONFIG_LABEL"].split("=")
    assert stack["configs"]["desired"]["labels"] == {key: value}
    assert [c["source"] for c in service["configs"]] == ["desired"]


def test_every_controller_variable_is_one_swarm_upgrade_run_reads() -> None:
    run_names = {name for flag in run_command.FLAGS for name in run_command.env_names(flag)}
    read_by_azure_identity = {"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_AUTHORITY_HOST"}
    read_by_ssl = {"SSL_CERT_FILE"}
    for name in STACK_FILES:
        for variable in controller(load(name)).get("environment", {}):
            assert variable in run_names | read_by_azure_identity | read_by_ssl, (name, variable)
    # The base stack alone gives `run` what it requires: one declaration source and the scope.
    base = controller(load("stack.yml"))["environment"]
    assert {"AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP"} <= set(base)
    assert "SWARM_UPGRADE_DESIRED_FILE" not in base


def test_config_and_secret_references_resolve_to_top_level_definitions() -> None:
    for name in STACK_FILES:
        stack = load(name)
        service = controller(stack)
        for kind in ("configs", "secrets"):
            for ref in service.get(kind, []):
                assert ref["source"] in stack.get(kind, {}), f"{name}: {kind} {ref['source']}"
        for network in service.get("networks", []):
            assert network in stack.get("networks", {}), f"{name}: network {network}"


def test_identity_is_managed_by_default_and_a_docker_secret_in_the_override() -> None:
    base = controller(load("stack.yml"))["environment"]
    assert "AZURE_CLIENT_SECRET" not in base and "AZURE_CLIENT_ID" not in base
    override = load("stack.sp-secret.yml")
    service = controller(override)
    assert override["secrets"]["azure-client-secret"]["external"] is True
    assert service["secrets"][0]["target"] == "azure-client-secret"
    assert "/run/secrets/azure-client-secret" in " ".join(service["entrypoint"])
    assert "exec swarm-upgrade run" in " ".join(service["entrypoint"])


def test_testbed_override_binds_each_nodes_own_socket_on_the_host_network() -> None:
    service = controller(load("stack.testbed.yml"))
    (mount,) = service["volumes"]
    assert mount["source"] == "${TESTBED_DIR:?set TESTBED_DIR}/n/{{.Node.Hostname}}/docker.sock"
    assert mount["target"] == "/var/run/docker.sock"
    assert load("stack.testbed.yml")["networks"]["hostnet"] == {"external": True, "name": "host"}
    assert service["environment"]["SSL_CERT_FILE"] == service["configs"][0]["target"]


def test_docker_cli_accepts_and_merges_every_combination(tmp_path: Path) -> None:
    env = deploy_env(tmp_path)
    base = stack_config(["stack.yml"], env)
    assert base["services"]["controller"]["deploy"]["mode"] == "global"
    assert base["configs"]["desired"]["name"] == "swarm-upgrade-desired-1"

    merged = stack_config(list(STACK_FILES), env)
    service = merged["services"]["controller"]
    # The testbed's per-node socket replaces the default one (merged by target), not added.
    assert service["volumes"] == [
        {
            "type": "bind",
            "source": f"{env['TESTBED_DIR']}/n/{{{{.Node.Hostname}}}}/docker.sock",
            "target": "/var/run/docker.sock",
        }
    ]
    assert sorted(c["source"] for c in service["configs"]) == ["catalog", "desired", "testbed-ca"]
    assert service["environment"]["SWARM_UPGRADE_CATALOG"] == "/etc/swarm-upgrade/catalog.yaml"
    assert service["environment"]["AZURE_CLIENT_ID"] == "client"
    assert service["healthcheck"]["disable"] is True
    assert service["deploy"]["placement"]["constraints"] == ["node.role == manager"]


def test_missing_required_variable_is_refused_by_name(tmp_path: Path) -> None:
    env = deploy_env(tmp_path)
    del env["AZURE_RESOURCE_GROUP"]
    proc = subprocess.run(
        ["docker", "stack", "config", "-c", str(MANIFESTS / "stack.yml")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "AZURE_RESOURCE_GROUP" in proc.stderr


def test_azure_role_holds_only_the_actions_the_controller_calls() -> None:
    role = json.loads((MANIFESTS / "azure-role.json").read_text())
    assert role["IsCustom"] is True
    assert role["Name"] and role["Description"]
    assert set(role["Actions"]) == ROLE_ACTIONS
    assert all(action.startswith(("Microsoft.Compute/", "Microsoft.Resources/",
                                  "Microsoft.Storage/", "Microsoft.Network/"))
               for action in role["Actions"])
    assert not any("*" in action for action in role["Actions"])
    assert role["NotActions"] == [] and role["DataActions"] == []
    assert role["AssignableScopes"] == [
        "/subscriptions/{subscription-id}/resourceGroups/{resource-group}"
    ]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_with_build_args_health_check_and_entrypoint() -> None:
    instructions = dockerfile_instructions()
    args = [rest for keyword, rest in instructions if keyword == "ARG"]
    assert "BASE_IMAGE=python:3.11-slim" in args
    assert any(re.fullmatch(r"WHEELS=?", arg) for arg in args)
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert stages == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE}"]
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    final = instructions[last_from:]
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    (health,) = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert "/healthz" in health and "${SWARM_UPGRADE_METRICS_PORT:-9100}" in health
    (entrypoint,) = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["swarm-upgrade", "run"]


def test_dockerignore_keeps_the_context_to_the_source() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".cache", "tests", "**/__pycache__"} <= ignored
    assert not ignored & {"controller", "pyproject.toml", "README.md", "testbed"}
