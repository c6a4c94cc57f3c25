"""A full disk: `steward ingest` on a real small file system (a tmpfs in a user and mount namespace, so no
root is needed), the errors that mean a full disk, and a vector segment a full disk left unreadable."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from bot.diskspace import says_disk_full
from bot.store.catalog import Catalog, CatalogError, ChunkRecord, DocumentRecord
from bot.wiring import Services
from tests.conftest import ROOT, write_tree


def _unshare() -> str:
    """`unshare`, when this machine lets an unprivileged user mount a tmpfs in a namespace of its own."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no `unshare` (util-linux): a small file system cannot be mounted without root here")
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not allowed here ({probe.stderr.strip()}): no small file system")
    return unshare


def test_a_full_disk_is_said_and_the_next_run_goes_on(tmp_path: Path) -> None:
    """A 24 MB tmpfs filled to the last byte: the ingest stops before Chroma writes, saying the disk is
    full, where and what to do; the index stays readable; with the space freed, the same command adds the
    new document (no --rebuild)."""
    unshare = _unshare()
    mount = tmp_path / "small-disk"
    mount.mkdir()
    kb = write_tree(
        tmp_path / "kb",
        {
            "disk-alerts.md": "# Disk alerts\n\nFree space on the node, then restart the agent.\n",
            "rollback.md": "# Rollback\n\nRoll the model back to the previous version tag.\n",
        },
    )
    result = subprocess.run(
        [unshare, "-rm", sys.executable, "-m", "tests.disk_full_run", str(mount), str(kb)],
        cwd=ROOT,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert sorted(seen["first"]) == ["disk-alerts.md", "rollback.md"]
    assert seen["full"].startswith(
        f"the disk is full: writing vectors in {seen['data']}/chroma was not started: it needs about "
    )
    assert "Free some space on that disk (or point STEWARD_DATA_DIR to a larger one)" in seen["full"]
    assert "without --rebuild" in seen["full"]
    assert seen["vectors_while_full"] == 2
    assert seen["after"] == {"added": ["gpu-drain.md"], "unchanged": 2, "warnings": []}
    assert seen["answer_cites"][0] == "gpu-drain.md"


def test_the_errors_that_mean_a_full_disk(tmp_path: Path) -> None:
    """ENOSPC from the kernel and SQLite's "database or disk is full" (real ones) are a full disk, in
    SQLAlchemy's wrapper too; a locked database or a missing file is not."""
    found: list[BaseException] = []
    if Path("/dev/full").exists():
        with pytest.raises(OSError) as kernel, Path("/dev/full").open("wb") as device:
            device.write(b"x")
        assert kernel.value.errno == errno.ENOSPC
        found.append(kernel.value)
    engine = sa.create_engine(f"sqlite:///{tmp_path}/small.db")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
    with pytest.raises(sa.exc.OperationalError) as sqlite_full, engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA max_page_count = 3")
        connection.exec_driver_sql("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    found += [sqlite_full.value, sqlite_full.value.orig]  # type: ignore[list-item]
    assert all(says_disk_full(exc) for exc in found)
    assert not says_disk_full(sqlite3.OperationalError("database is locked"))
    assert not says_disk_full(FileNotFoundError(errno.ENOENT, "No such file or directory"))
    engine.dispose()


def test_a_full_catalog_says_the_disk_is_full_not_rebuild(tmp_path: Path) -> None:
    """SQLite refusing the catalog's write for want of pages gives the full-disk message naming the
    folder, not the advice to rebuild; the catalog keeps what it had."""
    catalog = Catalog(f"sqlite:///{tmp_path}/catalog.db")
    catalog.ensure_schema()

    @sa.event.listens_for(catalog.engine, "connect")
    def _small_file(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA max_page_count = 40")  # the file may not grow past 40 pages

    catalog.engine.dispose()  # the pooled connection predates the limit
    document = DocumentRecord("d1", str(tmp_path), "big.md", "hash", "Big")
    chunk = ChunkRecord("d1:0", "d1", 0, "Big", "word " * 100_000)
    with pytest.raises(CatalogError) as raised:
        catalog.replace_documents([(document, [chunk])])
    assert str(raised.value).startswith(
        f"the disk is full: writing the knowledge catalog in {tmp_path} failed for want of space"
    )
    assert "--rebuild" in str(raised.value) and "without --rebuild" in str(raised.value)
    assert catalog.count() == (0, 0)
    catalog.dispose()


def test_a_vector_segment_left_unreadable_is_rebuilt_by_the_next_ingest(
    small_kb: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """Chroma's segment with its id map cut short (what a full disk left in this test's 8 MB tmpfs run:
    "Error deserializing pickle file: … EOF"): the next plain ingest empties the index, says so, and embeds
    every document again; answers work, nothing needs --rebuild."""
    services = make_services()
    services.ingestor.run([small_kb])
    rng = np.random.default_rng(7)
    junk = [f"junk:{number}" for number in range(3000)]  # enough for Chroma to persist its HNSW files
    services.vectors.upsert(
        junk, rng.standard_normal((3000, 384)).astype(np.float32), [{"doc_id": "j"}] * 3000
    )
    services.close()
    (pickle,) = (tmp_path / "data" / "chroma").glob("*/index_metadata.pickle")
    os.truncate(pickle, pickle.stat().st_size // 2)
    again = make_services()
    report = again.ingestor.run([small_kb])
    assert any(
        "the vector index could not be read" in warning and "embedded again" in warning
        for warning in report.warnings
    )
    assert len(report.updated) == 5
    assert again.vectors.count() == again.catalog.count()[1]
    assert again.answers.ask("How do I roll back the fraud-scorer model?").citations
