"""Chroma as the vector store: embedded (`PersistentClient`) or a server (`HttpClient`).

Steward always supplies its own vectors: Chroma's default embedding function would try to
download a model, which must never happen.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from numpy.typing import NDArray

from bot.diskspace import NEARLY_FULL_BYTES, disk_full_message, free_bytes, nearly_full, says_disk_full
from bot.errors import Unavailable

MODEL_KEY = "steward_embedding_model"


log = logging.getLogger("steward.index")


class VectorStoreError(Unavailable):
    """Chroma cannot be used; the message says where and what to do."""


class UnreadableSegmentError(VectorStoreError):
    """The embedded index's vector segment cannot be read (a write cut short, by a full disk say)."""


@dataclass(frozen=True)
class VectorHit:
    """A chunk id and its cosine similarity to the query."""

    chunk_id: str
    similarity: float


def _chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


class VectorIndex:
    """One Chroma collection holding one vector per chunk."""

    def __init__(
        self,
        collection: str,
        path: Path | None = None,
        url: str | None = None,
        reserve_bytes: int | None = NEARLY_FULL_BYTES,
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("give either an embedded path or a server url")
        self.collection_name = collection
        self.path = path
        self.url = url
        # An embedded write starts only with this much free beyond its own estimate: Chroma's compactor
        # rewrites its segment files in place, and one cut short by a full disk leaves them unreadable.
        # None: no check (the tests that let Chroma run into a full disk).
        self.reserve_bytes = reserve_bytes
        self._client: Any = None
        self._collection: Any = None

    def where(self) -> str:
        """Where the vectors live, for messages."""
        return f"Chroma server {self.url}" if self.url else f"embedded Chroma at {self.path}"

    @property
    def client(self) -> Any:
        """The Chroma client, connected on first use."""
        if self._client is None:
            import chromadb

            if self.url:
                parsed = urlparse(self.url)
                if parsed.scheme not in ("http", "https") or not parsed.hostname:
                    raise VectorStoreError(
                        f"STEWARD_CHROMA_URL={self.url!r} is not an http(s) URL; "
                        "use for example http://127.0.0.1:8000"
                    )
                try:
                    self._client = chromadb.HttpClient(
                        host=parsed.hostname,
                        port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                        ssl=parsed.scheme == "https",
                        settings=_chroma_settings(),
                    )
                    self._client.heartbeat()
                except Exception as exc:
                    self._client = None
                    raise VectorStoreError(
                        f"cannot reach the Chroma server at {self.url} ({type(exc).__name__}: {exc}). "
                        "Start it (`chroma run --path DIR --port PORT`) or fix STEWARD_CHROMA_URL."
                    ) from None
            else:
                if self.path is None:  # __init__ takes exactly one of url and path
                    raise ValueError("give either an embedded path or a server url")
                self.path.mkdir(parents=True, exist_ok=True)
                try:
                    self._client = chromadb.PersistentClient(path=str(self.path), settings=_chroma_settings())
                except Exception as exc:
                    if says_disk_full(exc) or nearly_full(self.path):
                        raise VectorStoreError(
                            disk_full_message(self.path, "opening the vector index")
                        ) from None
                    raise VectorStoreError(
                        f"the vector index at {self.path} cannot be opened ({exc}). "
                        "Repair it with `steward ingest PATH... --rebuild`."
                    ) from None
        return self._client

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except VectorStoreError:
            raise
        except Exception as exc:
            if self.path is not None and (says_disk_full(exc) or nearly_full(self.path)):
                raise VectorStoreError(disk_full_message(self.path, what)) from None
            if self.url and says_disk_full(exc):
                raise VectorStoreError(
                    f"{what} failed on {self.where()}: the server's disk is full ({exc}). Free some space "
                    "there, then run the same command again."
                ) from None
            hint = (
                "Check that the server is running."
                if self.url
                else "Repair it with `steward ingest PATH... --rebuild`."
            )
            # Chroma's words for a segment whose files were cut short (its pickle ends early, say)
            unreadable = self.path is not None and "segment reader" in str(exc).lower()
            raise (UnreadableSegmentError if unreadable else VectorStoreError)(
                f"{what} failed on {self.where()}: {type(exc).__name__}: {exc}. {hint}"
            ) from None

    def _room_for(self, what: str, vectors: int, dimensions: int) -> None:
        """Refuse an embedded write the disk cannot hold (three times the raw vectors: Chroma's log and
        its segment both hold them while it compacts), before Chroma starts it."""
        if self.path is None or self.reserve_bytes is None:
            return
        needed = self.reserve_bytes + vectors * dimensions * 4 * 3
        free = free_bytes(self.path)
        if free is not None and free < needed:
            raise VectorStoreError(disk_full_message(self.path, what, needed))

    def exists(self) -> bool:
        """Whether the collection has been created."""
        names = self._call("listing collections", self.client.list_collections)
        return any(getattr(item, "name", item) == self.collection_name for item in names)

    def collection(self, model_identity: str | None = None) -> Any:
        """The collection, created (stamped with the model identity) when missing."""
        if self._collection is None:
            metadata = {MODEL_KEY: model_identity} if model_identity else None
            self._collection = self._call(
                "opening the collection",
                self.client.get_or_create_collection,
                name=self.collection_name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=metadata,
            )
        return self._collection

    def model_identity(self) -> str | None:
        """The embedding model the collection was built with, if stamped."""
        metadata = self.collection().metadata or {}
        value = metadata.get(MODEL_KEY)
        return str(value) if value else None

    @property
    def max_batch_size(self) -> int:
        """The largest write Chroma accepts in one call."""
        size = self._call("asking the batch limit", self.client.get_max_batch_size)
        return int(size)

    def count(self) -> int:
        """Vectors in the collection."""
        return int(self._call("counting vectors", self.collection().count))

    def upsert(
        self,
        ids: Sequence[str],
        vectors: NDArray[np.float32],
        metadatas: Sequence[Mapping[str, str | int | float | bool]],
    ) -> None:
        """Write vectors, in batches within Chroma's limit."""
        batch = max(1, self.max_batch_size)
        collection = self.collection()
        for start in range(0, len(ids), batch):
            end = start + batch
            self._room_for("writing vectors", len(ids[start:end]), vectors.shape[1])
            self._call(
                "writing vectors",
                collection.upsert,
                ids=list(ids[start:end]),
                embeddings=vectors[start:end],
                metadatas=[dict(item) for item in metadatas[start:end]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove vectors by chunk id."""
        if not ids:
            return
        batch = max(1, self.max_batch_size)
        collection = self.collection()
        for start in range(0, len(ids), batch):
            self._room_for("deleting vectors", 0, 0)
            self._call("deleting vectors", collection.delete, ids=list(ids[start : start + batch]))

    def iter_ids(self, page: int = 5000) -> Iterator[str]:
        """Every id in the collection, paged."""
        collection = self.collection()
        offset = 0
        while True:
            result = self._call("listing vectors", collection.get, include=[], limit=page, offset=offset)
            ids = result["ids"]
            yield from ids
            if len(ids) < page:
                return
            offset += page

    def query(
        self, vector: NDArray[np.float32], k: int, where: Mapping[str, Any] | None = None
    ) -> list[VectorHit]:
        """The k nearest chunks by cosine similarity."""
        collection = self.collection()
        total = self.count()
        if total == 0:
            return []
        result = self._call(
            "searching vectors",
            collection.query,
            query_embeddings=[vector],
            n_results=min(k, total),
            where=dict(where) if where else None,
            include=["distances"],
        )
        ids = result["ids"][0]
        distances = result["distances"][0]
        return [VectorHit(chunk_id=i, similarity=1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def vectors_of(self, ids: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """The stored vectors of these chunk ids (ids Chroma does not have are left out)."""
        if not ids:
            return {}
        result = self._call("reading vectors", self.collection().get, ids=list(ids), include=["embeddings"])
        return {
            chunk_id: np.asarray(vector, dtype=np.float32)
            for chunk_id, vector in zip(result["ids"], result["embeddings"], strict=True)
        }

    def close(self) -> None:
        """Release the client; an embedded one closes its files when no other client has its folder open."""
        client, self._client, self._collection = self._client, None, None
        if client is not None and hasattr(client, "close"):
            try:
                client.close()
            except Exception:  # closing is best effort; the process may be exiting
                log.debug("closing the Chroma client failed", exc_info=True)

    def reset(self) -> None:
        """Delete the collection (used by `--rebuild`); an embedded index too damaged to open is removed."""
        self._collection = None
        try:
            if self.exists():
                self._call("deleting the collection", self.client.delete_collection, self.collection_name)
        except VectorStoreError:
            if self.path is None:
                raise
            # Our own folder under the data dir: start it afresh. Chroma keeps one system per path
            # per process; forget the broken one so the next open reads the new folder.
            from chromadb.api.shared_system_client import SharedSystemClient

            self._client = None
            SharedSystemClient.clear_system_cache()
            shutil.rmtree(self.path, ignore_errors=True)
