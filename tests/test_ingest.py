"""Ingest: incremental updates, model identity, interruption and repair, corrupt state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.index.embedding import Embedder
from bot.index.vectors import VectorStoreError
from bot.store.catalog import CatalogError
from bot.wiring import Services
from ingest.documents import Skipped
from ingest.pipeline import IngestError
from tests.conftest import ROOT, write_tree


def _cli_services(tmp_path: Path, **settings: Any) -> Services:
    """Services as `steward ingest` builds them: nothing used before the ingest (the `make_services`
    fixture builds the answer service at once, which opens the catalog)."""
    from bot.config import Settings

    return Services(Settings(data_dir=tmp_path / "data", **settings))


def _paths(services: Services) -> list[str]:
    return sorted(d.path for d in services.catalog.documents())


def test_first_ingest_adds_every_document_and_cites_relative_paths(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """Paths are relative to the ingested folder; vectors and catalog agree."""
    services = make_services()
    report = services.ingestor.run([small_kb])
    assert sorted(report.added) == _paths(services)
    assert "runbooks/model-rollback.md" in report.added
    assert report.chunks == services.catalog.count()[1] == services.vectors.count()
    assert report.skipped == []


def test_second_ingest_changes_nothing_and_does_not_load_the_model(
    small_kb: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """An unchanged tree is recognised by hashes alone."""
    make_services().ingestor.run([small_kb])
    from bot.config import Settings
    from bot.wiring import Services as Fresh

    fresh = Fresh(Settings(data_dir=tmp_path / "data"))
    report = fresh.ingestor.run([small_kb])
    assert (report.added, report.updated, report.removed, report.unchanged) == ([], [], [], 5)
    assert not fresh.embedder.loaded


def test_changed_documents_are_replaced_and_deleted_ones_removed(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """Edit one file, delete another, add a third: the index follows."""
    services = make_services()
    services.ingestor.run([small_kb])
    (small_kb / "runbooks/model-rollback.md").write_text(
        "# Model rollback\n\nUse the blue-green switch now.\n"
    )
    (small_kb / "runbooks/gpu-node-drain.md").unlink()
    write_tree(small_kb, {"runbooks/new.md": "# New\n\nA brand new runbook about certificates.\n"})
    report = services.ingestor.run([small_kb])
    assert report.updated == ["runbooks/model-rollback.md"]
    assert report.removed == ["runbooks/gpu-node-drain.md"]
    assert report.added == ["runbooks/new.md"]
    assert report.unchanged == 3
    assert services.catalog.count()[1] == services.vectors.count()
    answer = services.answers.ask("blue-green switch")
    assert answer.retrieved[0].path == "runbooks/model-rollback.md"
    assert "blue-green" in answer.retrieved[0].text


def test_bad_files_are_skipped_and_listed_while_the_rest_is_ingested(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """Malformed front matter and binary files do not stop the run."""
    write_tree(small_kb, {"runbooks/broken.md": "---\ntitle: [oops\n---\n# Broken\n"})
    (small_kb / "runbooks/blob.md").write_bytes(b"\x00\x01\x02 binary")
    services = make_services(max_file_bytes=10_000)
    (small_kb / "guides/huge.txt").write_text("word " * 5000)
    report = services.ingestor.run([small_kb])
    reasons = {s.path: s.reason for s in report.skipped}
    assert "malformed front matter, line 2" in reasons["runbooks/broken.md"]
    assert "binary" in reasons["runbooks/blob.md"]
    assert "oversize" in reasons["guides/huge.txt"]
    assert len(report.added) == 5


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_nul_characters_never_reach_the_catalog_on_either_backend(
    backend: str, small_kb: Path, make_services: Callable[..., Services], request: pytest.FixtureRequest
) -> None:
    """A NUL byte past the first 8 KiB skips the file as binary, a YAML "\\0" escape is removed with a
    warning, the rest is ingested: the same on SQLite and on PostgreSQL (whose text refuses NUL)."""
    url = request.getfixturevalue("postgres_database") if backend == "postgresql" else None
    (small_kb / "runbooks/late-nul.md").write_bytes(b"# Late NUL\n\n" + b"word " * 2000 + b"\x00 tail\n")
    write_tree(
        small_kb,
        {"runbooks/disk.md": '---\ntitle: "Disk\\0 full"\ntags: ["disk\\0", ok]\n---\n# Disk\n\nSpace.\n'},
    )
    services = make_services(database_url=url)
    report = services.ingestor.run([small_kb])
    assert report.skipped == [
        Skipped("runbooks/late-nul.md", "binary file (a NUL byte at byte 10,012): not indexed")
    ]
    assert len(report.added) == 6 and "runbooks/disk.md" in report.added
    assert (
        "runbooks/disk.md, line 2: field 'title' held NUL characters (\\0); they were removed"
        in report.warnings
    )
    disk = next(document for document in services.catalog.documents() if document.path == "runbooks/disk.md")
    assert (disk.title, disk.tags) == ("Disk full", ("disk", "ok"))
    snapshot = services.catalog.snapshot()
    assert not any("\x00" in chunk.text for chunk in snapshot.chunks)
    again = services.ingestor.run([small_kb])  # the catalog is readable: nothing to repair or rebuild
    assert (again.unchanged, [skipped.path for skipped in again.skipped]) == (6, ["runbooks/late-nul.md"])


def test_an_oversize_file_is_skipped_without_being_read(tmp_path: Path) -> None:
    """A 200 MB (sparse) file over STEWARD_MAX_FILE_BYTES is never opened: the ingest's peak memory is
    that of a run without it; the summary names the file, its size and the setting."""
    big = tmp_path / "kb" / "huge.md"
    big.parent.mkdir()
    (tmp_path / "empty").mkdir()
    with big.open("wb") as file:
        file.truncate(200 * 1024 * 1024)
    without = _ingest_in_a_process(tmp_path / "empty", tmp_path / "d1")
    found = _ingest_in_a_process(big.parent, tmp_path / "d2")
    assert found["opened"] == [] and found["code"] == 0
    assert found["peak_kib"] - without["peak_kib"] < 50 * 1024  # reading it whole took 400 MB more
    assert (
        "skipped huge.md: oversize: 209,715,200 bytes > STEWARD_MAX_FILE_BYTES=2,000,000 (not read; "
        "raise STEWARD_MAX_FILE_BYTES to ingest it)"
    ) in found["out"]


_MEASURED_INGEST = """
import json, resource, sys

