"""`steward … | head`: a reader that stops early ends the command quietly, through a real pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import EXIT_BROKEN_PIPE, main

STEWARD = Path(sys.executable).with_name("steward")


def _into_a_closed_pipe(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed `steward` with standard output a pipe whose reader has already gone, as when
    `head` exits: every write to it fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [str(STEWARD), *argv], stdout=write_end, stderr=subprocess.PIPE, env=env, text=True, timeout=300
        )
    finally:
        os.close(write_end)


@pytest.fixture
def data_dir(small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small knowledge base ingested into a private data dir."""
    data = tmp_path / "data"
    monkeypatch.setenv("STEWARD_DATA_DIR", str(data))
    assert main(["ingest", str(small_kb)]) == 0
    return data


def test_ask_into_a_closed_pipe_prints_no_traceback(data_dir: Path) -> None:
    """`steward ask … | head`: exit 141 (as SIGPIPE), and nothing about a BrokenPipeError on stderr."""
    env = {**os.environ, "STEWARD_DATA_DIR": str(data_dir)}
    result = _into_a_closed_pipe(["ask", "How do I roll back a model?"], env)
    assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_BROKEN_PIPE
