"""Several `steward serve` processes on loopback (the real console script, HTTP mode), and signed Slack
requests to any of them: for the scale-out test and the benchmarks."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.slack.payloads import ACTION_APPROVE, RequestValue
from tests.audit_support import KEY_TEXT
from tests.support.slack import form_body, sign

SECRET = "replica-signing-secret"
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/slack/events")


@dataclass
class Replica:
    """One `steward serve` process; `start` again after `kill` to restart it (on a new port)."""

    env: dict[str, str]
    cwd: Path
    log: Path
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    port: int = 0

    def start(self) -> None:
        """Start serving and wait until it listens (the model loads first)."""
        steward = Path(sys.executable).parent / "steward"
        with self.log.open("a") as stderr:
            self.process = subprocess.Popen(
                [str(steward), "serve", "--port", "0", "--host", "127.0.0.1"],
                env=self.env,
                cwd=self.cwd,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = _LISTENING.search(line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"steward serve did not start ({line!r}); see {self.log}")
        self.port = int(match.group(1))

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a machine dies."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process is not None else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=30)


def send(
    port: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
    secret: str = SECRET,
    timeout: float = 60,
    host: str = "127.0.0.1",
) -> int:
    """POST a signed request to /slack/events; the HTTP status (OSError when nobody answers)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        signed = {"Content-Type": content_type, **sign(secret, body), **(headers or {})}
        connection.request("POST", "/slack/events", body=body, headers=signed)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def approve_click(request_id: str, user: str, channel: str, card_ts: str) -> bytes:
    """The interactivity payload of an Approve click on a request's card."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "trigger_id": "t",
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": card_ts, "channel_id": channel},
        "message": {"ts": card_ts, "blocks": [{"type": "actions", "elements": []}]},
        "actions": [
            {
                "action_id": ACTION_APPROVE,
                "block_id": "b",
                "value": RequestValue(request_id=request_id).encode(),
            }
        ],
    }
    return form_body(payload)


def replica_env(
    slack_api_url: str, database_url: str, chroma_url: str | None, work: Path, **settings: str
) -> dict[str, str]:
    """The environment of replicas sharing one database and one Chroma server (or, with no `chroma_url`,
    the embedded Chroma in work/data), behind the fake Slack.

    Nothing else of this process's environment leaks in (a developer's own STEWARD_* settings included);
    `settings` adds variables, e.g. STEWARD_POLICIES_DIR.
    """
    vectors = {"STEWARD_CHROMA_URL": chroma_url} if chroma_url else {}
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "HF_HUB_OFFLINE": "1",
        "SLACK_BOT_TOKEN": "xoxb-replicas",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack_api_url,
        "STEWARD_DATABASE_URL": database_url,
        **vectors,
        "STEWARD_DATA_DIR": str(work / "data"),
        # one deployment's replicas share the audit key, and so does this test process (tests.databases)
        "STEWARD_AUDIT_KEY": KEY_TEXT,
        **faked_clock(),
        **settings,
    }


def faked_clock() -> dict[str, str]:
    """libfaketime's variables when this run's clock is moved (tests.clock.at), so replicas see the same
    time as the test that signs their requests."""
    return {
        name: value
        for name, value in os.environ.items()
        if name == "LD_PRELOAD" or name.startswith("FAKETIME")
    }


def start_replicas(env: dict[str, str], work: Path, count: int) -> list[Replica]:
    """`count` replicas started together (each loads the model); logs in work/serve-N.log."""
    replicas = [Replica(env, work, work / f"serve-{number}.log") for number in range(count)]
    starting = [threading.Thread(target=replica.start) for replica in replicas]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join()
    return replicas


def log_problems(logs: list[Path]) -> dict[str, int]:
    """Warnings and errors the replicas logged (their serve-N.log files), by message with numbers and
    ids blanked: the ten most frequent."""
    problems: Counter[str] = Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)  # serve logs one JSON object a line
            except ValueError:
                problems[f"not a JSON log line: {line[:120]}"] += 1
                continue
            if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                text = f"{entry['level']} {entry.get('message', '')}"
                problems[re.sub(r"=\S+|\d+", "#", text)[:160]] += 1
    return dict(problems.most_common(10))
