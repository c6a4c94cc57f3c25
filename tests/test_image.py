"""The container image built from deploy/docker/Dockerfile, run by a real Docker engine.

Skipped unless STEWARD_TEST_IMAGE names a built image (`make image`, or `make image-offline` where Docker
Hub cannot be reached) and `docker info` answers. `make image-test` builds nothing: it runs these tests
against STEWARD_TEST_IMAGE (default `steward:dev`).

The containers run as Kubernetes runs them (deploy/k8s/deployment.yaml): uid 10001, a read-only root
with /tmp and the data dir writable, every capability dropped, no privilege escalation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers import HARDENED, IMAGE, docker, require_image
from tests.servers import chroma_server, free_port, http
from tests.support.replicas import SECRET, send
from tests.support.slack import FakeSlack, event_body

QUESTION = "How do I roll back a model in production?"


@pytest.fixture(autouse=True)
def _needs_the_image() -> None:
    require_image()


def run_in_image(*command: str, options: list[str] | None = None, env: dict[str, str] | None = None) -> str:
    """`docker run --rm` the image with `command`; its stdout (the test fails with stderr on exit != 0)."""
    settings = [f"--env={name}={value}" for name, value in (env or {}).items()]
    done = docker("run", "--rm", *HARDENED, *(options or []), *settings, IMAGE, *command, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_runs_as_the_unprivileged_user_with_the_cpu_build_of_torch() -> None:
    config = json.loads(docker("image", "inspect", IMAGE).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["steward", "serve", "--host", "0.0.0.0"]
    assert "HF_HUB_OFFLINE=1" in config["Env"] and "ANONYMIZED_TELEMETRY=False" in config["Env"]
    out = docker(
        "run", "--rm", "--network=none", IMAGE, "python", "-c",
        "import os, torch; print(os.getuid(), torch.__version__, torch.version.cuda)",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    uid, version, cuda = out.stdout.split()
    assert (uid, cuda) == ("10001", "None"), out.stdout
    assert version.startswith("2.13.0"), version


def test_ingests_and_answers_with_no_network_on_a_read_only_root() -> None:
    """The model is in the image: nothing is downloaded (there is no network at all)."""
    out = run_in_image(
        "sh", "-c", f'steward ingest knowledge/ && steward ask "{QUESTION}"', options=["--network=none"]
    )
    assert "added 36" in out, out[:2000]
    assert "Sources:" in out and "runbooks/model-rollback.md" in out, out[-3000:]
    assert "(answered;" in out, out[-500:]


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"steward-test-{uuid.uuid4().hex[:10]}"
    yield name
    docker("rm", "--force", name, timeout=60)


def _wait_until_listening(port: int, name: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return
        except OSError:
            pass
        state = json.loads(docker("inspect", name).stdout or "[{}]")[0].get("State", {})
        assert state.get("Running"), f"the container stopped: {docker('logs', name).stderr[-3000:]}"
        time.sleep(1)
    raise AssertionError(f"/healthz did not answer within {timeout}s: {docker('logs', name).stderr[-3000:]}")


def test_serves_slack_on_postgresql_and_a_chroma_server(
    tmp_path: Path, postgres_database: str, container_name: str
) -> None:
    """As in production: the ingest job fills the Chroma server, then `steward serve` (the image's own
    command and health check) answers a signed mention through the Slack API, reports ready, counts it in
    /metrics, logs JSON without the question's text, and stops cleanly on SIGTERM."""
    port = free_port()
    with chroma_server(tmp_path / "chroma") as chroma_url, FakeSlack() as slack:
        env = {
            "STEWARD_DATABASE_URL": postgres_database,
            "STEWARD_CHROMA_URL": chroma_url,
            "STEWARD_LOG_FORMAT": "json",
            "STEWARD_PORT": str(port),
            "SLACK_BOT_TOKEN": "xoxb-image-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
        }
        ingested = run_in_image("steward", "ingest", "/app/knowledge", options=["--network=host"], env=env)
        assert "added 36" in ingested, ingested

        settings = [f"--env={name}={value}" for name, value in env.items()]
        started = docker(
            "run", "--detach", f"--name={container_name}", "--network=host", *HARDENED, *settings,
            "--health-interval=2s", "--health-start-period=120s", IMAGE,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        _wait_until_listening(port, container_name)

        status, body = http(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        checks = json.loads(body)["checks"]
        assert sorted(checks) == ["database", "index", "slack_token"], body
        assert all(detail.startswith("ok") for detail in checks.values()), body
        assert "276 chunks" in checks["index"], body

        ts = slack.add_message("CIMAGE", f"<@{slack.bot_user_id}> {QUESTION}", "UASKER")
        event = {
            "type": "app_mention",
            "channel": "CIMAGE",
            "user": "UASKER",
            "ts": ts,
            "text": f"<@{slack.bot_user_id}> {QUESTION}",
        }
        assert send(port, event_body(event, "EvImage001"), "application/json") == 200
        answers = slack.wait_for(
            "chat.postMessage", timeout=60, where=lambda call: call.args.get("thread_ts") == ts
        )
        assert "model-rollback" in json.dumps(answers[0].args), answers[0].args

        answered = 'steward_answers_total{outcome="answered"} 1.0'
        deadline = time.monotonic() + 20  # counted once the answer is posted and recorded
        while answered not in (metrics := http(f"http://127.0.0.1:{port}/metrics")[1]):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.5)
        assert 'steward_slack_requests_total{kind="event",status="200"} 1.0' in metrics, metrics
        assert "steward_slack_api_errors_total{" not in metrics, metrics  # every Slack call worked

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = json.loads(docker("inspect", container_name).stdout)[0]["State"]["Health"]
            if health["Status"] == "healthy":
                break
            time.sleep(1)
        assert health["Status"] == "healthy", health

        stopped = docker("stop", "--time=60", container_name, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(docker("inspect", container_name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, state

    logs = docker("logs", container_name)
    lines = [line for line in logs.stderr.splitlines() if line.strip()]
    assert lines, logs.stdout
    records = [json.loads(line) for line in lines]  # every line is a JSON record
    assert any(record.get("correlation_id") for record in records), lines[:20]
    assert QUESTION not in logs.stderr and "xoxb-image-test" not in logs.stderr + logs.stdout
