"""Fixtures of the runtime tests: a small real swarm of local dockerd managers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.runtime.localswarm import LocalSwarm, start_swarm

_subnets = itertools.count((os.getpid() % 50) * 4 + 1)


@pytest.fixture(scope="session")
def swarm1() -> Iterator[LocalSwarm]:
    """One manager, shared by the tests that only need a raft store."""
    swarm = start_swarm(1, next(_subnets))
    yield swarm
    swarm.stop()


@pytest.fixture
def swarm3() -> Iterator[LocalSwarm]:
    """Three managers of their own (tests that stop nodes)."""
    swarm = start_swarm(3, next(_subnets))
    yield swarm
    swarm.stop()
