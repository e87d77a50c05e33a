"""The busybox rootfs variants the testbed imports: the full one, and one without `sleep` (the
"broken" platform service image of the phases e2e, whose `sleep` tasks cannot start)."""

from __future__ import annotations

import io
import tarfile

from testbed.config import TestbedConfig
from testbed.node import busybox_rootfs_tar


def names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return set(tar.getnames())


def test_broken_rootfs_lacks_only_sleep() -> None:
    full, broken = names(busybox_rootfs_tar()), names(busybox_rootfs_tar(("sleep",)))
    assert "bin/sleep" in full and "bin/busybox" in full
    assert full - broken == {"bin/sleep"}
    assert busybox_rootfs_tar(("sleep",)) is busybox_rootfs_tar(("sleep",)), "built once"


def test_config_round_trips_the_image_tags(tmp_path: object) -> None:
    config = TestbedConfig(dir="/tmp/x", image_tags=["local/meta:2"],
                           broken_image_tags=["local/meta:broken"])
    again = TestbedConfig(**__import__("dataclasses").asdict(config))
    assert again.image_tags == ["local/meta:2"]
    assert again.broken_image_tags == ["local/meta:broken"]
