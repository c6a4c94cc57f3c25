"""What the benchmarks share: stamping figures with the date and the machine, saving and printing them,
and reading a process's resident memory."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.answers.evaluation import LabelledQuestion
    from bot.wiring import Services

ROOT = Path(__file__).resolve().parents[1]


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


def ingested_services(data: Path) -> Services:
    """Services over the index ingested into `data` (a `--data-dir`); exits with what to run when the
    folder is missing or holds no index."""
    from bot.answers.retrieval import IndexMissingError
    from bot.config import Settings
    from bot.wiring import Services

    if not data.is_dir():
        raise SystemExit(
            f"--data-dir {data}: no such folder; index the corpora first: "
            f"STEWARD_DATA_DIR={data} steward ingest ../shared/corpora"
        )
    services = Services(Settings(data_dir=data))
    try:
        services.retriever.lexicon()
    except IndexMissingError as exc:
        services.close()
        raise SystemExit(f"--data-dir {data}: {exc}") from None
    return services


def cross_validation_inputs(
    description: str, name: str
) -> tuple[argparse.Namespace, list[LabelledQuestion], Services]:
    """What a benchmark cross-validated over labelled questions reads: its command line (the ingested
    `--data-dir`, `--questions` (the shared dev set), `--folds`, `--seed`, `--out`, by default
    bench/results/<name>.json), the questions and the services over the index."""
    from bot.answers.evaluation import read_questions

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, required=True, help="STEWARD_DATA_DIR of an ingested index")
    parser.add_argument("--questions", type=Path, default=ROOT.parent / "shared" / "eval" / "dev.jsonl")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / f"{name}.json")
    args = parser.parse_args()
    return args, read_questions(args.questions), ingested_services(args.data_dir)
