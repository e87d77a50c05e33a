"""End-to-end fixtures: the testbed (real dockerd swarm + HTTPS ARM endpoint) per module."""

from testbed.fixtures import testbed

__all__ = ["testbed"]
