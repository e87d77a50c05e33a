"""swarm-upgrade-controller: upgrades Docker for Azure swarms one node at a time, safely."""

__version__ = "0.1.0"
