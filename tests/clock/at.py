"""Run a command with the wall clock moved to a chosen local time: `python -m tests.clock.at WHEN -- CMD`.

The clock is moved with libfaketime (LD_PRELOAD) by a fixed offset, so it keeps running from WHEN and
every child process (`steward serve` replicas, workers, git) sees the same time. The monotonic clock
stays real, so timeouts and sleeps behave as usual. Before running CMD, a child process is asked for
the time: when the clock did not move, this fails instead of running the command at today's date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIBRARY = ROOT / ".venv" / "faketime" / "libfaketime.so.1"


def real_time() -> float:
    """The machine's time, also when this process already runs under a moved clock (a faked run
    that starts another one: libfaketime reads FAKETIME against the real clock)."""
    moved = (
        re.fullmatch(r"([+-]\d+)s", os.environ.get("FAKETIME", "")) if os.environ.get("LD_PRELOAD") else None
    )
    return time.time() - (int(moved.group(1)) if moved else 0)


def faked_environment(when: dt.datetime, library: Path, now: float | None = None) -> dict[str, str]:
    """The environment that makes a process and its children see `when` now (and the clock run on)."""
    offset = round(when.timestamp() - (real_time() if now is None else now))
    others = [entry for entry in os.environ.get("LD_PRELOAD", "").split() if Path(entry).name != library.name]
    preload = " ".join([str(library), *others])
    return {
        **os.environ,
        "LD_PRELOAD": preload,
        "FAKETIME": f"{offset:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        # FAKETIME never changes during a run: read it once. libfaketime re-reads it every 10 s by
        # default, and that re-read is not safe in a process with many threads (a run segfaulted).
        "FAKETIME_CACHE_DURATION": "100000000",
    }


def check_clock(environment: dict[str, str], when: dt.datetime) -> None:
    """Fail unless a child process started with `environment` reads a clock within a minute of `when`."""
    seen = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    drift = abs(float(seen) - when.timestamp())
    if drift > 60:
        raise SystemExit(
            f"tests.clock.at: libfaketime did not move the clock (a child read {seen.strip()}, "
            f"{drift:.0f} s from {when.isoformat()}); build it with tests/clock/build-libfaketime.sh"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], usage="%(prog)s WHEN [--zone ZONE] [--library LIB] -- CMD ..."
    )
    parser.add_argument("when", help="local wall-clock time, e.g. '2026-12-12 12:00'")
    parser.add_argument("--zone", default="Europe/Berlin", help="time zone of WHEN (default Europe/Berlin)")
    parser.add_argument("--library", type=Path, default=DEFAULT_LIBRARY, help="libfaketime.so.1 to preload")
    given = sys.argv[1:] if argv is None else argv
    if "--" not in given:
        parser.error("give the command to run after --, e.g. -- pytest tests/test_approvals.py")
    split = given.index("--")
    args = parser.parse_args(given[:split])
    command = given[split + 1 :]
    if not command:
        parser.error("give the command to run after --")
    try:
        when = dt.datetime.fromisoformat(args.when).replace(tzinfo=ZoneInfo(args.zone))
    except ZoneInfoNotFoundError:
        parser.error(f"--zone {args.zone!r} is not a time zone such as Europe/Berlin")
    except ValueError:
        parser.error(f"WHEN {args.when!r} is not a date and time such as '2026-12-12 12:00'")
    if not args.library.is_file():
        parser.error(f"{args.library} does not exist: build it with tests/clock/build-libfaketime.sh")
    environment = faked_environment(when, args.library)
    check_clock(environment, when)
    print(f"tests.clock.at: running at {when.isoformat()} ({args.zone}): {' '.join(command)}", flush=True)
    return subprocess.run(command, env=environment, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
