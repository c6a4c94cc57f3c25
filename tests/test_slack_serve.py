"""`steward serve` as a user runs it: the real CLI in a subprocess, HTTP mode, the fake Slack on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.slack.listeners import COMMAND
from bot.slack.payloads import SHORTCUT_REQUEST_ACTION, SHORTCUT_SAVE_GUIDANCE
from bot.wiring import Services
from tests.conftest import ROOT
from tests.support.slack import FakeSlack, event_body, sign

SECRET = "serve-secret"


def test_serve_without_credentials_names_the_missing_variables(capsys: pytest.CaptureFixture[str]) -> None:
    """No Slack variables: exit 1 with a message naming them, no traceback."""
    assert main(["serve"]) == 1
    error = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in error and "SLACK_SIGNING_SECRET" in error and "Traceback" not in error


def test_socket_mode_needs_no_signing_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SLACK_APP_TOKEN set, only the bot token is asked for."""
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert main(["serve"]) == 1
    error = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in error and "set SLACK_BOT_TOKEN." in error


def test_a_rejected_token_is_reported_clearly(
    make_services: Callable[..., Services],
    small_kb: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Slack answering auth.test with invalid_auth stops serve with a message about the token."""
    make_services().ingestor.run([small_kb])
    with FakeSlack() as slack:
        slack.fail("auth.test", status=200, times=5, error="invalid_auth")
        for name, value in _env(slack, tmp_path).items():
            monkeypatch.setenv(name, value)
        assert main(["serve", "--port", "0", "--host", "127.0.0.1"]) == 1
    error = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in error and "invalid_auth" in error and "Traceback" not in error


def _scrape(base: str, until: str, timeout: float = 10.0) -> str:
    """GET /metrics until it holds `until` (the answer is counted just after it is posted)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as scraped:
            assert scraped.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            metrics = scraped.read().decode()
        if until in metrics or time.monotonic() > deadline:
            return str(metrics)
        time.sleep(0.1)


def _env(slack: FakeSlack, tmp_path: Path) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-serve",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "STEWARD_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.mark.slow
def test_serve_answers_a_signed_mention_and_stops_cleanly_on_sigterm(
    make_services: Callable[..., Services], small_kb: Path, tmp_path: Path
) -> None:
    """The console script serves /slack/events, /healthz, /readyz and /metrics, answers (after a 429,
    retried), and exits 0 on SIGTERM."""
    make_services().ingestor.run([small_kb])
    with FakeSlack() as slack:
        env = {**os.environ, **_env(slack, tmp_path), "HF_HUB_OFFLINE": "1"}
        steward = Path(sys.executable).parent / "steward"
        process = subprocess.Popen(
            [str(steward), "serve", "--port", "0", "--host", "127.0.0.1"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)/slack/events", line)
            assert match, (line, process.stderr.read() if process.poll() is not None else "")
            base = match.group(1)
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as health:
                assert json.loads(health.read()) == {"status": "ok"}
            ts = slack.add_message("CGENERAL", "<@UBOT> how do I roll back a production model?", "UASKER")
            event = {
                "type": "app_mention",
                "channel": "CGENERAL",
                "user": "UASKER",
                "ts": ts,
                "text": "<@UBOT> how do I roll back a production model?",
            }
            slack.fail("chat.postMessage", status=429, times=1, retry_after=1)  # retried, and counted
            body = event_body(event, "EvSERVE")
            request = urllib.request.Request(
                f"{base}/slack/events",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", **sign(SECRET, body)},
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert reply.status == 200
            [post] = slack.wait_for("chat.postMessage", count=1, timeout=30)
            assert post.args["thread_ts"] == ts and "Model rollback" in json.dumps(post.args["blocks"])
            assert post.token == "xoxb-serve"
            with urllib.request.urlopen(f"{base}/readyz", timeout=10) as ready:
                report = json.loads(ready.read())
            assert report["status"] == "ready" and report["checks"]["slack_token"] == "ok"
            assert report["checks"]["database"] == "ok" and report["checks"]["index"].startswith("ok: ")
            metrics = _scrape(base, until='steward_answers_total{outcome="answered"} 1.0')
            for sample in (
                'steward_slack_requests_total{kind="event",status="200"} 1.0',
                'steward_slack_ack_seconds_count{kind="event"} 1.0',
                'steward_answers_total{outcome="answered"} 1.0',
                'steward_slack_rate_limited_total{method="chat.postMessage"} 1.0',
            ):
                assert sample in metrics, sample
            assert "how do I roll back" not in metrics and "UASKER" not in metrics
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        assert code == 0
        logged = process.stderr.read() if process.stderr else ""
        assert "xoxb-serve" not in logged and "roll back a production model" not in logged
        lines = [json.loads(line) for line in logged.splitlines() if line.strip()]  # every line is JSON
        (answered,) = [line for line in lines if line["message"].startswith("answered ")]
        assert answered["correlation_id"] == "EvSERVE" and answered["level"] == "INFO"


def test_the_slack_manifest_matches_the_code() -> None:
    """deploy/slack/manifest.yaml names the command, shortcut and events Steward listens to."""
    manifest = yaml.safe_load((ROOT / "deploy" / "slack" / "manifest.yaml").read_text(encoding="utf-8"))
    features, settings = manifest["features"], manifest["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert {s["callback_id"] for s in features["shortcuts"]} == {
        SHORTCUT_SAVE_GUIDANCE,
        SHORTCUT_REQUEST_ACTION,
    }
    assert features["app_home"]["home_tab_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    events = set(settings["event_subscriptions"]["bot_events"])
    assert {"app_mention", "app_home_opened", "message.im", "message.channels"} <= events
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "im:history", "channels:history"} <= scopes
    assert not {"chat:write.public", "channels:read", "users:read.email", "admin"} & scopes  # least privilege
