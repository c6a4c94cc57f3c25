"""Three `steward serve` replicas on loopback sharing PostgreSQL and a real `chroma run` server, with the
local fake Slack in front, while one replica is killed and restarted mid-run:
- Slack's duplicate deliveries and retries of each event are answered once, and the questions the killed
  replica acknowledged just before it died are answered by another replica;
- an approval click storm executes each request at most once, and every request the killed replica did
  not leave half-run exactly once;
- each scheduled digest fire is posted once;
- `steward ingest` into the Chroma server while the replicas answer: every question is answered once,
  none fails, and the new documents are found afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from bot.actions.approvals import ApprovalService
from bot.actions.models import ActionRequest, Actor
from bot.actions.policy.gate import PolicyFolder
from bot.store.action_requests import APPROVED, PENDING, RUNNING, ActionRequestStore, action_requests
from bot.store.conversations import slack_events
from bot.store.events import steward_replicas
from bot.wiring import Services
from tests.audit_support import shared_key
from tests.conftest import write_tree
from tests.fakes.webhook import WebhookReceiver
from tests.servers import chroma_server
from tests.support.clock import starter_policies
from tests.support.replicas import Replica, approve_click, replica_env, send, start_replicas
from tests.support.slack import FakeSlack, event_body

T = TypeVar("T")
FORM = "application/x-www-form-urlencoded"
REQUESTER = "U0000SRE01"
APPROVERS = ["U0000MLP01", "U0000MLP02", "U0000MLP03"]
QUESTIONS = (
    "How do I roll back the fraud-scorer model in production?",
    "What do we do when the feature store is down?",
    "How do I rotate a leaked secret?",
    "Which vector database did we choose?",
    "How is on-call handed over?",
    "How do I roll back a model?",
)
REQUESTS = int(os.environ.get("STEWARD_SCALE_REQUESTS", "24"))  # bench/scale_out.py asks for more
DIGESTS = """timezone: UTC
digests:
  governance:
    kind: governance
    schedule: "* * * * *"
    channel: C0GOVERN
    period_days: 1
"""


@pytest.fixture
def cluster(
    tmp_path: Path, small_kb: Path, make_services: Callable[..., Services], postgres_database: str
) -> Iterator[tuple[list[Replica], FakeSlack, WebhookReceiver, str]]:
    """Three replicas over one database and one Chroma server (the knowledge base ingested into both)."""
    starter_policies(tmp_path / "policies", freeze=False)  # replicas read the machine's clock
    (tmp_path / "digests.yaml").write_text(DIGESTS)
    with chroma_server(tmp_path / "chroma") as chroma_url, FakeSlack() as slack, WebhookReceiver() as hook:
        make_services(database_url=postgres_database, chroma_url=chroma_url).ingestor.run([small_kb])
        env = replica_env(
            slack.api_url,
            postgres_database,
            chroma_url,
            tmp_path,
            STEWARD_POLICIES_DIR=str(tmp_path / "policies"),
            STEWARD_DIGESTS_FILE=str(tmp_path / "digests.yaml"),
            RETRAIN_WEBHOOK_URL=hook.url,
            ACTIONS_WEBHOOK_SECRET="replica-hmac-key",
            STEWARD_HOUSEKEEPING_SECONDS="1",  # a dead replica is noticed after three seconds
        )
        replicas = start_replicas(env, tmp_path, 3)
        try:
            assert all(replica.alive for replica in replicas), [r.log.read_text()[-2000:] for r in replicas]
            yield replicas, slack, hook, postgres_database
        finally:
            for replica in replicas:
                replica.stop()


def _deliver(replicas: list[Replica], body: bytes, content_type: str, rng: random.Random) -> int:
    """As Slack does: to one replica; when it does not answer, again to another with X-Slack-Retry-Num."""
    for attempt, replica in enumerate(rng.sample(replicas, len(replicas))):
        if not replica.alive:
            continue
        headers = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_error"} if attempt else {}
        try:
            return send(replica.port, body, content_type, headers)
        except OSError:
            continue
    raise AssertionError("no replica answered")


def _wait_for(condition: Callable[[], T | None], deadline: float, what: str) -> T:
    """The condition's first value that is not None, polled until the monotonic `deadline`."""
    while (value := condition()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _open_events(engine: sa.Engine) -> int:
    """Events claimed and not yet finished: an answer (or a take-over) may still come from them."""
    with engine.connect() as connection:
        query = sa.select(sa.func.count()).select_from(slack_events).where(slack_events.c.done_at.is_(None))
        return int(connection.execute(query).scalar_one())


def _answered(slack: FakeSlack, channel: str, threads: list[str]) -> bool:
    return all(slack.messages(channel, ts)[1:] for ts in threads)


def _settled(engine: sa.Engine, slack: FakeSlack, threads: list[str]) -> frozenset[str] | None:
    """Once every question is answered, no event is open and no request waits for approvals or a run:
    the requests still `running` (the killed replica's, or runs a live replica has not finished)."""
    if _open_events(engine) or not _answered(slack, "CGENERAL", threads):
        return None
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(action_requests.c.request_id, action_requests.c.status).where(
                action_requests.c.status.in_((PENDING, APPROVED, RUNNING))
            )
        ).all()
    if any(status != RUNNING for _request, status in rows):
        return None
    return frozenset(str(request) for request, _status in rows)


