"""What the benchmarks share: stamping figures with the date and the machine, saving and printing them,
and reading a process's resident memory."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any


def save(figures: dict[str, Any], out: Path) -> int:
    """Write the figures as JSON to `out` (bench/results/ is not committed) and print them; exit code 0."""
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        **figures,
    }
    text = json.dumps(result, indent=2, default=str)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


def rss_mib(pid: int) -> float:
    """The resident memory of process `pid` (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no resident memory figure (has it exited?)")
