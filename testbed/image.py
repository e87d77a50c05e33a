"""Builds the controller image into a Docker daemon that has no registry and no network.

Three steps, each with a cache where one pays off:

1. Base image: a Debian bookworm root filesystem with python3 and python3-venv, made once with
   debootstrap and kept as a tarball under the cache directory, then `docker import`ed into the
   daemon as `local/pybase:bookworm` unless the daemon already has that tag.
2. Wheels: the project's own wheel, built fresh every time, and every dependency as a binary
   wheel for bookworm's CPython 3.11 (cp311, manylinux up to glibc 2.36), downloaded on the host
   (pip's HTTP cache makes repeats quick). The host's Python does not need to match.
3. `docker build` of the repository's Dockerfile with the legacy builder (Debian's docker.io has
   no buildx) and `--network none`, from a small context holding the Dockerfile and the wheels.

`build_controller_image()` is the entry point; `python -m testbed.image` (scripts/build-image.sh)
is the command line around it.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "local/pybase:bookworm"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
BASE_TARBALL = f"pybase-{BASE_SUITE}.tar"
# Bookworm ships CPython 3.11 on glibc 2.36: wheels must be tagged for that, whatever the host runs.
TARGET_PYTHON = "3.11"
TARGET_ABIS = ("cp311", "abi3", "none")
TARGET_GLIBC_MINOR = 36
PROJECT_DIST = "swarm-upgrade-controller"
WHEELS_DIR = "wheels"


class ImageBuildError(RuntimeError):
    """A step of the image build failed; the message names the step and ends with its output."""


@contextmanager
def _timed(step: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    log.info("%s took %.1f s", step, time.monotonic() - start)


def _run(
    step: str,
    argv: Sequence[str],
    stdin: BinaryIO | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Runs argv; on failure raises ImageBuildError with the step and the last lines of output."""
    proc = subprocess.run(argv, stdin=stdin, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()
        tail = "\n".join(output[-25:])
        raise ImageBuildError(f"{step} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")


def _docker(docker_host: str) -> list[str]:
    return ["docker", "-H", docker_host]


def _docker_env() -> dict[str, str]:
    # The legacy builder: Debian's docker.io has no buildx, and it needs no builder container.
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def _trim_rootfs(rootfs: Path) -> None:
    """Drops what an image that never runs apt or man needs (≈150 MB); keeps copyright files."""
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists", "var/cache/apt"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    for docs in ("usr/share/man", "usr/share/locale", "usr/share/info"):
        for entry in (rootfs / docs).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for entry in (rootfs / "usr/share/doc").rglob("*"):
        if (entry.is_file() or entry.is_symlink()) and entry.name != "copyright":
            entry.unlink()


def base_rootfs_tarball(cache_dir: Path) -> Path:
    """The cached debootstrap tarball of the base image; made (≈1 min, needs root) if missing."""
    tarball = cache_dir / BASE_TARBALL
    if tarball.is_file():
        return tarball
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        with _timed("debootstrap"):
            _run(
                "debootstrap",
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    BASE_SUITE,
                    str(rootfs),
                ],
            )
        _trim_rootfs(rootfs)
        partial = Path(work) / BASE_TARBALL
        with _timed("rootfs tarball"):
            _run("tar", ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."])
        partial.replace(tarball)
    return tarball


def ensure_base_image(docker_host: str, cache_dir: Path) -> None:
    """Imports the base image into the daemon unless it already has `local/pybase:bookworm`."""
    probe = subprocess.run(
        [*_docker(docker_host), "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        log.info("base image %s already present", BASE_IMAGE)
        return
    tarball = base_rootfs_tarball(cache_dir)
    with _timed("base image import"), tarball.open("rb") as stream:
        _run(
            "docker import",
            [*_docker(docker_host), "import", "-", BASE_IMAGE],
            stdin=stream,
        )


def _manylinux_platforms(machine: str) -> list[str]:
    """Every manylinux tag a glibc-2.36 system accepts; pip does not expand them for --platform."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(TARGET_GLIBC_MINOR, 4, -1)]
    tags += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    return tags


def download_wheels(source_dir: Path, dest: Path) -> None:
    """The project's wheel (built from source_dir) and all its dependency wheels into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    with _timed("project wheel"):
        _run("pip wheel", [*pip, "wheel", "--no-deps", "-q", "-w", str(dest), str(source_dir)])
    own = sorted(dest.glob("swarm_upgrade_controller-*.whl"))
    if len(own) != 1:
        raise ImageBuildError(f"expected one project wheel in {dest}, found {len(own)}")
    target = ["--only-binary=:all:", "--implementation", "cp", "--python-version", TARGET_PYTHON]
    for abi in TARGET_ABIS:
        target += ["--abi", abi]
    for tag in _manylinux_platforms(platform.machine()):
        target += ["--platform", tag]
    with _timed("dependency wheels"):
        _run("pip download", [*pip, "download", "-q", "-d", str(dest), *target, str(own[0])])


def build_controller_image(
    docker_host: str,
    tag: str,
    cache_dir: Path,
    source_dir: Path | None = None,
) -> None:
    """Builds the controller image as `tag` in the daemon at `docker_host` (e.g. unix:///x/sock).

    `cache_dir` keeps the debootstrap tarball between runs; `source_dir` is the repository
    (default: the one this module lives in). Needs root, debootstrap, the docker CLI and access
    to PyPI on the host; the build itself uses no network.
    """
    source = (source_dir or REPO_ROOT).resolve()
    cache_dir = cache_dir.resolve()
    started = time.monotonic()
    ensure_base_image(docker_host, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="context-") as work:
        context = Path(work)
        shutil.copy2(source / "Dockerfile", context / "Dockerfile")
        shutil.copy2(source / ".dockerignore", context / ".dockerignore")
        download_wheels(source, context / WHEELS_DIR)
        with _timed("docker build"):
            _run(
                "docker build",
                [
                    *_docker(docker_host),
                    "build",
                    "--network",
                    "none",
                    "--build-arg",
                    f"BASE_IMAGE={BASE_IMAGE}",
                    "--build-arg",
                    f"WHEELS={WHEELS_DIR}",
                    "-t",
                    tag,
                    str(context),
                ],
                env=_docker_env(),
            )
    log.info("built %s in %.1f s", tag, time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build-image",
        description="Build the controller image into a Docker daemon with no registry or network.",
    )
    parser.add_argument(
        "--docker-host",
        default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        help="daemon to build into (default: $DOCKER_HOST or the local socket)",
    )
    parser.add_argument("--tag", default="swarm-upgrade-controller:dev", help="image tag")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=REPO_ROOT / ".cache",
        help="where the debootstrap tarball is kept (default: .cache/ in the repository)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build_controller_image(args.docker_host, args.tag, args.cache_dir)
    except ImageBuildError as exc:
        print(f"build-image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
