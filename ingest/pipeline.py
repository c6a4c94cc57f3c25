"""The ingest run: scan folders, skip what is unchanged, embed what changed, remove what is gone.

Order of writes, per batch of documents: vectors into Chroma first, then the catalog (manifest,
chunks) in one transaction. A crash between the two leaves the manifest's old hash, so the next
run redoes those documents; vectors no catalog row points to are swept by the next run.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bot.answers.compose import DEFAULT_METHOD
from bot.answers.excerpts import model_texts, unit_key
from bot.errors import BadRequest
from bot.index.embedding import Embedder
from bot.index.lexical import terms
from bot.index.vectors import UnreadableSegmentError, VectorIndex
from bot.redaction import findings, redact
from bot.store.catalog import UNIT_VECTORS_META, Catalog, ChunkRecord, DocumentRecord, UnitVectors
from ingest.chunking import chunk_document
from ingest.documents import Skipped, SourceDocument, decode, discover, format_of, parse, read_file

# Part of every content hash: a change to parsing or chunking re-ingests everything once.
PIPELINE_VERSION = "steward-ingest-9"
_BATCH_CHUNKS = 512
DRAFT_REASON = (
    "draft awaiting review: a reviewer publishes it by setting `status: accepted` and ingesting again"
)


class IngestError(BadRequest):
    """The ingest cannot start or go on; the message says what to do."""


@dataclass
class IngestReport:
    """What an ingest did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks: int = 0
    word_pieces: int = 0  # what the model actually embedded (after de-duplication and its cut)
    repaired: int = 0
    seconds: float = 0.0
    accepted_guidance: list[tuple[int, str]] = field(default_factory=list)  # (gap id, path)
    closed_gaps: list[int] = field(default_factory=list)

    @property
    def chunks_per_second(self) -> float:
        """Chunks embedded per second of the whole run."""
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    @property
    def word_pieces_per_second(self) -> float:
        """Word pieces embedded per second of the whole run."""
        return self.word_pieces / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Pending:
    record: DocumentRecord
    chunks: list[ChunkRecord]
    embed_texts: list[str]
    previous_chunk_ids: list[str]
    is_new: bool


class Progress:
    """Receives progress; the CLI shows a bar on a terminal, tests and pipes get nothing."""

    def start(self, total_chunks: int) -> None:
        """Called once the number of chunks to embed is known."""

    def advance(self, chunks: int) -> None:
        """Called after each batch is written."""

    def close(self) -> None:
        """Called at the end of the run."""


def document_id(root: str, path: str) -> str:
    """Stable id of a document: its ingested folder and path."""
    return hashlib.sha1(f"{root}\0{path}".encode(), usedforsecurity=False).hexdigest()[:20]


def content_hash(data: bytes) -> str:
    """Hash of a file's bytes and of the pipeline version."""
    return hashlib.sha256(PIPELINE_VERSION.encode() + b"\0" + data).hexdigest()


