"""The knowledge catalog: documents, their chunks and the ingest manifest, in SQLite or PostgreSQL.

The catalog is the source of truth for what the index holds. A document's row (with its content
hash) is written only after its vectors are in Chroma, so an interrupted ingest leaves the old row
and the next ingest redoes that document.

It is derived from the knowledge base, so it lives apart from the records (bot/store/schema.py): in
its own SQLite file, or in its own `kb_*` tables of a shared PostgreSQL database. `--rebuild` drops
those tables, and deletes the catalog's SQLite file only when that file is damaged and is not the
records database's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, OperationalError

from bot.diskspace import disk_full_message, says_disk_full
from bot.errors import Unavailable
from bot.store.engine import create_engine, damaged_file, same_file, sqlite_file
from bot.store.sources import source_names

metadata = sa.MetaData()

kb_meta = sa.Table(
    "kb_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

kb_documents = sa.Table(
    "kb_documents",
    metadata,
    sa.Column("doc_id", sa.String(40), primary_key=True),
    sa.Column("root", sa.Text, nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("kind", sa.String(32), nullable=True),
    sa.Column("status", sa.String(32), nullable=True),
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("tags", sa.Text, nullable=False, default="[]"),
    sa.Column("services", sa.Text, nullable=False, default="[]"),
    sa.Column("last_reviewed", sa.String(10), nullable=True),
    sa.Column("review_by", sa.String(10), nullable=True),
    sa.Column("superseded_by", sa.Text, nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("ingested_at", sa.Float, nullable=False),
)

kb_chunks = sa.Table(
    "kb_chunks",
    metadata,
    sa.Column("chunk_id", sa.String(64), primary_key=True),
    sa.Column("doc_id", sa.String(40), nullable=False, index=True),
    sa.Column("ord", sa.Integer, nullable=False),
    sa.Column("section", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("terms", sa.Text, nullable=False),
)

# The vectors of a chunk's answer units (sentences, list items, rows), embedded at ingest so that
# choosing an excerpt costs no model work at answer time: `unit_keys` is a JSON list of unit keys
# (`bot.answers.excerpts.unit_key`), `vectors` the float16 rows in the same order.
kb_unit_vectors = sa.Table(
    "kb_unit_vectors",
    metadata,
    sa.Column("chunk_id", sa.String(64), primary_key=True),
    sa.Column("doc_id", sa.String(40), nullable=False, index=True),
    sa.Column("unit_keys", sa.Text, nullable=False),
    sa.Column("vectors", sa.LargeBinary, nullable=False),
)
# Catalog meta key: set once every chunk has its unit vectors (an older index gets them on the next
# ingest, which re-embeds every document once).
UNIT_VECTORS_META = "unit_vectors"


class CatalogError(Unavailable):
    """The catalog cannot be read; the message says how to repair it."""


@dataclass(frozen=True)
class DocumentRecord:
    """One ingested document and what its front matter (or inference) said about it."""

    doc_id: str
    root: str
    path: str
    content_hash: str
    title: str
    kind: str | None = None
    status: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    last_reviewed: str | None = None
    review_by: str | None = None
    superseded_by: str | None = None
    url: str | None = None
    source: str = ""  # the name of its ingested folder (bot/store/sources.py), set when it is read


@dataclass(frozen=True)
class ChunkRecord:
    """One passage of a document, as indexed."""

    chunk_id: str
    doc_id: str
    ord: int
    section: str
    text: str
    terms: str = ""


@dataclass(frozen=True)
class UnitVectors:
    """The answer units' vectors of one chunk: keys and float16 rows, in the same order."""

    chunk_id: str
    keys: tuple[str, ...]
    vectors: NDArray[np.float16]


@dataclass
class CatalogSnapshot:
    """Everything retrieval needs, read in one go at one generation."""

    generation: int
    documents: dict[str, DocumentRecord] = field(default_factory=dict)
    chunks: list[ChunkRecord] = field(default_factory=list)