def _whole_housekeeping_round(engine: sa.Engine, replicas: int, deadline: float) -> None:
    """Return once `replicas` replicas have each begun two housekeeping rounds since the call, so that one
    whole round of each ran after it: the take-overs, recovered runs, released holds and stranded runs
    that could answer or execute a second time (each round begins with the replica's heartbeat; a killed
    replica's row never moves again)."""

    def heartbeats() -> dict[str, float]:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(steward_replicas.c.replica, steward_replicas.c.seen_at))
            return {str(name): float(seen) for name, seen in rows}

    last = heartbeats()
    rounds = dict.fromkeys(last, 0)

    def counted() -> bool | None:
        for name, seen in heartbeats().items():
            if name not in last:
                last[name], rounds[name] = seen, 0
            elif seen != last[name]:
                last[name], rounds[name] = seen, rounds[name] + 1
        return True if sum(1 for n in rounds.values() if n >= 2) >= replicas else None

    _wait_for(counted, deadline, "a whole housekeeping round of every replica")


def _fire_seen_by_every_replica(replicas: list[Replica], fire: str) -> bool | None:
    """Each replica logged its outcome of the governance fire (posted, quiet, failed or lost to another)."""
    mark = f"digest=governance fire={fire}"
    seen = sum(1 for replica in replicas for line in replica.log.read_text().splitlines() if mark in line)
    return True if seen >= len(replicas) else None


NEW_RUNBOOKS = {
    f"runbooks/service-{n:02d}.md": f"---\ntitle: Restarting the service-{n:02d} workers\n---\n"
    f"# Restarting the service-{n:02d} workers\n\nDrain the queue of service-{n:02d}, then restart its "
    f"workers one at a time and watch the error rate for ten minutes.\n"
    for n in range(40)
}


def _failed(post: dict[str, object]) -> bool:
    text = json.dumps(post)
    return "cannot reach my knowledge base" in text or "Something went wrong" in text


