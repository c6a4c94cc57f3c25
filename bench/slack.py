"""Slack-layer benchmark: `steward serve` (HTTP mode) on loopback against the local fake Slack Web API.

    .venv/bin/python -m bench.slack --rate 50 --seconds 30

1. Burst: signed `app_mention` events at `--rate` per second for `--seconds`, open loop (each request
   on its own connection and thread, sent on schedule whether or not earlier ones were acknowledged),
   spread over `--channels` channels. Every `--duplicate-every`-th event is delivered a second time
   with `X-Slack-Retry-Num: 1`, as Slack does after a slow acknowledgement. Measured: acknowledgement
   latency (request sent to HTTP response), answers posted per question (lost = 0, twice = 0), the
   time until the last answer is posted, and the server's memory before and after.
2. Latency: `--latency-events` events one at a time, each in a fresh channel; measured from sending
   the event to the fake receiving `chat.postMessage` with the answer (same clock, same process).

The starter knowledge base (`knowledge/`) is ingested into a temporary data dir first; the extractive
answerer is used (no LLM). Results are printed and saved as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.report import rss_mib, save
from bot.answers.evaluation import percentile
from tests.support.slack import FakeSlack, event_body, sign

ROOT = Path(__file__).resolve().parents[1]

SECRET = "bench-signing-secret"  # noqa: S105 -- signs requests to a loopback test server
QUESTIONS = [
    "How do I roll back a production model, and who has to approve it?",
    "What PSI value counts as drift on a feature?",
    "An API key leaked in a Git commit. What do I do first?",
    "What do we do when the feature store is down?",
    "Our LLM provider is having an outage, how do we fail over?",
    "How do we respond to a suspected prompt injection?",
    "What happens when a retraining pipeline fails?",
    "Who approves promoting a model to production?",
    "What is our data retention period for training data?",
    "How do we handle personal data that showed up in model logs?",
    "What should the on-call hand-off include?",
    "Which model risk tier needs a human in the loop?",
    "How do we evaluate a prompt change before release?",
    "Where must customer data be processed for EU customers?",
    "What do we ask an AI vendor before signing?",
    "How do I respond to a data quality incident?",
]


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
    """One request on a fresh connection (as Slack sends them); returns status and seconds."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/slack/events", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


class Bench:
    """A `steward serve` process and the fake Slack it talks to."""

    def __init__(self, slack: FakeSlack, data_dir: Path, workers: int) -> None:
        self.slack = slack
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "STEWARD_DATA_DIR": str(data_dir),
            "STEWARD_SLACK_WORKERS": str(workers),
            "HF_HUB_OFFLINE": "1",
        }
        steward = Path(sys.executable).parent / "steward"
        self.process = subprocess.Popen(
            [str(steward), "serve", "--port", "0", "--host", "127.0.0.1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)/slack/events", line)
        if not match:
            self.process.kill()
            raise SystemExit(f"steward serve did not start: {line!r}")
        self.port = int(match.group(1))
        self.sequence = 0
        self.lock = threading.Lock()

    def mention(self, channel: str, question: str) -> tuple[bytes, str]:
        """A signed-ready app_mention body for a message seeded in the fake; returns (body, ts)."""
        text = f"<@{self.slack.bot_user_id}> {question}"
        ts = self.slack.add_message(channel, text, "UBENCH")
        with self.lock:
            self.sequence += 1
            event_id = f"EvBench{self.sequence:07d}"
        event = {"type": "app_mention", "channel": channel, "user": "UBENCH", "text": text, "ts": ts}
        return event_body(event, event_id), ts

    def send(self, body: bytes) -> tuple[int, float]:
        """Sign and send; the signature is made at send time, as Slack does."""
        return _post(self.port, body, {"Content-Type": "application/json", **sign(SECRET, body)})

    def answers(self) -> dict[tuple[str, str], list[float]]:
        """(channel, thread_ts) -> arrival times of the answers the fake received."""
        found: dict[tuple[str, str], list[float]] = {}
        for call in self.slack.calls("chat.postMessage"):
            thread = call.args.get("thread_ts")
            if call.status == 200 and thread:
                found.setdefault((str(call.args["channel"]), str(thread)), []).append(call.at)
        return found

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)


def _send_schedule(
    port: int, items: list[tuple[bytes, int]], rate: float
) -> tuple[list[tuple[int, float]], float, float]:
    """Runs in its own process, so that the load generator's threads do not share a GIL with the fake.

    Items are (body, retry number); a retry is sent right after its original, on the same schedule slot.
    """
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def deliver(body: bytes, retry: int) -> None:
        headers = {"Content-Type": "application/json", **sign(SECRET, body)}
        if retry:
            headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
        result = _post(port, body, headers)
        with lock:
            results.append(result)

    started = time.monotonic()
    slot = 0
    with ThreadPoolExecutor(max_workers=128) as pool:
        for body, retry in items:
            if not retry:
                time.sleep(max(0.0, started + slot / rate - time.monotonic()))
                slot += 1
            pool.submit(deliver, body, retry)
    return results, started, time.monotonic() - started


