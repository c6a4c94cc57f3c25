"""Records (requests, approvals, the audit log) live apart from the derived knowledge index: no rebuild,
repair or upgrade deletes them, and a damaged records file is named with what to do."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from bot.actions.models import ActionRequest, Actor
from bot.cli import main
from bot.config import Settings, SettingsError, load_settings
from bot.store import catalog as catalog_tables
from bot.store.catalog import Catalog, CatalogError
from bot.store.engine import create_engine
from bot.store.schema import MIGRATIONS
from bot.wiring import Services
from tests.conftest import ROOT, write_tree

TUESDAY = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()  # outside the weekend freeze
PROD_ROLLBACK = ActionRequest(
    action="rollback-model", params={"model": "fraud-scorer", "version": 12, "env": "prod"}
)
QUESTION = "How do I roll back the fraud-scorer model in production?"
OLD_CATALOG_TABLES = {"kb_meta", "kb_documents", "kb_chunks", "kb_unit_vectors"}

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data dir every `steward` command of the test uses (SQLite records, embedded Chroma)."""
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STEWARD_POLICIES_DIR", str(ROOT / "policies"))
    monkeypatch.setenv("STEWARD_DIGESTS_FILE", str(ROOT / "digests.yaml"))
    return tmp_path / "data"


@pytest.fixture
def steward(capsys: pytest.CaptureFixture[str]) -> Run:
    """Runs `steward ARGS…` through the CLI entry point: (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def services() -> Iterator[Callable[[], Services]]:
    """Services built from the environment as the CLI builds them, closed at the end."""
    built: list[Services] = []

    def build() -> Services:
        built.append(Services(load_settings(), clock=lambda: TUESDAY))
        return built[-1]

    yield build
    for each in built:
        each.close()


def _approved_request(services: Services) -> str:
    """A production rollback with both approvals: requested, decided, approval x2, approved, audited."""
    view, _decision = services.approvals.submit(
        PROD_ROLLBACK, Actor(user_id="U0000MLP01", channel="COPS"), thread_ts="1.0"
    )
    for approver in ("U0000MLP02", "U0000SRE01"):
        assert services.approvals.approve(view.request_id, approver).changed
    services.close()
    return view.request_id


def _audit_entries(steward: Run) -> int:
    code, out, err = steward("audit", "verify")
    assert code == 0, err
    found = re.search(r"audit log OK: (\d+) entries", out)
    assert found is not None, out
    return int(found.group(1))


def _catalog_file(services: Services) -> Path:
    """The SQLite file the catalog lives in (read from the catalog itself)."""
    database = sa.engine.make_url(services.catalog.url).database
    assert database
    return Path(database)


@pytest.mark.parametrize("catalog_state", ["intact", "garbage"])
def test_rebuild_keeps_the_requests_approvals_and_audit_log(
    catalog_state: str, data: Path, small_kb: Path, steward: Run, services: Callable[[], Services]
) -> None:
    """`steward ingest --rebuild`, even over a catalog file of garbage bytes, leaves every record: the
    audit log verifies with the same entries, the request is still approved."""
    assert steward("ingest", str(small_kb))[0] == 0
    request_id = _approved_request(services())
    before = _audit_entries(steward)
    assert before >= 5
    if catalog_state == "garbage":
        index = services()
        catalog_file = _catalog_file(index)
        index.close()
        catalog_file.write_bytes(b"this is not a database" * 200)
        for suffix in ("-wal", "-shm"):
            Path(f"{catalog_file}{suffix}").unlink(missing_ok=True)

    code, out, err = steward("ingest", str(small_kb), "--rebuild")
    assert code == 0, err
    assert "added 5" in out
    assert _audit_entries(steward) == before
    view = services().approvals.get(request_id)
    assert view is not None and view.status == "approved"
    assert steward("ask", QUESTION)[0] == 0


def _damage(file: Path) -> bytes:
    garbage = b"\x00garbage, not SQLite\xff" * 300
    file.write_bytes(garbage)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{file}{suffix}").unlink(missing_ok=True)
    return garbage


def test_a_damaged_records_database_is_never_deleted_and_is_named(
    data: Path, small_kb: Path, steward: Run, services: Callable[[], Services]
) -> None:
    """`ingest` and `ingest --rebuild` leave a damaged steward.db byte for byte (they need only the index);
    the commands that read or write records (`ask` records its answer) name the file and say restore or
    `.recover`, never rebuild, and leave it as it is too."""
    assert steward("ingest", str(small_kb))[0] == 0
    _approved_request(services())
    records = data / "steward.db"
    garbage = _damage(records)

    for argv in (("ingest", str(small_kb)), ("ingest", str(small_kb), "--rebuild")):
        code, _out, err = steward(*argv)
        assert (code, err) == (0, ""), argv
        assert records.read_bytes() == garbage, argv

    for argv in (("ask", QUESTION), ("audit", "verify"), ("audit", "export")):
        code, out, err = steward(*argv)
        assert code == 1, argv
        assert f"the records database {records.resolve()} is damaged" in err
        assert "restore the file from your latest backup" in err
        assert f"sqlite3 {records.resolve()} .recover" in err
        assert "--rebuild` rebuilds only the knowledge index" in err and "Traceback" not in err
        assert records.read_bytes() == garbage
    code, out, _err = steward("digest", "run", "incidents", "--at", "2026-11-24")
    assert code == 3 and f"NOT PRODUCED: the records database {records.resolve()} is damaged" in out
    assert records.read_bytes() == garbage


def test_guidance_that_would_close_a_gap_waits_for_a_sound_records_database(
    data: Path, small_kb: Path, steward: Run, services: Callable[[], Services]
) -> None:
    """Accepted guidance closes a gap (a record): with the records file damaged, the ingest stops before
    the document enters the index, so a later ingest still closes the gap."""
    assert steward("ingest", str(small_kb))[0] == 0
    _approved_request(services())
    garbage = _damage(data / "steward.db")
    guidance = "---\ntitle: Certificates\nstatus: accepted\ngap: 1\n---\n# Certs\n\nRenew them.\n"
    write_tree(small_kb, {"guidance/cert.md": guidance})
    code, _out, err = steward("ingest", str(small_kb))
    assert code == 1 and "is damaged" in err
    assert (data / "steward.db").read_bytes() == garbage
    assert "guidance/cert.md" not in {document.path for document in services().catalog.documents()}


def _old_layout(data: Path) -> None:
    """A steward.db as Steward kept it before the split, at the last revision before the catalog moved
    out: records (a channel's setting, an answered thread) beside catalog tables holding a document."""
    data.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{data / 'steward.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    catalog_tables.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(catalog_tables.kb_documents).values(
                doc_id="d1", root="/kb", path="a.md", content_hash="h", title="A", ingested_at=1.0
            )
        )
        connection.execute(sa.insert(catalog_tables.kb_meta).values(key="generation", value="1"))
        connection.execute(sa.text("INSERT INTO slack_channels VALUES ('C1', false, 'U1', 1.0)"))
        connection.execute(sa.text("INSERT INTO slack_threads VALUES ('C1', '1.0', 1.0)"))
    engine.dispose()


