"""A deterministic stand-in for the embedding model: a hashed bag of stemmed words, for tests that need
vectors but not real semantic similarity (no torch, no model load). tests/test_fake_embedder.py holds it
to the real model on the properties the code relies on."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import snowballstemmer
from numpy.typing import NDArray

from bot.index.embedding import DIMENSIONS, Embedder

WORD = re.compile(r"\w+")
BIAS = "[CLS]"  # in every text, as the real model's [CLS] is: an empty text still has a unit vector
_STEMMER = snowballstemmer.stemmer("english")


def _bucket(token: str) -> tuple[int, float]:
    """The dimension a token adds to and the sign it adds with (stable across runs and processes)."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    number = int.from_bytes(digest, "big")
    return number % DIMENSIONS, 1.0 if (number >> 32) & 1 else -1.0


class FakeEmbedder(Embedder):
    """Normalised 384-dimension vectors from hashed word stems; counts word pieces like the real one."""

    @property
    def identity(self) -> str:
        """Never the real model's identity, so an index built with the fake is never read with the real;
        like the real one's, it names the embedded length (a change of it asks for a rebuild)."""
        return f"fake-hashed-words/{DIMENSIONS}/max{self.max_word_pieces}"

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One unit vector per text: the signed counts of its word stems, hashed into 384 dimensions."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _STEMMER.stemWords(WORD.findall(text.lower()))
            for token in [BIAS, *words]:
                column, sign = _bucket(token)
                out[row, column] += sign
            out[row] /= np.linalg.norm(out[row])
        if texts:
            self._model = self  # "loaded" when vectors are first needed, as the real model is
            self.embedded_word_pieces += sum(self.count_word_pieces(texts))
        return out