# The document columns a DocumentRecord holds (all but `ingested_at`); these two are JSON lists.
_DOCUMENT_COLUMNS = tuple(column.name for column in kb_documents.columns if column.name != "ingested_at")
_LIST_COLUMNS = ("tags", "services")


def _document_from_row(row: Any) -> DocumentRecord:
    values = {name: row._mapping[name] for name in _DOCUMENT_COLUMNS}
    values.update({name: tuple(json.loads(values[name] or "[]")) for name in _LIST_COLUMNS})
    return DocumentRecord(**values)


def _document_row(document: DocumentRecord, ingested_at: float) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(document, name) for name in _DOCUMENT_COLUMNS}
    values.update({name: json.dumps(list(values[name])) for name in _LIST_COLUMNS})
    return {**values, "ingested_at": ingested_at}


def _delete_documents(connection: Connection, doc_ids: Sequence[str]) -> None:
    """Delete documents with their chunks and unit vectors (in the caller's transaction)."""
    for table in (kb_unit_vectors, kb_chunks, kb_documents):
        connection.execute(sa.delete(table).where(table.c.doc_id.in_(doc_ids)))


def _named(documents: list[DocumentRecord]) -> list[DocumentRecord]:
    """The documents with their source names, which depend on every folder the catalog holds."""
    names = source_names(document.root for document in documents)
    return [replace(document, source=names[document.root]) for document in documents]


