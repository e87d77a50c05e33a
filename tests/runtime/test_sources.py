"""Desired sources: a watched file and labelled config objects (on a real swarm)."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

from controller.adapters.swarm import SwarmClient
from controller.catalog import load_catalog
from controller.runtime.events import EventSink
from controller.runtime.sources import ConfigSource, FileSource
from tests.runtime.localswarm import LocalSwarm


def declaration(version: str, name: str = "prod", extra: str = "") -> str:
    return (f"apiVersion: swarm-upgrade.io/v1alpha1\nkind: SwarmUpgrade\nmetadata:\n"
            f"  name: {name}\nspec:\n  channel: stable\n  version: {version}\n{extra}")


def events(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_a_file_edit_takes_effect_and_an_invalid_edit_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    path = tmp_path / "desired.yaml"
    path.write_text(declaration("17.06.0-ce-azure1"))
    out, triggers = io.StringIO(), []
    source = FileSource(str(path), load_catalog(), EventSink(out), lambda: triggers.append(1),
                        interval=0.05)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.ready.wait(), 5)
        assert source.current is not None and source.current.version == "17.06.0-ce-azure1"
        path.write_text(declaration("17.06.1-ce-azure1"))
        for _ in range(100):
            if source.current.version == "17.06.1-ce-azure1":
                break
            await asyncio.sleep(0.05)
        assert source.current.version == "17.06.1-ce-azure1"
        assert len(triggers) == 2
        path.write_text(declaration("17.06.1-ce-azure1", extra="  strategy:\n"
                                    "    maxUnavailableWorkers: lots\n"))
        os.utime(path, (1, 1))  # a different mtime even within the same clock tick
        for _ in range(100):
            if any(e["reason"] == "InvalidSpec" for e in events(out)):
                break
            await asyncio.sleep(0.05)
        warning = [e for e in events(out) if e["reason"] == "InvalidSpec"]
        assert warning and warning[0]["type"] == "Warning"
        assert "spec.strategy.maxUnavailableWorkers" in warning[0]["message"]
        assert "still applying 17.06.1-ce-azure1" in warning[0]["message"]
        assert source.current.version == "17.06.1-ce-azure1" and len(triggers) == 2
    finally:
        task.cancel()


def test_an_unknown_version_is_invalid_and_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "desired.yaml"
    path.write_text(declaration("99.01.0-ce-azure1"))
    out = io.StringIO()
    source = FileSource(str(path), load_catalog(), EventSink(out), lambda: None)
    source.poll()
    assert source.current is None
    (warning,) = events(out)
    assert warning["reason"] == "InvalidSpec" and "spec.version" in warning["message"]


async def test_config_objects_newest_wins_and_invalid_ones_are_ignored(
    swarm1: LocalSwarm,
) -> None:
    label = "swarm-upgrade.desired-test"
    out = io.StringIO()
    async with SwarmClient(swarm1.daemons[0].docker_host, timeout=5) as client:
        made: list[str] = []
        try:
            made.append(await client.create_config(
                "desired-a", declaration("17.06.0-ce-azure1", "a").encode(), {label: "true"}))
            source = ConfigSource(client, label, load_catalog(), EventSink(out), lambda: None)
            await source.refresh()
            assert source.current is not None and source.current.name == "a"
            await asyncio.sleep(0.01)
            made.append(await client.create_config(
                "desired-b", declaration("17.06.1-ce-azure1", "b").encode(), {label: "true"}))
            made.append(await client.create_config(
                "unrelated", declaration("17.03.0-ce-azure1", "c").encode(), {}))
            await source.refresh()
            assert source.current.name == "b" and source.current.version == "17.06.1-ce-azure1"
            made.append(await client.create_config(
                "desired-c", b"kind: Nonsense\n", {label: "true"}))
            await source.refresh()
            assert source.current.name == "b"
            assert any(e["reason"] == "InvalidSpec" and "config/desired-c" in e["message"]
                       for e in events(out))
        finally:
            for config_id in made:
                await client.remove_config(config_id)
