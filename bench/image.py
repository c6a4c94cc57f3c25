"""The container image against the same code run from the virtual environment (the baseline): time from
start to /healthz answering (the model loads first), resident memory (VmRSS) when idle, time to stop on
SIGTERM, and the image's size. Medians of --repeat runs, alternating container and baseline.

Both run `steward serve` in HTTP mode on embedded defaults (SQLite and embedded Chroma), each over its
own data dir where the starter knowledge/ was ingested once beforehand, so the start includes loading
the model and answering the warm-up question. The local fake Slack answers auth.test. The container runs
as in Kubernetes (uid 10001, read-only root, no capabilities) on the host's network, its data dir
bind-mounted.

    python -m bench.image --image steward:dev --repeat 5      (make bench-image; build the image first)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from bench.report import rss_mib, save
from tests.containers import HARDENED
from tests.servers import free_port
from tests.support.replicas import SECRET
from tests.support.slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait(port: int, started: float, timeout: float = 300) -> float:
    while not _healthy(port):
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"/healthz on port {port} did not answer within {timeout} s")
        time.sleep(0.05)
    return time.perf_counter() - started


def _settings(slack: FakeSlack, port: int) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-bench-image",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "STEWARD_PORT": str(port),
        "STEWARD_LOG_FORMAT": "json",
    }


def _container_options(data: Path) -> list[str]:
    """HARDENED, with the data dir bind-mounted instead of a tmpfs."""
    kept = [option for option in HARDENED if not option.startswith("--tmpfs=/var/lib/steward")]
    return [*kept, f"--volume={data}:/var/lib/steward"]


def ingest(image: str, work: Path) -> tuple[Path, Path]:
    """The starter knowledge base ingested once for each: (the container's data dir, the venv's)."""
    in_container, in_venv = work / "container", work / "venv"
    in_container.mkdir()
    os.chown(in_container, 10001, 10001)
    subprocess.run(
        ["docker", "run", "--rm", "--network=none", *_container_options(in_container), image,
         "steward", "ingest", "knowledge/"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    steward = Path(sys.executable).parent / "steward"
    subprocess.run(
        [str(steward), "ingest", str(ROOT / "knowledge")],
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "STEWARD_DATA_DIR": str(in_venv)},
        check=True,
        capture_output=True,
    )
    return in_container, in_venv


def container_run(image: str, slack: FakeSlack, data: Path) -> dict[str, float]:
    port, name = free_port(), f"steward-bench-{uuid.uuid4().hex[:8]}"
    env = [f"--env={key}={value}" for key, value in _settings(slack, port).items()]
    started = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--detach", f"--name={name}", "--network=host", *_container_options(data), *env,
         image],
        check=True,
        capture_output=True,
    )  # fmt: skip
    try:
        ready = _wait(port, started)
        time.sleep(5)  # idle: the first probes and the scheduler have run
        inspected = subprocess.run(["docker", "inspect", name], capture_output=True, text=True).stdout
        pid = json.loads(inspected)[0]["State"]["Pid"]
        idle = rss_mib(pid)  # `steward serve` is the container's process 1, seen from here by its host pid
        stopping = time.perf_counter()
        subprocess.run(["docker", "stop", "--time=60", name], check=True, capture_output=True)
        stopped = time.perf_counter() - stopping
        state = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True).stdout)
        assert state[0]["State"]["ExitCode"] == 0, state[0]["State"]
        return {"start_s": ready, "idle_mib": idle, "stop_s": stopped}
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)


def venv_run(slack: FakeSlack, data: Path) -> dict[str, float]:
    port = free_port()
    steward = Path(sys.executable).parent / "steward"
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "HF_HUB_OFFLINE": "1", "STEWARD_DATA_DIR": str(data)}
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(steward), "serve", "--host", "127.0.0.1"],
            env={**env, **_settings(slack, port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready = _wait(port, started)
            time.sleep(5)
            idle = rss_mib(process.pid)
            stopping = time.perf_counter()
            process.terminate()
            code = process.wait(timeout=60)
            stopped = time.perf_counter() - stopping
            assert code == 0, code
            return {"start_s": ready, "idle_mib": idle, "stop_s": stopped}
        finally:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="steward:dev")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "image.json")
    args = parser.parse_args()
    inspected = subprocess.run(["docker", "image", "inspect", args.image], capture_output=True, text=True)
    if inspected.returncode != 0:
        print(f"bench/image.py: no image {args.image}: build it with `make image` or `make image-offline`")
        return 2
    runs: dict[str, list[dict[str, float]]] = {"container": [], "venv": []}
    with FakeSlack() as slack, tempfile.TemporaryDirectory() as work:
        in_container, in_venv = ingest(args.image, Path(work))
        for _ in range(args.repeat):
            runs["container"].append(container_run(args.image, slack, in_container))
            runs["venv"].append(venv_run(slack, in_venv))
    figures = {
        name: {key: round(statistics.median(run[key] for run in done), 2) for key in done[0]}
        for name, done in runs.items()
    }
    return save(
        {
            "command": f"python -m bench.image --image {args.image} --repeat {args.repeat}",
            "image": args.image,
            "image_size_gb": round(json.loads(inspected.stdout)[0]["Size"] / 1e9, 2),
            "medians": figures,
            "runs": runs,
        },
        args.out,
    )


if __name__ == "__main__":
    raise SystemExit(main())