def _tables_and_records(data: Path) -> tuple[set[str], int]:
    engine = create_engine(f"sqlite:///{data / 'steward.db'}")
    try:
        with engine.connect() as connection:
            kept = connection.execute(
                sa.text("SELECT (SELECT count(*) FROM slack_channels) + (SELECT count(*) FROM slack_threads)")
            ).scalar_one()
        return set(sa.inspect(engine).get_table_names()), int(kept)
    finally:
        engine.dispose()


def test_an_upgraded_install_is_told_to_build_the_index_once_and_keeps_its_records(
    data: Path,
    small_kb: Path,
    steward: Run,
    services: Callable[[], Services],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An old steward.db with catalog tables: `ask` and `serve`'s warm-up say to run `steward ingest`
    once, naming catalog.db, and do not crash; the records stay, the old catalog tables leave steward.db."""
    from bot.runtime.serve import warm_up

    _old_layout(data)
    catalog_db = str(data.resolve() / "catalog.db")
    code, _out, err = steward("ask", QUESTION)
    assert code == 1 and "Traceback" not in err
    assert "the knowledge base is empty: run `steward ingest PATH...` first" in err
    assert catalog_db in err and "needed once" in err

    with caplog.at_level(logging.WARNING, logger="steward.slack"):
        warm_up(services())  # `steward serve` up to the first question: migrations, schema, a trial answer
    assert any(catalog_db in record.getMessage() for record in caplog.records)
    tables, kept = _tables_and_records(data)
    assert not tables & OLD_CATALOG_TABLES and "audit_log" in tables
    assert kept == 2

    assert steward("ingest", str(small_kb))[0] == 0
    code, out, _err = steward("ask", QUESTION)
    assert code == 0 and "Sources:" in out
    _approved_request(services())
    assert _audit_entries(steward) >= 5


def test_postgres_rebuild_drops_only_the_catalog_tables(
    postgres_database: str,
    data: Path,
    small_kb: Path,
    steward: Run,
    services: Callable[[], Services],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PostgreSQL the catalog shares the records database in its own tables: `--rebuild` drops
    those, the requests and the audit log stay; an upgrade keeps the catalog tables (they are the catalog)."""
    monkeypatch.setenv("STEWARD_DATABASE_URL", postgres_database)
    assert steward("ingest", str(small_kb))[0] == 0
    request_id = _approved_request(services())
    before = _audit_entries(steward)
    assert steward("ingest", str(small_kb), "--rebuild")[0] == 0
    assert _audit_entries(steward) == before
    view = services().approvals.get(request_id)
    assert view is not None and view.status == "approved"
    tables = set(sa.inspect(services().records).get_table_names())
    assert tables >= OLD_CATALOG_TABLES  # the migration that moves them out of SQLite leaves these alone
    assert not (data / "catalog.db").exists()


# -- attempts to get around the separation -----------------------------------------------------------


@pytest.mark.parametrize(
    "catalog",
    [
        pytest.param(lambda data: f"sqlite:///{data / 'steward.db'}", id="same-path"),
        pytest.param(lambda data: f"sqlite:///{data / '.' / 'x' / '..' / 'steward.db'}", id="dotted-path"),
        pytest.param(lambda data: f"sqlite:///{data / 'link.db'}", id="symlink"),
        pytest.param(lambda data: f"sqlite:///{data / 'hard.db'}", id="hard-link"),
    ],
)
def test_the_catalog_may_not_name_the_records_file(catalog: Callable[[Path], str], tmp_path: Path) -> None:
    """STEWARD_CATALOG_URL naming steward.db (by any path or link) is refused before anything runs."""
    data = tmp_path / "data"
    (data / "x").mkdir(parents=True)
    (data / "steward.db").write_bytes(b"")
    (data / "link.db").symlink_to(data / "steward.db")
    os.link(data / "steward.db", data / "hard.db")
    with pytest.raises(ValueError, match="name the same SQLite file"):
        Settings(data_dir=data, catalog_url=catalog(data))


def test_the_records_database_may_not_name_the_default_catalog_file(tmp_path: Path) -> None:
    """STEWARD_DATABASE_URL pointing at catalog.db (the catalog's default file) is refused too."""
    with pytest.raises(ValueError, match="name the same SQLite file"):
        Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'catalog.db'}")


@pytest.mark.parametrize("variable", ["STEWARD_DATABASE_URL", "STEWARD_CATALOG_URL"])
def test_no_database_may_live_in_the_chroma_folder(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--rebuild` may remove the embedded Chroma folder: a database inside it is refused, named."""
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, f"sqlite:///{tmp_path / 'chroma' / 'x.db'}")
    with pytest.raises(SettingsError, match=f"{variable} puts a database inside {tmp_path / 'chroma'}"):
        load_settings()


def test_a_catalog_built_on_the_records_file_never_deletes_it(tmp_path: Path) -> None:
    """Even a Catalog made by hand on the records file (no Settings check) refuses to delete it."""
    records = tmp_path / "steward.db"
    garbage = _damage(records)
    url = f"sqlite:///{records}"
    with pytest.raises(CatalogError, match="is the records database, not a catalog of its own"):
        Catalog(url, records_url=url).drop()
    assert records.read_bytes() == garbage