opened = []


def watch(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].endswith("huge.md"):
        opened.append(args[0])


sys.addaudithook(watch)
from bot.cli import main

code = main(["ingest", sys.argv[1]])
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "opened": opened, "peak_kib": peak_kib}))
"""


def _ingest_in_a_process(folder: Path, data: Path) -> dict[str, Any]:
    """`steward ingest FOLDER` in a new process: its exit code, output, peak memory and opens of huge.md."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data), "STEWARD_DATA_DIR": str(data)}
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED_INGEST, str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    *summary, last = result.stdout.splitlines()
    return {**json.loads(last), "out": "\n".join(summary)}


def test_a_previously_ingested_file_that_becomes_malformed_keeps_its_last_good_version(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """Losing nothing: a broken edit does not delete the document from the index."""
    services = make_services()
    services.ingestor.run([small_kb])
    (small_kb / "runbooks/model-rollback.md").write_text("---\ntitle: [broken\n---\n# x\n")
    report = services.ingestor.run([small_kb])
    assert report.removed == []
    assert "runbooks/model-rollback.md" in _paths(services)


def test_a_different_embedding_model_is_refused_with_rebuild_advice(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """Vectors of two models are never mixed."""
    services = make_services()
    services.ingestor.run([small_kb])
    services.catalog.set_meta("embedding_model", "some-other-model@123")
    with pytest.raises(IngestError, match="--rebuild"):
        services.ingestor.run([small_kb])
    report = services.ingestor.run([small_kb], rebuild=True)
    assert len(report.added) == 5
    assert services.catalog.get_meta("embedding_model") == services.embedder.identity


def test_an_interrupted_ingest_is_repaired_by_the_next_run(
    small_kb: Path, make_services: Callable[..., Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Vectors written but the catalog write lost: the next run re-does and sweeps orphans."""
    services = make_services()
    original = services.catalog.replace_documents

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if the process were stopped between the two writes

    monkeypatch.setattr(services.catalog, "replace_documents", crash)
    with pytest.raises(KeyboardInterrupt):
        services.ingestor.run([small_kb])
    assert services.catalog.count() == (0, 0)
    assert services.vectors.count() > 0  # orphan vectors from the interrupted run

    monkeypatch.setattr(services.catalog, "replace_documents", original)
    report = services.ingestor.run([small_kb])
    assert len(report.added) == 5
    assert services.catalog.count()[1] == services.vectors.count()


def test_vectors_lost_from_chroma_are_detected_and_re_embedded(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """A catalog row whose vectors are missing is redone on the next ingest."""
    services = make_services()
    services.ingestor.run([small_kb])
    victim = services.catalog.chunk_ids([d.doc_id for d in services.catalog.documents()][:1])
    services.vectors.delete(victim)
    report = services.ingestor.run([small_kb])
    assert report.repaired == len(victim)
    assert len(report.updated) == 1
    assert services.catalog.count()[1] == services.vectors.count()


def test_a_corrupt_catalog_is_reported_and_the_named_repair_works(
    small_kb: Path, make_services: Callable[..., Services], tmp_path: Path, embedder: Embedder
) -> None:
    """A damaged catalog file gives a message naming `--rebuild`, and `--rebuild` repairs it (the CLI's
    services: answering migrates the catalog when it is built, so it fails too, with the same advice)."""
    from bot.config import Settings

    services = make_services()
    services.ingestor.run([small_kb])
    services.close()
    (tmp_path / "data" / "catalog.db").write_bytes(b"this is not a database" * 100)

    def fresh() -> Services:
        built = Services(Settings(data_dir=tmp_path / "data"))
        built.override("embedder", embedder)
        return built

    broken = fresh()
    with pytest.raises(CatalogError, match="--rebuild"):
        broken.ingestor.run([small_kb])
    with pytest.raises(CatalogError, match="--rebuild"):
        broken.answers.ask("How do I roll back the fraud-scorer model?")
    broken.close()
    repaired = fresh()
    report = repaired.ingestor.run([small_kb], rebuild=True)
    assert len(report.added) == 5
    assert repaired.answers.ask("How do I roll back the fraud-scorer model?").citations
    repaired.close()


def test_a_missing_path_is_an_error_and_nothing_is_written(small_kb: Path, tmp_path: Path) -> None:
    """All paths are checked before anything is written (the CLI's services: nothing built before)."""
    services = _cli_services(tmp_path)
    with pytest.raises(IngestError, match="no such file or folder"):
        services.ingestor.run([small_kb, tmp_path / "nope"])
    services.close()
    assert not (tmp_path / "data" / "steward.db").exists()
    assert not (tmp_path / "data" / "catalog.db").exists()


def test_unusable_database_url_is_named(small_kb: Path, tmp_path: Path) -> None:
    """A database URL SQLAlchemy cannot use names the setting."""
    from bot.config import SettingsError

    services = _cli_services(tmp_path, database_url="nosuchdb://x")
    with pytest.raises(SettingsError, match="STEWARD_DATABASE_URL"):
        services.ingestor.run([small_kb])
    with pytest.raises(CatalogError, match="STEWARD_DATABASE_URL"):  # the catalog shares it by default
        services.catalog.count()


def test_unreachable_postgres_is_named(small_kb: Path, tmp_path: Path) -> None:
    """A database server that is not there gives 'cannot reach', not 'rebuild'."""
    from tests.servers import free_port

    services = _cli_services(
        tmp_path, database_url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    )
    with pytest.raises(CatalogError, match="cannot reach the state database"):
        services.ingestor.run([small_kb])


def test_changing_the_embedded_length_is_refused_until_rebuild(
    small_kb: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """STEWARD_EMBEDDED_WORD_PIECES is part of the model identity: vectors of two settings never mix."""
    from bot.config import Settings
    from bot.wiring import Services as Fresh

    make_services().ingestor.run([small_kb])
    other = Fresh(Settings(data_dir=tmp_path / "data", embedded_word_pieces=128))
    with pytest.raises(IngestError, match="--rebuild"):
        other.ingestor.run([small_kb])
    assert len(other.ingestor.run([small_kb], rebuild=True).added) == 5


def test_a_corrupt_embedded_vector_index_is_reported_and_rebuilt(
    small_kb: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """A damaged Chroma folder is named with the repair command, and `--rebuild` starts it afresh."""
    make_services().ingestor.run([small_kb])
    (tmp_path / "data" / "chroma" / "chroma.sqlite3").write_bytes(b"garbage" * 1000)
    broken = make_services()
    with pytest.raises(VectorStoreError, match="--rebuild"):
        broken.ingestor.run([small_kb])
    repaired = make_services()
    assert len(repaired.ingestor.run([small_kb], rebuild=True).added) == 5
    assert repaired.vectors.count() == repaired.catalog.count()[1]


def test_an_emptied_document_is_removed(small_kb: Path, make_services: Callable[..., Services]) -> None:
    """A file whose text was deleted no longer answers with its old text."""
    services = make_services()
    services.ingestor.run([small_kb])
    (small_kb / "runbooks/gpu-node-drain.md").write_text("---\ntitle: Draining a GPU node\n---\n")
    report = services.ingestor.run([small_kb])
    assert report.removed == ["runbooks/gpu-node-drain.md"]
    assert "runbooks/gpu-node-drain.md" not in _paths(services)
    assert services.catalog.count()[1] == services.vectors.count()


def _unit_vector_rows(services: Services) -> dict[str, str]:
    """chunk_id -> doc_id of every stored unit-vector row."""
    import sqlalchemy as sa

    from bot.store.catalog import kb_unit_vectors

    with services.catalog.engine.connect() as connection:
        return dict(connection.execute(sa.select(kb_unit_vectors.c.chunk_id, kb_unit_vectors.c.doc_id)).all())


def test_answer_units_are_embedded_at_ingest_so_answering_embeds_only_the_question(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """Every chunk's units are stored with the chunk; an answer then asks the model for one text (the
    question), and scores its units with the stored vectors, which match a fresh embedding."""
    import numpy as np

    from bot.answers.excerpts import model_texts, unit_key

    services = make_services()
    services.ingestor.run([small_kb])
    assert set(_unit_vector_rows(services)) == services.catalog.all_chunk_ids()

    embedded: list[str] = []
    real_embed = services.embedder.embed

    def counting(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return real_embed(texts)

    services.embedder.embed = counting  # type: ignore[method-assign]
    answer = services.answers.ask("How do I roll back the fraud-scorer model in production?")
    assert not answer.abstained
    assert embedded == ["How do I roll back the fraud-scorer model in production?"]

    chunk = next(c for c in services.retriever.lexicon().chunks if "alias" in c.text)
    texts = model_texts(chunk.text, services.answers.method.semantic_characters)
    stored = services.retriever.unit_vectors([chunk.chunk_id], 384)
    fresh = real_embed(texts)
    for text, row in zip(texts, fresh, strict=True):
        assert float(stored[unit_key(text)] @ row) > 0.999  # float16 storage, same vector


def test_an_index_without_unit_vectors_gets_them_on_the_next_ingest(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """An index built before unit vectors were stored is embedded again once, then answers as fast;
    a removed document's unit vectors go with it."""
    import sqlalchemy as sa

    from bot.store.catalog import UNIT_VECTORS_META, kb_meta, kb_unit_vectors

    services = make_services()
    services.ingestor.run([small_kb])
    with services.catalog.engine.begin() as connection:
        connection.execute(sa.delete(kb_unit_vectors))
        connection.execute(sa.delete(kb_meta).where(kb_meta.c.key == UNIT_VECTORS_META))
    report = services.ingestor.run([small_kb])
    assert sorted(report.updated) == _paths(services)
    assert any("embedded once more" in warning for warning in report.warnings)
    assert set(_unit_vector_rows(services)) == services.catalog.all_chunk_ids()
    again = services.ingestor.run([small_kb])
    assert again.unchanged == 5 and not any("embedded once more" in w for w in again.warnings)

    (small_kb / "runbooks/gpu-node-drain.md").unlink()
    services.ingestor.run([small_kb])
    assert set(_unit_vector_rows(services)) == services.catalog.all_chunk_ids()