class Catalog:
    """Repository over the catalog tables."""

    def __init__(
        self, url: str, setting: str = "STEWARD_CATALOG_URL", records_url: str | None = None
    ) -> None:
        self.url = url
        self.setting = setting  # the variable that decides where the catalog is, for messages
        self.records_url = records_url  # never deleted, whatever state this catalog is in
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created on first use."""
        if self._engine is None:
            try:
                self._engine = create_engine(self.url)
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
                raise CatalogError(
                    f"{self.setting} is not a usable SQLAlchemy URL ({exc}); use for example "
                    "sqlite:///path/catalog.db or postgresql+psycopg://user@host/db"
                ) from None
        return self._engine

    def where(self) -> str:
        """The database, without its password, for messages."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except DatabaseError as exc:
            raise self._problem(exc) from None

    def _problem(self, exc: DatabaseError) -> CatalogError:
        """What a database error means for the catalog, and what to do about it."""
        message = str(exc.orig).lower()
        if says_disk_full(exc):  # the transaction was rolled back: nothing to repair, only space to free
            file = sqlite_file(self.url)
            if file is not None:
                return CatalogError(disk_full_message(file.parent, "writing the knowledge catalog"))
            return CatalogError(
                f"the database server of the knowledge catalog {self.where()} is out of disk space "
                f"({str(exc.orig).strip()}). Free some space there, then run the same command again."
            )
        if isinstance(exc, OperationalError) and ("connect" in message or "connection" in message):
            return CatalogError(
                f"cannot reach the state database {self.where()}: {str(exc.orig).strip()}. "
                f"Check {self.setting} and that the database is running."
            )
        if isinstance(exc, OperationalError) and "unable to open" in message:
            return CatalogError(
                f"cannot open the knowledge catalog {self.where()}: check that its folder "
                f"({self.setting}) is writable."
            )
        return CatalogError(
            f"the knowledge catalog in {self.where()} cannot be read ({str(exc.orig).strip()}). "
            "It is derived from your documents: rebuild it with `steward ingest PATH... --rebuild` "
            "(this touches only the knowledge index, never the records)."
        )

    def ensure_schema(self) -> None:
        """Create the tables that do not exist yet: once, at start-up (bot/wiring.py builds the catalog)."""
        with self._connect() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together on a new database: two CREATE TABLEs of one name collide
                # in PostgreSQL's catalog (pg_type), so one creates and the others wait, then find them.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7427867)"))
            metadata.create_all(connection)

    def rebuild(self) -> None:
        """Drop the catalog's tables and create them empty (`--rebuild`)."""
        self.drop()
        with self._connect() as connection:
            metadata.create_all(connection)

    def drop(self) -> None:
        """Remove the catalog's tables and nothing else; a damaged catalog file is deleted, unless it is
        the records database's."""
        try:
            with self.engine.begin() as connection:
                metadata.drop_all(connection)
            return
        except DatabaseError as exc:
            problem, damaged = self._problem(exc), damaged_file(exc)
        file = sqlite_file(self.url)
        if not damaged or file is None:  # a server, a lock, a permission: nothing to delete
            raise problem
        records = sqlite_file(self.records_url) if self.records_url else None
        if records is not None and same_file(file, records):
            raise CatalogError(
                f"{file} is the records database, not a catalog of its own: nothing was deleted. "
                "Give the catalog its own file (STEWARD_CATALOG_URL) and restore the records from a backup."
            )
        self.dispose()
        self._engine = None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{file}{suffix}").unlink(missing_ok=True)

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of the catalog's key/value table."""
        with self._connect() as connection:
            return connection.execute(sa.select(kb_meta.c.value).where(kb_meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        """Set a key of the catalog's key/value table."""
        with self._connect() as connection:
            self._set_meta(connection, key, value)

    @staticmethod
    def _set_meta(connection: Connection, key: str, value: str) -> None:
        updated = connection.execute(sa.update(kb_meta).where(kb_meta.c.key == key).values(value=value))
        if updated.rowcount == 0:
            connection.execute(sa.insert(kb_meta).values(key=key, value=value))

    @staticmethod
    def _bump_generation(connection: Connection) -> None:
        current = connection.execute(sa.select(kb_meta.c.value).where(kb_meta.c.key == "generation")).scalar()
        Catalog._set_meta(connection, "generation", str(int(current or 0) + 1))

    def generation(self) -> int:
        """Increases with every committed change; caches of the catalog key on it."""
        return int(self.get_meta("generation") or 0)

    # -- manifest ---------------------------------------------------------------------------

    def manifest(self, root: str) -> dict[str, tuple[str, str]]:
        """Relative path -> (doc_id, content hash) for the documents ingested from `root`."""
        with self._connect() as connection:
            rows = connection.execute(
                sa.select(kb_documents.c.path, kb_documents.c.doc_id, kb_documents.c.content_hash).where(
                    kb_documents.c.root == root
                )
            )
            return {row.path: (row.doc_id, row.content_hash) for row in rows}

    def chunk_ids(self, doc_ids: Iterable[str]) -> list[str]:
        """The chunk ids the catalog holds for these documents."""
        ids = list(doc_ids)
        found: list[str] = []
        with self._connect() as connection:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                found.extend(
                    connection.execute(
                        sa.select(kb_chunks.c.chunk_id).where(kb_chunks.c.doc_id.in_(part))
                    ).scalars()
                )
        return found

    def all_chunk_ids(self) -> set[str]:
        """Every chunk id in the catalog."""
        with self._connect() as connection:
            return set(connection.execute(sa.select(kb_chunks.c.chunk_id)).scalars())

    def roots(self) -> list[str]:
        """The ingested folders (resolved paths) that hold documents."""
        with self._connect() as connection:
            return sorted(connection.execute(sa.select(kb_documents.c.root).distinct()).scalars())

    def count(self) -> tuple[int, int]:
        """(documents, chunks) in the catalog."""
        with self._connect() as connection:
            documents = connection.execute(sa.select(sa.func.count()).select_from(kb_documents)).scalar()
            chunks = connection.execute(sa.select(sa.func.count()).select_from(kb_chunks)).scalar()
            return int(documents or 0), int(chunks or 0)

    def replace_documents(
        self,
        items: Sequence[tuple[DocumentRecord, Sequence[ChunkRecord]]],
        units: Sequence[UnitVectors] = (),
    ) -> None:
        """Write documents, their chunks and their chunks' unit vectors in one transaction, replacing
        earlier versions."""
        if not items:
            return
        now = time.time()
        doc_of = {c.chunk_id: c.doc_id for _, chunks in items for c in chunks}
        with self._connect() as connection:
            _delete_documents(connection, [document.doc_id for document, _ in items])
            connection.execute(sa.insert(kb_documents), [_document_row(d, now) for d, _ in items])
            rows = [asdict(c) for _, chunks in items for c in chunks]
            if rows:
                connection.execute(sa.insert(kb_chunks), rows)
            unit_rows = [
                {
                    "chunk_id": u.chunk_id,
                    "doc_id": doc_of[u.chunk_id],
                    "unit_keys": json.dumps(list(u.keys)),
                    "vectors": u.vectors.astype(np.float16).tobytes(),
                }
                for u in units
                if u.keys
            ]
            if unit_rows:
                connection.execute(sa.insert(kb_unit_vectors), unit_rows)
            self._bump_generation(connection)

    def remove_documents(self, doc_ids: Sequence[str]) -> None:
        """Forget documents and their chunks."""
        if not doc_ids:
            return
        with self._connect() as connection:
            for start in range(0, len(doc_ids), 500):
                _delete_documents(connection, list(doc_ids[start : start + 500]))
            self._bump_generation(connection)

    def unit_vectors(self, chunk_ids: Sequence[str], dimensions: int) -> dict[str, NDArray[np.float32]]:
        """The stored unit vectors of these chunks, by unit key (none for chunks ingested before unit
        vectors were stored)."""
        if not chunk_ids:
            return {}
        with self._connect() as connection:
            rows = connection.execute(
                sa.select(kb_unit_vectors.c.unit_keys, kb_unit_vectors.c.vectors).where(
                    kb_unit_vectors.c.chunk_id.in_(list(chunk_ids))
                )
            ).all()
        found: dict[str, NDArray[np.float32]] = {}
        for keys, blob in rows:
            matrix = np.frombuffer(blob, dtype=np.float16).reshape(-1, dimensions).astype(np.float32)
            found.update(zip(json.loads(keys), matrix, strict=True))
        return found

    def forget_hashes(self, doc_ids: Sequence[str]) -> None:
        """Mark documents as needing a re-ingest (their vectors were found missing)."""
        with self._connect() as connection:
            for start in range(0, len(doc_ids), 500):
                part = list(doc_ids[start : start + 500])
                connection.execute(
                    sa.update(kb_documents).where(kb_documents.c.doc_id.in_(part)).values(content_hash="")
                )

    # -- reading ----------------------------------------------------------------------------

    def documents(self) -> list[DocumentRecord]:
        """Every document in the catalog."""
        with self._connect() as connection:
            rows = connection.execute(sa.select(kb_documents).order_by(kb_documents.c.path))
            return _named([_document_from_row(row) for row in rows])

    def snapshot(self) -> CatalogSnapshot:
        """Documents and chunks as of one generation (read in one transaction)."""
        with self._connect() as connection:
            generation = int(
                connection.execute(sa.select(kb_meta.c.value).where(kb_meta.c.key == "generation")).scalar()
                or 0
            )
            named = _named([_document_from_row(row) for row in connection.execute(sa.select(kb_documents))])
            documents = {document.doc_id: document for document in named}
            chunks = [
                ChunkRecord(**row._mapping)  # its fields are the table's columns (as written: asdict)
                for row in connection.execute(
                    sa.select(kb_chunks).order_by(kb_chunks.c.doc_id, kb_chunks.c.ord)
                )
            ]
        return CatalogSnapshot(generation=generation, documents=documents, chunks=chunks)

    def dispose(self) -> None:
        """Close pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
