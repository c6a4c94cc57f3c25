"""Guarded-actions benchmark: approval click storms across two `steward serve` processes on PostgreSQL.

    .venv/bin/python bench/actions.py --requests 1000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

1. A private PostgreSQL schema holds the state. `--requests` production retrain requests (each needs
   one ml-platform approval; the requester is an SRE) are submitted through the approval service.
2. Two `steward serve` processes (HTTP mode, the local fake Slack Web API, the starter policies) share
   that database. Every request gets 2 to 10 signed Approve clicks, sent to either server at random,
   many at once: at least one from an eligible approver, the others from anyone (the requester and
   outsiders included).
3. The retrain executor posts to a loopback webhook receiver, which counts executions per idempotency
   key (the request id). Measured: executions (target: exactly one per request), clicks per second
   acknowledged, and click-to-result time (first click sent -> the receiver got the execution).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bot.actions.approvals import ApprovalService  # noqa: E402
from bot.actions.gate import PolicyFolder  # noqa: E402
from bot.actions.models import ActionRequest, Actor  # noqa: E402
from bot.answers.evaluation import percentile  # noqa: E402
from bot.slack.payloads import ACTION_APPROVE, RequestValue  # noqa: E402
from tests.fakes.slack_api import FakeSlack, form_body, sign  # noqa: E402
from tests.fakes.webhook import WebhookReceiver  # noqa: E402

SECRET = "bench-signing-secret"  # noqa: S105 -- signs requests to loopback test servers
ELIGIBLE = ["U0000MLP01", "U0000MLP02", "U0000MLP03"]
OTHERS = ["U0000SRE02", "U0000SRE01", "UOUTSIDER"]
REQUESTER = "U0000SRE01"


def _start_server(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], int]:
    steward = Path(sys.executable).parent / "steward"
    process = subprocess.Popen(
        [str(steward), "serve", "--port", "0", "--host", "127.0.0.1"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)/slack/events", line)
    if not match:
        process.kill()
        raise SystemExit(f"steward serve did not start: {line!r}")
    return process, int(match.group(1))


def _click_body(request_id: str, user: str) -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "trigger_id": "t",
        "channel": {"id": "COPS"},
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "COPS"},
        "message": {"ts": "1.0", "blocks": [{"type": "actions", "elements": []}]},
        "actions": [
            {
                "action_id": ACTION_APPROVE,
                "block_id": "b",
                "value": RequestValue(request_id=request_id).encode(),
            }
        ],
    }
    return form_body(payload)


def _send(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(SECRET, body)}
        connection.request("POST", "/slack/events", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _storm(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    engine = sa.create_engine(url)
    service = ApprovalService(engine, PolicyFolder(work / "policies"))
    retrain = ActionRequest(action="retrain-model", params={"model": "fraud-scorer", "env": "prod"})
    ids = [
        service.submit(retrain, Actor(user_id=REQUESTER, channel="COPS"), thread_ts="1.0")[0].request_id
        for _ in range(args.requests)
    ]
    engine.dispose()
    clicks: list[tuple[str, str]] = []
    for request_id in ids:
        count = rng.randint(2, 10)
        clicks.append((request_id, rng.choice(ELIGIBLE)))
        clicks.extend((request_id, rng.choice(ELIGIBLE + OTHERS)) for _ in range(count - 1))
    rng.shuffle(clicks)
    processes: list[subprocess.Popen[str]] = []
    with FakeSlack() as slack, WebhookReceiver() as receiver:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "STEWARD_DATABASE_URL": url,
            "STEWARD_DATA_DIR": str(work / "data"),
            "STEWARD_POLICIES_DIR": str(work / "policies"),
            "RETRAIN_WEBHOOK_URL": receiver.url,
            "ACTIONS_WEBHOOK_SECRET": "bench-hmac-key",
            "HF_HUB_OFFLINE": "1",
        }
        try:
            ports = []
            for _ in range(2):
                process, port = _start_server(env, work)
                processes.append(process)
                ports.append(port)
            first_click: dict[str, float] = {}
            statuses: Counter[int] = Counter()
            lock = threading.Lock()

            def click(request_id: str, user: str) -> None:
                with lock:
                    first_click.setdefault(request_id, time.monotonic())
                status = _send(rng.choice(ports), _click_body(request_id, user))
                with lock:
                    statuses[status] += 1

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                for request_id, user in clicks:
                    pool.submit(click, request_id, user)
            acked = time.monotonic() - started
            deadline = time.monotonic() + args.wait
            while len({r.headers.get("Idempotency-Key") for r in list(receiver.requests)}) < len(ids):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            time.sleep(3)  # a duplicate execution would arrive now
            received = list(receiver.requests)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=60)
    executed = Counter(r.headers.get("Idempotency-Key", "") for r in received)
    arrival: dict[str, float] = {}
    for request in received:
        arrival.setdefault(request.headers.get("Idempotency-Key", ""), request.at)
    latencies = sorted(arrival[key] - first_click[key] for key in arrival if key in first_click)
    return {
        "requests": len(ids),
        "clicks": len(clicks),
        "click_statuses": dict(statuses),
        "clicks_per_second_acknowledged": round(len(clicks) / acked, 1),
        "executions": sum(executed.values()),
        "requests_executed_once": sum(1 for key in ids if executed.get(key) == 1),
        "requests_executed_twice_or_more": sum(1 for key in ids if executed.get(key, 0) > 1),
        "requests_never_executed": sum(1 for key in ids if key not in executed),
        "click_to_result_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "click_to_result_p95_s": round(percentile(latencies, 95), 3) if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--postgres", default=os.environ.get("STEWARD_TEST_POSTGRES_URL"))
    parser.add_argument("--concurrency", type=int, default=32, help="clicks in flight at once")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for the last execution")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "actions.json")
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("give --postgres URL (or set STEWARD_TEST_POSTGRES_URL)")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.postgres)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    work = Path(tempfile.mkdtemp(prefix="steward-bench-actions-"))
    try:
        shutil.copytree(ROOT / "policies", work / "policies")
        figures = _storm(args, f"{args.postgres}?options=-csearch_path%3D{schema}", work)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