def burst(bench: Bench, rate: float, seconds: float, channels: int, duplicate_every: int) -> dict[str, Any]:
    """Open-loop burst of signed mentions; acknowledgement latency, answers, duplicates."""
    total = int(rate * seconds)
    prepared = [bench.mention(f"CB{i % channels:03d}", QUESTIONS[i % len(QUESTIONS)]) for i in range(total)]
    items: list[tuple[bytes, int]] = []
    for i, (body, _ts) in enumerate(prepared):
        items.append((body, 0))
        if duplicate_every and i % duplicate_every == duplicate_every - 1:
            items.append((body, 1))
    rss_before = rss_mib(bench.process.pid)
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as sender:
        acks, sender_started, sent_for = sender.submit(_send_schedule, bench.port, items, rate).result()
    expected = {(f"CB{i % channels:03d}", ts) for i, (_body, ts) in enumerate(prepared)}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        answered = bench.answers()
        if expected <= set(answered):
            break
        time.sleep(0.2)
    drained = time.monotonic() - started
    time.sleep(3)  # a late duplicate answer would arrive now
    answered = bench.answers()
    latencies = sorted(seconds for _status, seconds in acks)
    # CLOCK_MONOTONIC is system-wide on Linux, so the sender's schedule and the fake's clock agree.
    delays = sorted(
        min(answered[key]) - (sender_started + i / rate)
        for i, key in enumerate((f"CB{i % channels:03d}", ts) for i, (_b, ts) in enumerate(prepared))
        if key in answered
    )
    return {
        "events": total,
        "duplicate_deliveries": len(items) - total,
        "sent_seconds": round(sent_for, 2),
        "statuses": sorted({status for status, _ in acks}),
        "non_200": sum(1 for status, _ in acks if status != 200),
        "ack_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "ack_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "ack_max_ms": round(latencies[-1] * 1000, 1),
        "answered_once": sum(1 for key in expected if len(answered.get(key, [])) == 1),
        "answered_twice_or_more": sum(1 for key in expected if len(answered.get(key, [])) > 1),
        "lost": sum(1 for key in expected if key not in answered),
        "last_answer_after_s": round(drained, 1),
        "answer_delay_p50_s": round(percentile(delays, 50), 2),
        "answer_delay_p95_s": round(percentile(delays, 95), 2),
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_mib(bench.process.pid), 1),
    }


def latency(bench: Bench, count: int, gap: float) -> dict[str, Any]:
    """Event sent -> answer posted, one question at a time."""
    seconds: list[float] = []
    for i in range(count):
        channel = f"CL{i:03d}"
        body, ts = bench.mention(channel, QUESTIONS[i % len(QUESTIONS)])
        sent = time.monotonic()
        status, _ = bench.send(body)
        assert status == 200, status
        [call] = bench.slack.wait_for(
            "chat.postMessage",
            count=1,
            timeout=30,
            where=lambda c, ch=channel, t=ts: c.args.get("thread_ts") == t and c.args.get("channel") == ch,
        )[-1:]
        seconds.append(call.at - sent)
        time.sleep(gap)
    seconds.sort()
    return {
        "events": count,
        "p50_ms": round(percentile(seconds, 50) * 1000, 1),
        "p95_ms": round(percentile(seconds, 95) * 1000, 1),
        "max_ms": round(seconds[-1] * 1000, 1),
        "median_ms": round(statistics.median(seconds) * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--knowledge", type=Path, default=ROOT / "knowledge")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second in the burst")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the burst")
    parser.add_argument("--channels", type=int, default=50, help="channels the burst is spread over")
    parser.add_argument(
        "--duplicate-every", type=int, default=10, help="redeliver every Nth event (0: never)"
    )
    parser.add_argument("--latency-events", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4, help="STEWARD_SLACK_WORKERS of the server")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "slack.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="steward-bench-slack-") as tmp:
        data_dir = Path(tmp) / "data"
        steward = Path(sys.executable).parent / "steward"
        subprocess.run(
            [str(steward), "ingest", str(args.knowledge)],
            env={**os.environ, "STEWARD_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with FakeSlack() as slack:
            bench = Bench(slack, data_dir, args.workers)
            try:
                latency_result = latency(bench, args.latency_events, gap=0.3)
                burst_result = burst(bench, args.rate, args.seconds, args.channels, args.duplicate_every)
            finally:
                code = bench.stop()
    result = {
        "settings": vars(args) | {"knowledge": str(args.knowledge), "out": str(args.out)},
        "latency": latency_result,
        "burst": burst_result,
        "server_exit_code": code,
    }
    return save(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
