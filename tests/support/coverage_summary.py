"""The short coverage summary `make test` prints: one line per package of bot/ and ingest/, and the total.

`coverage report` lists every file (a few hundred lines); this reads the same data (the .coverage file that
`coverage run` wrote, with the [tool.coverage.*] settings of pyproject.toml) and groups it:

    python -m tests.support.coverage_summary

Files no test imported count, at 0%, as in `coverage report` with `source` set.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("bot", "ingest")  # as [tool.coverage.run] source in pyproject.toml
TOP_LEVEL = "(modules)"  # the modules directly in a package, e.g. bot/cli.py, bot/wiring.py


def packages() -> dict[str, list[str]]:
    """The source files by package: bot/slack, bot/answers, ..., ingest; a package's own modules apart."""
    grouped: dict[str, list[str]] = {}
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            relative = path.relative_to(ROOT).parts
            package = "/".join(relative[:2]) if len(relative) > 2 else f"{relative[0]} {TOP_LEVEL}"
            grouped.setdefault(package, []).append(str(path))
    return dict(sorted(grouped.items()))


def percent(cov: coverage.Coverage, files: list[str] | None = None) -> float:
    """Covered statements (and branches, when measured) of `files`, or of everything, in percent."""
    return float(cov.report(morfs=files, file=io.StringIO()))


def main() -> int:
    cov = coverage.Coverage(config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    what = "statements and branches" if cov.get_data().has_arcs() else "statements"
    print(f"coverage of {what}, by package:")
    for package, files in packages().items():
        print(f"  {package:<22} {percent(cov, files):5.1f}%  ({len(files)} files)")
    print(f"  {'total':<22} {percent(cov):5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