class Ingestor:
    """Runs ingests against one catalog and one vector index with one embedding model."""

    def __init__(
        self,
        catalog: Catalog,
        vectors: VectorIndex,
        embedder: Embedder,
        max_file_bytes: int,
        clock: Callable[[], float] = time.perf_counter,
        close_gaps: Callable[[Sequence[tuple[int, str]]], list[int]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.close_gaps = close_gaps
        self.vectors = vectors
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes
        self.clock = clock

    def run(
        self, paths: Sequence[Path], rebuild: bool = False, progress: Progress | None = None
    ) -> IngestReport:
        """Ingest the given folders (or files); see the module docstring for the guarantees."""
        progress = progress or Progress()
        started = self.clock()
        roots = self._check_paths(paths)
        report = IngestReport()
        if rebuild:
            self.vectors.reset()
            self.catalog.rebuild()
        else:  # the first ingest into a data dir creates the index's tables (after checking its paths)
            self.catalog.ensure_schema()
        try:
            self._check_model()
            report.repaired = self._reconcile()
        except UnreadableSegmentError as exc:
            report.warnings.append(self._start_vectors_afresh(exc))
            self._check_model()
            report.repaired = self._reconcile()
        if self._add_unit_vectors():
            report.warnings.append(
                "this index was built before answer units were embedded at ingest: every document is "
                "embedded once more (answers no longer need the model for their excerpts)"
            )

        pending: list[_Pending] = []
        for root in roots:
            pending.extend(self._scan(root, report))
        if report.accepted_guidance and self.close_gaps is not None:
            # The gaps are records: fail before the index changes, not after (a published guidance
            # document is "unchanged" on the next run and would never close its gap).
            self.close_gaps([])

        total = sum(len(item.chunks) for item in pending)
        progress.start(total)
        try:
            for batch in _batches(pending, _BATCH_CHUNKS):
                self._write(batch, report)
                progress.advance(sum(len(item.chunks) for item in batch))
        finally:
            progress.close()
        if report.accepted_guidance and self.close_gaps is not None:
            report.closed_gaps = self.close_gaps(report.accepted_guidance)
        self.catalog.set_meta(UNIT_VECTORS_META, "1")
        self.catalog.set_meta("last_ingest_at", str(time.time()))
        report.seconds = self.clock() - started
        return report

    def _check_paths(self, paths: Sequence[Path]) -> list[Path]:
        if not paths:
            raise IngestError(
                "no path given: name one or more folders or files, e.g. `steward ingest knowledge/`"
            )
        roots: list[Path] = []
        for path in paths:
            if not path.exists():
                raise IngestError(f"{path}: no such file or folder (nothing was ingested)")
            if path.is_file() and format_of(path) is None:
                raise IngestError(
                    f"{path}: not a format Steward reads "
                    "(Markdown .md/.markdown/.md.erb, text .txt, HTML .html)"
                )
            roots.append(path.resolve())
        return roots

    def _check_model(self) -> None:
        identity = self.embedder.identity
        recorded = self.catalog.get_meta("embedding_model")
        stamped = self.vectors.model_identity() if self.vectors.exists() else None
        for found in (recorded, stamped):
            if found is not None and found != identity:
                raise IngestError(
                    f"the index was built with embedding model {found}, but this Steward uses {identity}. "
                    "Vectors of different models cannot be mixed: run `steward ingest PATH... --rebuild`."
                )
        if recorded is None:
            self.catalog.set_meta("embedding_model", identity)
        self.vectors.collection(identity)

    def _start_vectors_afresh(self, problem: UnreadableSegmentError) -> str:
        """An embedded vector index that cannot be read is emptied; the catalog then has every document
        embedded again (the vectors derive from the files, and the catalog says which). What was done."""
        self.vectors.reset()
        self.catalog.forget_hashes([document.doc_id for document in self.catalog.documents()])
        return (
            f"the vector index could not be read ({problem}); it was emptied and every document is "
            "embedded again in this run (a write cut short, by a full disk say, leaves it so)"
        )

    def _add_unit_vectors(self) -> bool:
        """An index built before unit vectors were stored has every document embedded again, once.
        Whether that is so."""
        if self.catalog.get_meta(UNIT_VECTORS_META) is not None:
            return False
        documents = [document.doc_id for document in self.catalog.documents()]
        self.catalog.forget_hashes(documents)
        return bool(documents)

    def _reconcile(self) -> int:
        """Repair a catalog and a vector index that disagree (an interrupted run, a lost volume)."""
        _, catalog_chunks = self.catalog.count()
        if self.vectors.count() == catalog_chunks:
            return 0
        in_chroma = set(self.vectors.iter_ids())
        in_catalog = self.catalog.all_chunk_ids()
        orphans = sorted(in_chroma - in_catalog)
        self.vectors.delete(orphans)
        missing = in_catalog - in_chroma
        if missing:
            doc_ids = sorted({chunk_id.split(":", 1)[0] for chunk_id in missing})
            self.catalog.forget_hashes(doc_ids)
        return len(orphans) + len(missing)

    def _scan(self, root: Path, report: IngestReport) -> list[_Pending]:
        root_key = str(root)
        manifest = self.catalog.manifest(root_key)
        files = discover(root)
        known = frozenset(path for path, _ in files)
        seen: set[str] = set()
        pending: list[_Pending] = []
        for relative, file in files:
            seen.add(relative)
            data = read_file(relative, file, self.max_file_bytes)
            if isinstance(data, Skipped):
                report.skipped.append(data)
                continue
            digest = content_hash(data)
            previous = manifest.get(relative)
            if previous is not None and previous[1] == digest:
                report.unchanged += 1
                continue
            text = decode(relative, data, self.max_file_bytes)
            if isinstance(text, Skipped):
                report.skipped.append(text)
                continue
            parsed = parse(relative, text, format_of(file) or "text", known)
            if isinstance(parsed, Skipped):
                report.skipped.append(parsed)
                continue
            report.warnings.extend(parsed.warnings)
            if parsed.awaiting_review:
                report.skipped.append(Skipped(relative, DRAFT_REASON))
                if previous is not None:
                    seen.discard(relative)  # was published, is a draft again: it must leave the index
                continue
            if parsed.gap_id is not None:
                report.accepted_guidance.append((parsed.gap_id, relative))
            masked = findings(f"{parsed.title}\n{parsed.body}")
            if masked:  # secrets and personal data never reach the index, the embeddings or an LLM
                kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(Counter(masked).items()))
                report.warnings.append(f"{relative}: masked before indexing: {kinds}")
                parsed = replace(parsed, title=redact(parsed.title), body=redact(parsed.body))
            item = self._prepare(root_key, relative, digest, parsed)
            if not item.chunks:
                report.skipped.append(Skipped(relative, "no text to index"))
                if previous is not None:
                    seen.discard(relative)  # emptied since the last ingest: its old text must go
                continue
            item.previous_chunk_ids = self.catalog.chunk_ids([item.record.doc_id]) if previous else []
            item.is_new = previous is None
            pending.append(item)

        gone = sorted(set(manifest) - seen)
        if gone:
            doc_ids = [manifest[path][0] for path in gone]
            self.vectors.delete(self.catalog.chunk_ids(doc_ids))
            self.catalog.remove_documents(doc_ids)
            report.removed.extend(gone)
        return pending

    def _prepare(self, root: str, relative: str, digest: str, parsed: SourceDocument) -> _Pending:
        doc_id = document_id(root, relative)
        record = DocumentRecord(
            doc_id=doc_id,
            root=root,
            path=relative,
            content_hash=digest,
            title=parsed.title,
            kind=parsed.kind,
            status=parsed.status,
            owner=parsed.owner,
            tags=tuple(parsed.tags),
            services=tuple(parsed.services),
            last_reviewed=parsed.last_reviewed,
            review_by=parsed.review_by,
            superseded_by=parsed.superseded_by,
            url=parsed.url,
        )
        chunks = chunk_document(parsed, self.embedder.count_word_pieces)
        # The file's path (without its extension) is searchable too: alert names live there.
        file_words = re.sub(r"\.[^/]*$", "", relative).replace("/", " ")
        records = [
            ChunkRecord(
                chunk_id=f"{doc_id}:{chunk.ord}",
                doc_id=doc_id,
                ord=chunk.ord,
                section=chunk.section,
                text=chunk.text,
                terms=" ".join(terms(f"{file_words} {chunk.section}\n{chunk.text}")),
            )
            for chunk in chunks
        ]
        return _Pending(
            record=record,
            chunks=records,
            embed_texts=[chunk.embed_text for chunk in chunks],
            previous_chunk_ids=[],
            is_new=True,
        )

    def _write(self, batch: Sequence[_Pending], report: IngestReport) -> None:
        texts = [text for item in batch for text in item.embed_texts]
        # Each chunk's answer units too, so that choosing an excerpt needs no model at answer time.
        units = {
            chunk.chunk_id: model_texts(chunk.text, DEFAULT_METHOD.semantic_characters)
            for item in batch
            for chunk in item.chunks
        }
        # Identical passages (boilerplate repeated across documents) are embedded once.
        unique = list(dict.fromkeys([*texts, *(text for found in units.values() for text in found)]))
        before = self.embedder.embedded_word_pieces
        vectors = self.embedder.embed(unique)
        embedded = self.embedder.embedded_word_pieces - before
        position = {text: row for row, text in enumerate(unique)}
        matrix = vectors[[position[text] for text in texts]] if texts else np.zeros((0, vectors.shape[1]))
        unit_vectors = [
            UnitVectors(
                chunk_id,
                tuple(unit_key(text) for text in found),
                vectors[[position[text] for text in found]].astype(np.float16),
            )
            for chunk_id, found in units.items()
            if found
        ]
        ids = [chunk.chunk_id for item in batch for chunk in item.chunks]
        metadatas = [
            {"doc_id": item.record.doc_id, "kind": item.record.kind or "", "status": item.record.status or ""}
            for item in batch
            for _ in item.chunks
        ]
        self.vectors.upsert(ids, matrix.astype(np.float32), metadatas)
        new_ids = set(ids)
        stale = [
            chunk_id for item in batch for chunk_id in item.previous_chunk_ids if chunk_id not in new_ids
        ]
        self.vectors.delete(stale)
        self.catalog.replace_documents([(item.record, item.chunks) for item in batch], unit_vectors)
        for item in batch:
            (report.added if item.is_new else report.updated).append(item.record.path)
        report.chunks += len(ids)
        report.word_pieces += embedded


def _batches(items: Iterable[_Pending], max_chunks: int) -> Iterable[list[_Pending]]:
    batch: list[_Pending] = []
    size = 0
    for item in items:
        batch.append(item)
        size += len(item.chunks)
        if size >= max_chunks:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
