"""What a testbed is made of (TestbedConfig) and where its files live in its directory.

`swarm-testbed up` writes D/config.json; the daemon reads it, writes D/state.json (its pid,
every dockerd pid, readiness, the env) and D/testbed.env. The release image comes from the
bundled catalog (controller/catalog.yaml).
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
ENV_FILE = "testbed.env"
ADMIN_SOCKET = "admin.sock"
DAEMON_LOG = "daemon.log"


class ConfigError(ValueError):
    """Bad testbed input; the message names the field and the value."""


def catalog_image(channel: str, version: str, catalog: Path | None = None) -> dict[str, str]:
    """The image reference of release `version` in `channel` of the catalog."""
    if catalog is None:
        text = resources.files("controller").joinpath("catalog.yaml").read_text()
    else:
        text = catalog.read_text()
    data = yaml.safe_load(text) or {}
    channels = data.get("channels", {})
    if channel not in channels:
        raise ConfigError(f"channel: unknown channel {channel!r} (known: {', '.join(channels)})")
    for release in channels[channel]:
        if release.get("version") == version:
            return {k: str(v) for k, v in release["image"].items()}
    raise ConfigError(f"version: {version!r} is not a release of channel {channel!r}")


@dataclass
class TestbedConfig:
    """Everything `up` decides; JSON round-trippable."""

    __test__ = False  # not a pytest test class

    dir: str
    managers: int = 3
    workers: int = 2
    channel: str = "stable"
    version: str = "17.06.0-ce-azure1"
    image: dict[str, str] = field(default_factory=dict)
    reimage_seconds: float = 0.0
    # More tags of the busybox image on every node, at every boot (e.g. platform service images
    # of a release), and tags of a busybox image without `sleep`, whose `sleep` tasks fail.
    image_tags: list[str] = field(default_factory=list)
    broken_image_tags: list[str] = field(default_factory=list)
    # Image archives (`docker save` tarballs) that instances of a role ("manager", "worker")
    # load at every boot, before joining the swarm: what a real instance would pull from a
    # registry for the services it must run, e.g. the controller's image on the managers.
    image_archives: dict[str, list[str]] = field(default_factory=dict)
    never_boots_seconds: float = 3.0
    ip_base: str = "127.0.1"
    with_arm: bool = True
    # An Azure role's action list the ARM endpoint enforces (403 AuthorizationFailed for any
    # other action); None: every request is allowed.
    role_actions: list[str] | None = None
    owner_pid: int | None = None  # if set, the daemon tears everything down when it dies
    subscription_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    resource_group: str = "swarm-rg"
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if self.managers < 1:
            raise ConfigError(f"managers: must be >= 1, got {self.managers}")
        if self.workers < 0:
            raise ConfigError(f"workers: must be >= 0, got {self.workers}")
        if self.reimage_seconds < 0:
            raise ConfigError(f"reimage-seconds: must be >= 0, got {self.reimage_seconds}")
        parts = self.ip_base.split(".")
        if (
            len(parts) != 3
            or parts[0] != "127"
            or not all(p.isdigit() and int(p) < 256 for p in parts)
        ):
            raise ConfigError(f"ip-base: must look like 127.A.B, got {self.ip_base!r}")
        for role, archives in self.image_archives.items():
            if role not in ("manager", "worker"):
                raise ConfigError(f"image-archives: role must be manager or worker, got {role!r}")
            for archive in archives:
                if not Path(archive).is_file():
                    raise ConfigError(f"image-archives: no such file {archive!r}")
        if len(str(Path(self.dir).resolve())) > 48:
            raise ConfigError(f"dir: too long for unix sockets (max 48 chars): {self.dir}")
        if not self.image:
            self.image = catalog_image(self.channel, self.version)

    def save(self) -> None:
        """Write D/config.json."""
        write_json(Path(self.dir) / CONFIG_FILE, asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> TestbedConfig:
        """Read D/config.json."""
        data = json.loads((Path(directory) / CONFIG_FILE).read_text())
        return cls(**data)


def write_json(path: Path, data: Any) -> None:
    """Atomically replace `path` with `data` as JSON."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read_state(directory: str | Path) -> dict[str, Any]:
    """D/state.json, or {} if there is none (yet)."""
    try:
        data: dict[str, Any] = json.loads((Path(directory) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data


def env_text(env: dict[str, str]) -> str:
    """The env file: KEY=value lines (values never contain newlines or quotes)."""
    return "".join(f"{k}={v}\n" for k, v in env.items())
