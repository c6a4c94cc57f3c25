"""Sustained load: signed Slack events at a fixed rate against two `steward serve` replicas.

    .venv/bin/python -m bench.events --rate 50 --seconds 300 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

Two replicas (HTTP mode, the local fake Slack) share a fresh PostgreSQL database and a real `chroma run`
server with `knowledge/` ingested. A load generator sends `--rate` signed `app_mention` events a second
for `--seconds`, each to a random replica; one in ten is delivered a second time to the other replica
(Slack's duplicates and retries). Measured: acknowledgement latency (p50/p95/p99, the HTTP response
time), HTTP statuses, answers posted during the run and after a `--drain` wait, events answered twice
(target: zero), and each replica's resident memory every 10 s (growth from the first sample).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

import sqlalchemy as sa

from bench.report import rss_mib, save
from bot.answers.evaluation import percentile
from tests.servers import chroma_server
from tests.support.replicas import replica_env, send, start_replicas
from tests.support.slack import FakeSlack, event_body

ROOT = Path(__file__).resolve().parents[1]

DEV_QUESTIONS = ROOT.parent / "shared" / "eval" / "dev.jsonl"


def _questions() -> list[str]:
    """The labelled dev questions (the shared folder beside the project), else one starter question."""
    if not DEV_QUESTIONS.is_file():
        return ["How do I roll back a model?"]
    lines = DEV_QUESTIONS.read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def _database(postgres: str) -> tuple[str, sa.Engine, str]:
    name = f"steward_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return sa.engine.make_url(postgres).set(database=name).render_as_string(hide_password=False), admin, name


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    questions = _questions()
    url, admin, name = _database(args.postgres)
    try:
        with chroma_server(work / "chroma") as chroma_url, FakeSlack() as slack:
            (work / "digests.yaml").write_text("digests: {}\n")  # nothing scheduled
            env = replica_env(
                slack.api_url, url, chroma_url, work, STEWARD_DIGESTS_FILE=str(work / "digests.yaml")
            )
            steward = Path(sys.executable).parent / "steward"
            subprocess.run(
                [str(steward), "ingest", str(ROOT / "knowledge")], env=env, check=True, capture_output=True
            )
            replicas = start_replicas(env, work, 2)
            memory: list[list[float]] = [[] for _ in replicas]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(10):
                    for index, replica in enumerate(replicas):
                        if replica.process is not None:
                            memory[index].append(round(rss_mib(replica.process.pid), 1))

            for index, replica in enumerate(replicas):
                assert replica.process is not None
                memory[index].append(round(rss_mib(replica.process.pid), 1))
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            acks: list[float] = []
            statuses: Counter[int] = Counter()
            threads: list[str] = []
            lock = threading.Lock()

            def deliver(port: int, body: bytes, headers: dict[str, str]) -> None:
                started = time.perf_counter()
                try:
                    status = send(port, body, "application/json", headers, timeout=30)
                except OSError:
                    status = 0
                with lock:
                    acks.append(time.perf_counter() - started)
                    statuses[status] += 1

            total = args.rate * args.seconds
            began = time.monotonic()
            with ThreadPoolExecutor(max_workers=64) as pool:
                for number in range(total):
                    due = began + number / args.rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    text = f"<@{slack.bot_user_id}> {rng.choice(questions)}"
                    channel = f"CLOAD{number % 20:02d}"
                    ts = slack.add_message(channel, text, "UASKER")
                    threads.append(f"{channel}/{ts}")
                    event = {
                        "type": "app_mention",
                        "channel": channel,
                        "user": "UASKER",
                        "ts": ts,
                        "text": text,
                    }
                    body = event_body(event, f"EvLoad{number:06d}")
                    first, other = rng.sample(replicas, 2)
                    pool.submit(deliver, first.port, body, {})
                    if number % 10 == 0:
                        pool.submit(deliver, other.port, body, {"X-Slack-Retry-Num": "1"})
            sent_for = time.monotonic() - began

            def answered() -> Counter[int]:
                counts: Counter[int] = Counter()
                for key in threads:
                    channel, ts = key.split("/")
                    replies = [m for m in slack.messages(channel, ts) if m.get("user") == slack.bot_user_id]
                    counts[len(replies)] += 1
                return counts

            at_end = answered()
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline and answered()[0]:
                time.sleep(5)
            drained = answered()
            stop.set()
            for replica in replicas:
                replica.stop()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    ordered = sorted(acks)
    return {
        "rate_per_second": args.rate,
        "seconds": args.seconds,
        "events": total,
        "deliveries": len(acks),
        "sent_in_seconds": round(sent_for, 1),
        "http_statuses": dict(statuses),
        "ack_p50_ms": round(percentile(ordered, 50) * 1000, 1),
        "ack_p95_ms": round(percentile(ordered, 95) * 1000, 1),
        "ack_p99_ms": round(percentile(ordered, 99) * 1000, 1),
        "answered_when_sending_stopped": total - at_end[0],
        "answered_after_drain": total - drained[0],
        "drain_seconds": args.drain,
        "answered_twice_or_more": sum(count for replies, count in drained.items() if replies > 1),
        "memory_mb_per_replica": [{"first": m[0], "last": m[-1], "max": max(m)} for m in memory],
        "memory_mb_every_minute": [m[::6] for m in memory],  # sampled every 10 s
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--drain", type=int, default=300, help="seconds to wait for the backlog afterwards")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--postgres", default=os.environ.get("STEWARD_TEST_POSTGRES_URL"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "events.json")
    args = parser.parse_args()
    if not args.postgres:
        parser.error("--postgres URL (or STEWARD_TEST_POSTGRES_URL) is needed: the replicas share PostgreSQL")
    with tempfile.TemporaryDirectory(prefix="steward-bench-events-") as folder:
        figures = run(args, Path(folder))
    return save(figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
