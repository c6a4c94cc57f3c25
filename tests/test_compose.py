"""deploy/docker/compose.yaml brought up by Docker Compose: PostgreSQL, a Chroma server, the one-shot
ingest, then two `steward serve` replicas, with the local fake Slack on the host.

Skipped unless STEWARD_TEST_IMAGE names a built Steward image (`make image-test`), a Docker engine
answers and Compose is installed (`docker compose`, or `docker-compose`). PostgreSQL and Chroma are
`postgres:16` and `chromadb/chroma:1.5.9` when the engine has them; otherwise stand-ins are built from
tests/compose/ on the base image that `deploy/docker/build.sh --offline` makes (Debian's PostgreSQL 15;
the chromadb release of pyproject.toml).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.containers import IMAGE, docker, require_compose
from tests.servers import http
from tests.support.replicas import SECRET, send
from tests.support.slack import FakeSlack, event_body

COMPOSE_FILE = ROOT / "deploy" / "docker" / "compose.yaml"
STAND_INS = ROOT / "tests" / "compose"
OFFLINE_BASE = "steward-local/python:3.11-slim"
QUESTION = "Who has to approve a production rollback?"


@pytest.fixture(autouse=True)
def _needs_compose() -> None:
    require_compose()


def _image(official: str, stand_in: str, dockerfile: str) -> str:
    """The official image if the engine has it, else the stand-in (built once from tests/compose/)."""
    if docker("image", "inspect", official).returncode == 0:
        return official
    if docker("image", "inspect", stand_in).returncode != 0:
        if docker("image", "inspect", OFFLINE_BASE).returncode != 0:
            pytest.skip(f"neither {official} nor {OFFLINE_BASE} (deploy/docker/build.sh --offline) is here")
        built = subprocess.run(
            ["docker", "build", "--network=host", "-t", stand_in, "-f", dockerfile, "."],
            cwd=STAND_INS,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return stand_in


class Project:
    """One compose project (its own name, so nothing clashes with a real deployment)."""

    def __init__(self, tmp_path: Path, slack_port: int) -> None:
        self.name = f"stewardtest{uuid.uuid4().hex[:8]}"
        env_file = tmp_path / "steward.env"
        env_file.write_text(
            f"POSTGRES_PASSWORD={secrets.token_hex(16)}\n"
            "SLACK_BOT_TOKEN=xoxb-compose-test\n"
            f"SLACK_SIGNING_SECRET={SECRET}\n"
            "STEWARD_LOG_FORMAT=json\n"
            f"SLACK_API_URL=http://host.docker.internal:{slack_port}/api/\n"
        )
        # The host, where the fake Slack listens, reachable by name from the replicas.
        override = tmp_path / "override.yaml"
        override.write_text('services:\n  steward:\n    extra_hosts: ["host.docker.internal:host-gateway"]\n')
        self.command = [
            *require_compose(), "--project-name", self.name, "--env-file", str(env_file),
            "-f", str(COMPOSE_FILE), "-f", str(override),
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "APP_IMAGE": IMAGE,
            "APP_ENV_FILE": str(env_file),
            "POSTGRES_IMAGE": _image("postgres:16", "steward-test/postgres:15", "postgres.Dockerfile"),
            "CHROMA_IMAGE": _image("chromadb/chroma:1.5.9", "steward-test/chroma:1.5.9", "chroma.Dockerfile"),
        }

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def containers(self, service: str) -> list[dict[str, object]]:
        ids = self("ps", "-q", service).stdout.split()
        return json.loads(docker("inspect", *ids).stdout) if ids else []


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(host="0.0.0.0") as fake:  # reached from the compose network through the host gateway
        yield fake


@pytest.fixture
def project(tmp_path: Path, slack: FakeSlack) -> Iterator[Project]:
    started = Project(tmp_path, slack.port)
    try:
        yield started
    finally:
        started("down", "--volumes", "--timeout", "60")


def _state(container: dict[str, object]) -> dict[str, object]:
    state = container["State"]
    assert isinstance(state, dict)
    return state


def _ip(container: dict[str, object]) -> str:
    settings = container["NetworkSettings"]
    assert isinstance(settings, dict)
    return str(next(iter(settings["Networks"].values()))["IPAddress"])


def test_compose_brings_up_two_replicas_that_answer_once(project: Project, slack: FakeSlack) -> None:
    up = project("up", "--detach", "--no-build")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]

    deadline = time.monotonic() + 300
    while True:
        replicas = project.containers("steward")
        health = [_state(c).get("Health", {}).get("Status") for c in replicas]  # type: ignore[union-attr]
        if len(replicas) == 2 and health == ["healthy", "healthy"]:
            break
        assert time.monotonic() < deadline, (health, project("logs", "--tail", "40").stdout[-4000:])
        assert all(_state(c)["Running"] for c in replicas), project("logs", "--tail", "40").stdout[-4000:]
        time.sleep(2)

    [ingest] = project.containers("ingest")
    assert _state(ingest)["ExitCode"] == 0
    assert "added 36" in project("logs", "ingest").stdout

    for replica in replicas:
        status, body = http(f"http://{_ip(replica)}:3000/readyz")
        assert status == 200, body
        assert "276 chunks" in json.loads(body)["checks"]["index"], body

    # Slack delivers the mention to one replica, then retries it to the other: one answer.
    text = f"<@{slack.bot_user_id}> {QUESTION}"
    ts = slack.add_message("CCOMPOSE", text, "UASKER")
    event = {"type": "app_mention", "channel": "CCOMPOSE", "user": "UASKER", "ts": ts, "text": text}
    body = event_body(event, "EvCompose001")
    first, second = (_ip(replica) for replica in replicas)
    assert send(3000, body, "application/json", host=first) == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert send(3000, body, "application/json", headers=retry, host=second) == 200
    slack.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("thread_ts") == ts)
    # The retry was claimed before it was acknowledged: the replica that got it logs that it dropped it,
    # so it can never answer it (no waiting for an answer that does not come).
    deadline = time.monotonic() + 60
    while "duplicate delivery dropped event=EvCompose001" not in project("logs", "steward").stdout:
        assert time.monotonic() < deadline, project("logs", "--tail", "40", "steward").stdout[-4000:]
        time.sleep(0.5)
    in_thread = [c for c in slack.calls("chat.postMessage") if c.args.get("thread_ts") == ts]
    assert len(in_thread) == 1, [c.args for c in in_thread]
    assert "approv" in json.dumps(in_thread[0].args).lower(), in_thread[0].args

    stop = project("stop", "--timeout", "60")
    assert stop.returncode == 0, stop.stderr
    assert [_state(c)["ExitCode"] for c in project.containers("steward")] == [0, 0]
