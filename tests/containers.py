"""The Docker side of the image and compose tests (tests/test_image.py, tests/test_compose.py) and of
bench/image.py: the image under test, how its containers are hardened, and the docker CLI.

Nothing runs at import: the engine and Compose are looked for when a test first needs them.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

# The image under test (`make image-test` sets it); unset, the tests that need it are skipped.
IMAGE = os.environ.get("STEWARD_TEST_IMAGE", "")
# As deploy/k8s/deployment.yaml's securityContext, plus the writable folders it mounts.
HARDENED = [
    "--user=10001:10001",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--tmpfs=/tmp:uid=10001,gid=10001",
    "--tmpfs=/var/lib/steward:uid=10001,gid=10001",
]


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; the completed process (not checked)."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _answers(command: list[str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def _engine() -> bool:
    return _answers(["docker", "info"])


@functools.cache
def compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (1.x), whichever answers; None when neither does."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if _answers([*command, "version"]):
            return command
    return None


def require_image() -> None:
    """Skip the calling test unless an image is named and a Docker engine answers."""
    if not IMAGE:
        pytest.skip(
            "set STEWARD_TEST_IMAGE to an image built from deploy/docker/Dockerfile (make image-test)"
        )
    if not _engine():
        pytest.skip("no Docker engine answers `docker info`")


def require_compose() -> list[str]:
    """Skip the calling test unless `require_image` passes and Compose is installed; the compose command."""
    require_image()
    command = compose_command()
    if command is None:
        pytest.skip("Docker Compose is not installed (neither `docker compose` nor `docker-compose`)")
    return command
