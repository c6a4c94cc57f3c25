"""Scale-out: the scenario of tests/test_scale_out.py at a larger size, with its figures saved.

    make bench-scale-out
    # = STEWARD_TEST_POSTGRES_URL=... .venv/bin/python -m bench.scale_out --requests 200

Three `steward serve` replicas share a fresh PostgreSQL database and a real `chroma run` server, with
the local fake Slack in front. The run covers:
- events delivered three times each;
- an approval click storm on `--requests` production requests, with one replica SIGKILLed and
  restarted mid-storm;
- questions that the killed replica acknowledged just before it died;
- a digest fired every minute;
- `steward ingest` while the replicas answer.

The test's assertions apply (each event answered once, each request run at most once, each digest
fire posted once). The report it prints is saved to `bench/results/scale_out.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale_out.json")
    args = parser.parse_args()
    if not os.environ.get("STEWARD_TEST_POSTGRES_URL"):
        parser.error("set STEWARD_TEST_POSTGRES_URL: the replicas share PostgreSQL")
    env = {**os.environ, "STEWARD_SCALE_REQUESTS": str(args.requests)}
    test = "tests/test_scale_out.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SCALE-OUT ")]
    if not lines:
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
        return 1
    report = {"passed": done.returncode == 0, **json.loads(lines[-1].removeprefix("SCALE-OUT "))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
