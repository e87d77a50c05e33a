# The swarm-upgrade controller image: a virtualenv with the project and its dependencies on a
# plain Python base, run as `swarm-upgrade run`.
#
# With network (users):
#   docker build -t swarm-upgrade-controller .
# Without network (the testbed, see testbed/image.py): a local base image made with debootstrap
# and a directory of wheels downloaded on the host, inside the build context:
#   DOCKER_BUILDKIT=0 docker build --build-arg BASE_IMAGE=local/pybase:bookworm \
#     --build-arg WHEELS=wheels -t swarm-upgrade-controller:dev CONTEXT
#
# The base must provide `python3` with the venv module (python:3.11-slim does; on Debian
# install python3 and python3-venv). Both stages use the same base, so the virtualenv's
# interpreter links resolve in the final stage.
#
# User: the controller runs as root. Everything it does goes through /var/run/docker.sock,
# which is root-owned with a host-specific group; access to that socket is root-equivalent
# on the node anyway, and swarm services cannot add a supplementary group for it portably
# (stack files have no `group_add` in swarm mode). Running as a non-root user would only
# break the socket access without reducing what the process can do.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
# WHEELS: a directory of the build context holding the project's wheel and every dependency
# wheel; installed with --no-index. Empty: install the project from source, with PyPI.
ARG WHEELS=
COPY . /src
RUN set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1; \
    python3 -m venv /opt/venv; \
    if [ -n "${WHEELS}" ]; then \
        /opt/venv/bin/pip install -q --no-index --find-links "/src/${WHEELS}" swarm-upgrade-controller; \
    else \
        /opt/venv/bin/pip install -q /src; \
    fi; \
    /opt/venv/bin/pip uninstall -y -q setuptools pip; \
    /opt/venv/bin/python -OO -m compileall -q /opt/venv/lib; \
    /opt/venv/bin/swarm-upgrade --help > /dev/null

FROM ${BASE_IMAGE}
COPY --from=builder /opt/venv /opt/venv
# PYTHONOPTIMIZE=2 drops docstrings (and asserts) from the loaded code: the generated Azure SDK
# modules are mostly docstrings, 7 MB of the controller's RSS (docs/performance.md §4). The
# builder compiled the -OO bytecode above; without it every start would compile the SDK.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONOPTIMIZE=2 \
    PYTHONUNBUFFERED=1 \
    SWARM_UPGRADE_METRICS_PORT=9100
# /healthz on the metrics port answers 200 while the reconcile loop is alive. Python, not curl:
# slim bases have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${SWARM_UPGRADE_METRICS_PORT:-9100}/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["swarm-upgrade", "run"]
