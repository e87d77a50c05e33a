"""The `swarm-upgrade` subcommands, one module each; every module exposes `register(subparsers)`."""
