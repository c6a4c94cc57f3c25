"""Guarded-actions benchmark: approval click storms across two `steward serve` processes on PostgreSQL.

    .venv/bin/python -m bench.action_requests --requests 1000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

1. A private PostgreSQL schema holds the state and the knowledge base (`knowledge/` is ingested, so
   every card cites its runbook). `--requests` production retrain requests (each needs one
   ml-platform approval; the requester is an SRE) are submitted through the approval service, spread
   over `--channels` channels, each with its thread and card in the local fake Slack Web API.
2. Two `steward serve` processes (HTTP mode, the fake Slack, the starter policies) share that
   database. Every request gets 2 to 10 signed Approve clicks, sent to either server at random, 32 at
   a time: at least one from an eligible approver, the others from anyone (the requester and
   outsiders included).
3. The retrain executor posts to a loopback webhook receiver, which counts executions per idempotency
   key (the request id). Measured: executions (target: exactly one per request), HTTP statuses and
   clicks per second acknowledged, approvals per second (first to last recorded approval),
   click-to-result time (first click sent -> the receiver got the execution), and the same for
   `--latency-requests` requests clicked one at a time once the storm is over. The servers' warnings
   and errors are counted by message.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.report import save
from bot.actions.approvals import ApprovalService
from bot.actions.models import ActionRequest, Actor
from bot.actions.policy.gate import PolicyFolder
from bot.answers.evaluation import percentile
from bot.store.action_requests import ActionRequestStore
from tests.audit_support import shared_key
from tests.fakes.webhook import WebhookReceiver
from tests.support.clock import starter_policies
from tests.support.records import migrated
from tests.support.replicas import Replica, approve_click, log_problems, replica_env, send
from tests.support.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[1]

ELIGIBLE = ["U0000MLP01", "U0000MLP02", "U0000MLP03"]
OTHERS = ["U0000SRE02", "U0000SRE01", "UOUTSIDER"]
REQUESTER = "U0000SRE01"


def retrain_env(
    slack: FakeSlack, receiver: WebhookReceiver, url: str, work: Path, **settings: str
) -> dict[str, str]:
    """The replicas' environment: the database at `url`, the fake Slack, the starter policies in
    work/policies, the retrain executor posting to `receiver`, no digests, `settings` on top; and the
    knowledge base ingested, so that every card cites the retraining runbook as it would in use."""
    (work / "digests.yaml").write_text("digests: {}\n")  # nothing scheduled, and nothing to warn about
    env = replica_env(
        slack.api_url,
        url,
        None,  # the embedded Chroma in work/data
        work,
        STEWARD_POLICIES_DIR=str(work / "policies"),
        STEWARD_DIGESTS_FILE=str(work / "digests.yaml"),
        RETRAIN_WEBHOOK_URL=receiver.url,
        ACTIONS_WEBHOOK_SECRET="bench-hmac-key",  # noqa: S106 (the local webhook receiver's key)
        **settings,
    )
    steward = Path(sys.executable).parent / "steward"
    subprocess.run(
        [str(steward), "ingest", str(ROOT / "knowledge")], env=env, check=True, capture_output=True
    )
    return env


def _storm(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with FakeSlack() as slack, WebhookReceiver() as receiver:
        env = retrain_env(slack, receiver, url, work)
        # Each request in its own thread, with its card there, as `/steward run` would have posted them.
        engine = migrated(shared_key(sa.create_engine(url)))  # the replicas' audit key, migrated
        service = ApprovalService(ActionRequestStore(engine), PolicyFolder(work / "policies"))
        retrain = ActionRequest(action="retrain-model", params={"model": "fraud-scorer", "env": "prod"})
        card_of: dict[str, tuple[str, str]] = {}
        for number in range(args.requests + args.latency_requests):
            channel = f"COPS{number % args.channels:03d}"
            root = slack.add_message(channel, "retrain please", REQUESTER)
            actor = Actor(user_id=REQUESTER, channel=channel)
            request_id = service.submit(retrain, actor, thread_ts=root)[0].request_id
            card_of[request_id] = (channel, slack.add_message(channel, "card", slack.bot_user_id, root))
        ids, quiet_ids = list(card_of)[: args.requests], list(card_of)[args.requests :]
        engine.dispose()
        clicks: list[tuple[str, str]] = []
        for request_id in ids:
            count = rng.randint(2, 10)
            clicks.append((request_id, rng.choice(ELIGIBLE)))
            clicks.extend((request_id, rng.choice(ELIGIBLE + OTHERS)) for _ in range(count - 1))
        rng.shuffle(clicks)
        logs = [work / f"serve-{number}.log" for number in range(2)]
        servers = [Replica(env, work, log) for log in logs]
        try:
            for server in servers:
                server.start()
            ports = [server.port for server in servers]
            first_click: dict[str, float] = {}
            statuses: Counter[int] = Counter()
            lock = threading.Lock()

            def click(request_id: str, user: str) -> None:
                with lock:
                    first_click.setdefault(request_id, time.monotonic())
                body = approve_click(request_id, user, *card_of[request_id])
                status = send(rng.choice(ports), body, "application/x-www-form-urlencoded")
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
            approvals = approvals_per_second(url)
            quiet = [_one_click(receiver, rng.choice(ports), request_id, card_of) for request_id in quiet_ids]
        finally:
            for server in servers:
                server.stop()
    executed = Counter(r.headers.get("Idempotency-Key", "") for r in received)
    arrival: dict[str, float] = {}
    for request in received:
        arrival.setdefault(request.headers.get("Idempotency-Key", ""), request.at)
    latencies = sorted(arrival[key] - first_click[key] for key in arrival if key in first_click)
    return {
        "requests": len(ids),
        "channels": args.channels,
        "clicks": len(clicks),
        "click_statuses": dict(statuses),
        "clicks_per_second_acknowledged": round(len(clicks) / acked, 1),
        "executions": sum(executed.values()),
        "requests_executed_once": sum(1 for key in ids if executed.get(key) == 1),
        "requests_executed_twice_or_more": sum(1 for key in ids if executed.get(key, 0) > 1),
        "requests_never_executed": sum(1 for key in ids if key not in executed),
        "click_to_result_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "click_to_result_p95_s": round(percentile(latencies, 95), 3) if latencies else None,
        **approvals,
        "quiet_requests": len(quiet),
        "quiet_click_to_result_p50_ms": round(percentile(quiet, 50) * 1000, 1) if quiet else None,
        "quiet_click_to_result_p95_ms": round(percentile(quiet, 95) * 1000, 1) if quiet else None,
        "server_warnings_and_errors": log_problems(logs),
    }


def _one_click(
    receiver: WebhookReceiver, port: int, request_id: str, card_of: dict[str, tuple[str, str]]
) -> float:
    """One eligible click with nothing else going on: seconds until the execution reaches the receiver."""
    started = time.monotonic()
    send(
        port,
        approve_click(request_id, ELIGIBLE[0], *card_of[request_id]),
        "application/x-www-form-urlencoded",
    )
    while not any(r.headers.get("Idempotency-Key") == request_id for r in list(receiver.requests)):
        if time.monotonic() - started > 30:
            raise SystemExit(f"a quiet click did not run its action within 30 s (request {request_id})")
        time.sleep(0.002)
    return time.monotonic() - started


def approvals_per_second(url: str) -> dict[str, Any]:
    """Approvals recorded, and how many a second between the first and the last one."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            count, first, last = connection.execute(
                sa.text("SELECT count(*), min(decided_at), max(decided_at) FROM action_approvals")
            ).one()
    finally:
        engine.dispose()
    span = (last - first) if count > 1 else 0
    return {"approvals_recorded": count, "approvals_per_second": round(count / span, 1) if span else None}


@contextmanager
def private_schema(postgres: str, name: str) -> Iterator[tuple[str, Path]]:
    """A new PostgreSQL schema (the URL that uses it) and a work folder holding the starter policies
    without the weekend freeze; both are removed afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    work = Path(tempfile.mkdtemp(prefix=f"steward-bench-{name}-"))
    try:
        # The replicas read the machine's clock: without the weekend freeze, a weekend run measures the same.
        starter_policies(work / "policies", freeze=False)
        yield f"{postgres}?options=-csearch_path%3D{schema}", work
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--postgres", default=os.environ.get("STEWARD_TEST_POSTGRES_URL"))
    parser.add_argument("--channels", type=int, default=50, help="channels the requests are spread over")
    parser.add_argument(
        "--latency-requests", type=int, default=20, help="requests clicked one at a time after the storm"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="clicks in flight at once")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for the last execution")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "actions.json")
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("give --postgres URL (or set STEWARD_TEST_POSTGRES_URL)")
    with private_schema(args.postgres, "actions") as (url, work):
        figures = _storm(args, url, work)
    return save(figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
