"""Chunking by Markdown structure within the model's 256-word-piece window."""

from __future__ import annotations

from bot.index.embedding import MAX_WORD_PIECES, Embedder
from ingest.chunking import chunk_document, clean_for_embedding
from ingest.documents import SourceDocument


def _doc(body: str, title: str = "Guide") -> SourceDocument:
    return SourceDocument(path="g.md", title=title, body=body)


def test_chunks_carry_the_heading_path(fake_embedder: Embedder) -> None:
    """Each chunk names the title, section and subsection it comes from."""
    body = (
        "# Guide\n\nIntro words here.\n\n## Deploy\n\n"
        + "Deploy text. " * 30
        + "\n\n### Canary\n\n"
        + ("Canary text. " * 30)
    )
    chunks = chunk_document(_doc(body), fake_embedder.count_word_pieces)
    sections = [c.section for c in chunks]
    assert "Guide > Deploy > Canary" in sections
    assert all(s.startswith("Guide") for s in sections)
    assert not any("Guide > Guide" in s for s in sections), "the H1 repeating the title is not repeated"


def test_every_chunk_fits_the_window(fake_embedder: Embedder) -> None:
    """Long sections, long paragraphs, long code and tables are all cut to fit 256 word pieces."""
    body = (
        "## Prose\n\n"
        + " ".join(f"Sentence number {i} explains a step of the procedure." for i in range(200))
        + "\n\n## Code\n\n```python\n"
        + "\n".join(f"value_{i} = compute_something({i})" for i in range(300))
        + "\n```\n\n## Table\n\n| name | value |\n|---|---|\n"
        + "\n".join(f"| row {i} | {i * 7} |" for i in range(300))
        + "\n\n## Word\n\n"
        + "x" * 5000
        # One paragraph of query links: per-block counts underestimate it (seen in gitlab-runbooks).
        + "\n\n## Links\n\n"
        + " ".join(
            f"[q{i}](https://thanos.example/graph?g0.expr=sum(rate(x%7Benv%3D{i}%7D[5m])))"
            for i in range(150)
        )
    )
    chunks = chunk_document(_doc(body), fake_embedder.count_word_pieces)
    sizes = fake_embedder.count_word_pieces([c.embed_text for c in chunks])
    assert max(sizes) <= MAX_WORD_PIECES
    assert len(chunks) > 8


def test_a_code_block_that_fits_is_not_cut(fake_embedder: Embedder) -> None:
    """A fenced block smaller than the window stays whole in one chunk."""
    code = "```bash\n" + "\n".join(f"kubectl rollout undo deploy/app-{i}" for i in range(12)) + "\n```"
    body = "## Steps\n\n" + "Words before the code. " * 60 + "\n\n" + code + "\n\nAfter.\n"
    chunks = chunk_document(_doc(body), fake_embedder.count_word_pieces)
    assert sum(code in c.text for c in chunks) == 1


def test_split_table_repeats_its_header_and_split_code_reopens_its_fence(fake_embedder: Embedder) -> None:
    """Pieces of a large table keep the header row; pieces of a large code block stay fenced."""
    table = "| service | owner |\n|---|---|\n" + "\n".join(f"| svc-{i} | team-{i} |" for i in range(200))
    code = "```yaml\n" + "\n".join(f"key_{i}: value_{i}" for i in range(300)) + "\n```"
    chunks = chunk_document(_doc(f"## T\n\n{table}\n\n## C\n\n{code}\n"), fake_embedder.count_word_pieces)
    table_chunks = [c for c in chunks if "svc-" in c.text]
    code_chunks = [c for c in chunks if "key_" in c.text]
    assert len(table_chunks) > 1 and len(code_chunks) > 1
    assert all(c.text.startswith("| service | owner |") for c in table_chunks)
    assert all(c.text.startswith("```yaml") and c.text.rstrip().endswith("```") for c in code_chunks)


def test_pipe_rows_without_a_delimiter_row_are_not_given_a_header(fake_embedder: Embedder) -> None:
    """Rows written with pipes but no `|---|` row are cut on rows; no data row is repeated as a header."""
    rows = "\n".join(f"| svc-{i} | team-{i} |" for i in range(200))
    chunks = chunk_document(_doc(f"## T\n\n{rows}\n"), fake_embedder.count_word_pieces)
    assert len(chunks) > 1
    assert sum(c.text.count("| svc-1 | team-1 |") for c in chunks) == 1
    assert sum(c.text.count("| svc-0 | team-0 |") for c in chunks) == 1


def test_small_sections_are_packed_with_the_next_one(fake_embedder: Embedder) -> None:
    """An ADR's one-word Status section does not become a chunk of its own."""
    body = "## Status\n\nAccepted\n\n## Context\n\n" + "We need a registry for models. " * 10
    chunks = chunk_document(_doc(body, "Use MLflow"), fake_embedder.count_word_pieces)
    assert len(chunks) == 1
    assert "Accepted" in chunks[0].text and "registry" in chunks[0].text


def test_embedding_text_drops_link_targets_and_markup() -> None:
    """URLs and Markdown punctuation cost word pieces and carry no meaning for the model."""
    cleaned = clean_for_embedding("See [the **runbook**](https://example.com/a/very/long/path) | a |\n|---|")
    assert "example.com" not in cleaned
    assert "runbook" in cleaned
    assert "**" not in cleaned and "---" not in cleaned


def test_a_first_heading_repeating_the_title_is_not_repeated_at_any_level(fake_embedder: Embedder) -> None:
    """A document whose first heading is an H2 equal to its title does not get 'T > T' paths."""
    chunks = chunk_document(
        _doc("## Chef Hybrid\n\nIntro.\n\n### Replacement\n\nSteps.\n", "Chef Hybrid"),
        fake_embedder.count_word_pieces,
    )
    assert all(not c.section.startswith("Chef Hybrid > Chef Hybrid") for c in chunks)


def test_a_hash_line_inside_a_code_block_is_not_a_heading(fake_embedder: Embedder) -> None:
    """A `# comment` in a fenced block (closed or not) or an HTML `<pre>` is not a new section."""
    body = (
        "## Steps\n\n```bash\n# restart the app\nsystemctl restart app\n```\n\n"
        "<pre>\n# the config file\n</pre>\n\n```\n# unclosed\n"
    )
    chunks = chunk_document(_doc(body), fake_embedder.count_word_pieces)
    assert [c.section for c in chunks] == ["Guide > Steps"]
    assert all(line in chunks[0].text for line in ("# restart the app", "# the config file", "# unclosed"))


def test_setext_headings_open_sections(fake_embedder: Embedder) -> None:
    """A heading underlined with `===` or `---` names its section like a `#` heading."""
    body = "Deploy\n======\n\n" + "Ship it. " * 30 + "\n\nCanary\n------\n\n" + "Watch it. " * 30
    chunks = chunk_document(_doc(body), fake_embedder.count_word_pieces)
    assert [c.section for c in chunks] == ["Guide > Deploy", "Guide > Deploy > Canary"]


def test_a_list_line_with_a_pipe_is_text_and_a_table_in_a_list_is_kept_whole(fake_embedder: Embedder) -> None:
    """Only a parsed table is a table: a list item's line starting with `|` stays in its list."""
    table = "   | svc | team |\n   |---|---|\n   | a | b |"
    body = f"- first\n  | still the first item\n- third\n\n1. Owners:\n\n{table}\n"
    chunks = chunk_document(_doc(body), fake_embedder.count_word_pieces)
    assert chunks[0].text.startswith("- first\n  | still the first item\n- third\n\n1. Owners:")
    assert table in chunks[0].text
