"""Time in tests: the clocks a test chooses (whole runs at a chosen wall-clock time: `tests.clock.at`).

No test may depend on the time of day or the weekday it runs at: the starter policy freezes production
changes from Friday 17:00 to Monday 08:00 in Berlin, so a service reading the machine's clock decides
differently at weekends.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
FREEZE_FILE = "20-freeze.yaml"  # the starter policy's time rules
BERLIN = ZoneInfo("Europe/Berlin")
# A working Tuesday at noon in Berlin: outside every time rule of the starter policies.
TUESDAY_NOON = dt.datetime(2026, 11, 24, 12, 0, tzinfo=BERLIN).timestamp()
# Inside the starter weekend freeze (Friday 17:00 - Monday 08:00 in Berlin).
SATURDAY_NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=BERLIN).timestamp()


class SettableClock:
    """A clock that reads `now` until the test moves it (`clock.now = ...`)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RunningClock:
    """A clock that reads `start` when made and runs on at real speed (for code that waits on it)."""

    def __init__(self, start: float = TUESDAY_NOON) -> None:
        self.start = start
        self._began = time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self._began)


def starter_policies(dest: Path, *, freeze: bool) -> Path:
    """A copy of the starter policies in `dest` for processes the test cannot give a clock (`steward
    serve` replicas): with `freeze=False` the weekend freeze file is left out, so what they decide does
    not depend on the day they run; with `freeze=True` it is kept as shipped."""
    shutil.copytree(ROOT / "policies", dest)
    if not freeze:
        (dest / FREEZE_FILE).unlink()
    return dest
