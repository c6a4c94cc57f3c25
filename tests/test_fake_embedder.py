"""The fake embedder (tests/support/embedding.py) behaves like the real model where the code relies on it:
the shape and type of the vectors, unit length, the same text giving the same vector, and a related
sentence scoring closer than an unrelated one."""

from __future__ import annotations

import numpy as np
import pytest

from bot.index.embedding import DIMENSIONS, Embedder
from tests.support.embedding import FakeEmbedder

TEXTS = ["How do I roll back a production model?", "", "PSI above 0.2 means drift", "a" * 3000]
# (question, a passage about it, a passage about something else)
TRIPLES = [
    (
        "How do I roll back the production model?",
        "To roll back, move the production model alias back to the previous model version.",
        "Cordon the GPU node and evict the inference pods one at a time.",
    ),
    (
        "What PSI value counts as feature drift?",
        "A feature drifts when its PSI value is 0.2 or more.",
        "Ask every AI vendor where inference runs and how long prompts are retained.",
    ),
    (
        "An API key leaked in a Git commit: what do I do?",
        "When an API key leaks in a commit, revoke the key first, then rotate it.",
        "Roll back when the shadow error rate doubles for 30 minutes.",
    ),
]


@pytest.fixture(params=["real", "fake"])
def model(request: pytest.FixtureRequest, embedder: Embedder) -> Embedder:
    """The real packaged model, then the fake: every property below must hold for both."""
    return embedder if request.param == "real" else FakeEmbedder()


def test_vectors_have_the_real_shape_type_and_unit_length(model: Embedder) -> None:
    """One float32 row of 384 per text (none for no text), each of length 1 (cosine = dot product)."""
    vectors = model.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), DIMENSIONS)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.embed([]).shape == (0, DIMENSIONS)
    assert model.embed_query(TEXTS[0]).shape == (DIMENSIONS,)


def test_the_same_text_gives_the_same_vector(model: Embedder) -> None:
    """Alone or in a batch, now or later: identical text, identical vector."""
    batch = model.embed(TEXTS)
    for row, text in enumerate(TEXTS):
        assert np.allclose(model.embed_query(text), batch[row], atol=1e-5)
    assert np.allclose(model.embed(TEXTS), batch, atol=1e-5)


@pytest.mark.parametrize(("question", "related", "unrelated"), TRIPLES)
def test_a_related_passage_is_closer_than_an_unrelated_one(
    model: Embedder, question: str, related: str, unrelated: str
) -> None:
    """The question's vector is nearer the passage about it than the passage about something else."""
    q, near, far = model.embed([question, related, unrelated])
    assert float(q @ near) > float(q @ far)


def test_the_fake_never_passes_for_the_real_model(embedder: Embedder) -> None:
    """An index built with the fake names another model, so the real one refuses to read it."""
    assert FakeEmbedder().identity != embedder.identity


@pytest.mark.parametrize("kind", ["real", "fake"])
def test_the_model_counts_as_loaded_once_it_first_embeds(kind: str, embedder: Embedder) -> None:
    """`loaded` turns true at the first text embedded, not before (an unchanged ingest never loads it)."""
    model = Embedder() if kind == "real" else FakeEmbedder()
    model.count_word_pieces(["word pieces need no model"])
    model.embed([])
    assert not model.loaded
    model.embed(["now it is needed"])
    assert model.loaded