def _ask_during_ingest(
    replicas: list[Replica], slack: FakeSlack, engine: sa.Engine, kb: Path, rng: random.Random
) -> dict[str, list[dict[str, object]]]:
    """Questions sent every 0.3 s while `steward ingest` adds 40 runbooks; each thread's answers."""
    write_tree(kb, NEW_RUNBOOKS)
    steward = Path(sys.executable).parent / "steward"
    ingest = subprocess.Popen(
        [str(steward), "ingest", str(kb)],
        env=replicas[0].env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    asked: list[str] = []
    while ingest.poll() is None or len(asked) < 5:
        question = rng.choice([*QUESTIONS, "How do I restart the service-07 workers?"])
        text = f"<@{slack.bot_user_id}> {question}"
        ts = slack.add_message("CINGEST", text, "UASKER")
        event = {"type": "app_mention", "channel": "CINGEST", "user": "UASKER", "ts": ts, "text": text}
        assert (
            _deliver(replicas, event_body(event, f"EvIngest{len(asked):03d}"), "application/json", rng) == 200
        )
        asked.append(ts)
        time.sleep(0.3)
    assert ingest.wait() == 0, ingest.stderr.read() if ingest.stderr else ""
    # After the ingest, a new runbook is found (the replicas read the index the ingest wrote).
    text = f"<@{slack.bot_user_id}> How do I restart the service-07 workers?"
    ts = slack.add_message("CINGEST", text, "UASKER")
    event = {"type": "app_mention", "channel": "CINGEST", "user": "UASKER", "ts": ts, "text": text}
    assert _deliver(replicas, event_body(event, "EvIngestAfter"), "application/json", rng) == 200
    asked.append(ts)
    # Every question answered and every claimed event finished: each delivery was claimed or dropped
    # as a duplicate before it was acknowledged, so no second answer can come.
    _wait_for(
        lambda: True if _answered(slack, "CINGEST", asked) and not _open_events(engine) else None,
        time.monotonic() + 60,
        "the answers during the ingest",
    )
    return {
        ts: [m for m in slack.messages("CINGEST", ts) if m.get("user") == slack.bot_user_id] for ts in asked
    }


def _json_line(line: str) -> dict[str, str]:
    """A log line (the killed replica's last one may be cut short)."""
    try:
        return dict(json.loads(line))
    except ValueError:
        return {"level": "CUT", "message": line}


@pytest.mark.slow
def test_replicas_answer_once_execute_once_and_post_each_digest_once(
    cluster: tuple[list[Replica], FakeSlack, WebhookReceiver, str], small_kb: Path
) -> None:
    replicas, slack, hook, url = cluster
    rng = random.Random(7)
    started = dt.datetime.now(dt.UTC)

    # 1. Each event delivered three times: to two replicas at once (a duplicate), then as a retry.
    threads = []
    for number, question in enumerate(QUESTIONS):
        text = f"<@{slack.bot_user_id}> {question}"
        ts = slack.add_message("CGENERAL", text, "UASKER")
        event = {"type": "app_mention", "channel": "CGENERAL", "user": "UASKER", "ts": ts, "text": text}
        body = event_body(event, f"EvScale{number:03d}")
        delivered = [send(replica.port, body, "application/json") for replica in replicas[:2]]
        delivered.append(send(replicas[2].port, body, "application/json", {"X-Slack-Retry-Num": "1"}))
        assert delivered == [200, 200, 200]
        threads.append(ts)

    # 2. The click storm, with replica 0 killed a third of the way in and restarted at two thirds.
    engine = shared_key(sa.create_engine(url))  # the replicas' audit key (tests.support.replicas)
    service = ApprovalService(
        ActionRequestStore(engine), PolicyFolder(Path(replicas[0].env["STEWARD_POLICIES_DIR"]))
    )
    cards: dict[str, tuple[str, str]] = {}
    for number in range(REQUESTS):
        channel = f"COPS{number % 4}"
        root = slack.add_message(channel, "retrain please", REQUESTER)
        retrain = ActionRequest(action="retrain-model", params={"model": f"model-{number}", "env": "prod"})
        request_id = service.submit(retrain, Actor(user_id=REQUESTER, channel=channel), thread_ts=root)[
            0
        ].request_id
        cards[request_id] = (channel, slack.add_message(channel, "card", slack.bot_user_id, root))
    clicks = [(request_id, rng.choice(APPROVERS)) for request_id in cards for _ in range(rng.randint(2, 6))]
    rng.shuffle(clicks)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def click(request_id: str, user: str) -> None:
        status = _deliver(replicas, approve_click(request_id, user, *cards[request_id]), FORM, rng)
        with lock:
            statuses[status] += 1

    third = len(clicks) // 3
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda c: click(*c), clicks[:third]))
        # Questions replica 0 acknowledges and dies on at once: a live replica answers them.
        for number, question in enumerate(QUESTIONS[:3]):
            text = f"<@{slack.bot_user_id}> {question}"
            ts = slack.add_message("CGENERAL", text, "UASKER")
            event = {"type": "app_mention", "channel": "CGENERAL", "user": "UASKER", "ts": ts, "text": text}
            assert send(replicas[0].port, event_body(event, f"EvOrphan{number}"), "application/json") == 200
            threads.append(ts)
        replicas[0].kill()
        list(pool.map(lambda c: click(*c), clicks[third : 2 * third]))
        replicas[0].start()
        list(pool.map(lambda c: click(*c), clicks[2 * third :]))

    # Settled (every question answered, no event open, no request waiting), and still so after a whole
    # housekeeping round of every replica: a duplicate execution or a second answer would have come.
    deadline = time.monotonic() + 120
    while True:
        running = _wait_for(lambda: _settled(engine, slack, threads), deadline, "the storm to settle")
        _whole_housekeeping_round(engine, len(replicas), deadline)
        if _settled(engine, slack, threads) == running:
            break

    # 3. Digests: the next minute's fire after the restart, once every replica has had its chance at it.
    restart = dt.datetime.now(dt.UTC)
    fire = restart.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    _wait_for(
        lambda: _fire_seen_by_every_replica(replicas, fire.strftime("%Y-%m-%dT%H:%M:%SZ")),
        time.monotonic() + 150,
        "every replica's outcome of the fire after the restart",
    )

    # 4. `steward ingest` into the Chroma server while the replicas answer questions.
    during = _ask_during_ingest(replicas, slack, engine, small_kb, rng)

    with engine.connect() as connection:
        grouped = connection.execute(sa.text("SELECT status, count(*) FROM action_requests GROUP BY status"))
        states = {str(status): int(count) for status, count in grouped}
        runs = connection.execute(
            sa.text("SELECT fire_time, status FROM digest_runs WHERE digest = 'governance'")
        ).all()
    engine.dispose()
    executions = Counter(r.headers.get("Idempotency-Key", "") for r in list(hook.requests))
    answers = [
        len([m for m in slack.messages("CGENERAL", ts) if m.get("user") == slack.bot_user_id])
        for ts in threads
    ]
    digest_posts = slack.messages("C0GOVERN")
    logged = [_json_line(line) for replica in replicas for line in replica.log.read_text().splitlines()]
    lost_races = sum(1 for line in logged if line["message"].startswith("digest fire already claimed"))
    executed_once = sum(1 for key in cards if executions.get(key) == 1)
    report = {
        "replicas": 3,
        "events_delivered_three_times": len(QUESTIONS),
        "events_acknowledged_by_the_killed_replica": 3,
        "events_taken_over": sum(1 for line in logged if line["message"].startswith("taking over event=")),
        "answers_per_event": answers,
        "clicks": len(clicks),
        "click_statuses": dict(statuses),
        "requests": REQUESTS,
        "executed_once": executed_once,
        "executed_twice_or_more": sum(1 for key in cards if executions.get(key, 0) > 1),
        "request_states": states,
        "digest_fires": len(runs),
        "digest_posts": len(digest_posts),
        "digest_fires_lost_to_another_replica": lost_races,
        "server_errors_logged": sum(1 for line in logged if line["level"] in ("ERROR", "CRITICAL")),
        "questions_during_ingest": len(during),
        "answered_during_ingest": sum(1 for posts in during.values() if len(posts) == 1),
        "failures_during_ingest": sum(1 for posts in during.values() if any(_failed(p) for p in posts)),
        "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
    }
    print("SCALE-OUT " + json.dumps(report))
    assert answers == [1] * len(threads), report
    assert set(statuses) == {200}, report
    assert report["executed_twice_or_more"] == 0, report
    # Runs the killed replica had in flight stay `running` (then `needs_attention`: never run twice);
    # whether their webhook call got out before the kill is not known. Every other request succeeded.
    interrupted = states.get("running", 0) + states.get("needs_attention", 0)
    assert states.get("succeeded", 0) + interrupted == REQUESTS and interrupted <= 4, report
    assert states.get("succeeded", 0) <= executed_once <= REQUESTS, report
    assert states.get("pending", 0) == 0 and states.get("approved", 0) == 0, report
    assert len(runs) >= 1 and len(digest_posts) == sum(1 for _fire, outcome in runs if outcome == "posted"), (
        report
    )
    assert len({fire for fire, _outcome in runs}) == len(runs), report
    assert lost_races >= 1, report  # the replicas did race for the fires
    assert "service-07" in json.dumps(list(during.values())[-1]), report
    assert report["answered_during_ingest"] == len(during) and report["failures_during_ingest"] == 0, report
