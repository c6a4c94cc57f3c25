"""What every benchmark does with its figures: stamp them with the date and the machine, save, print."""

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
