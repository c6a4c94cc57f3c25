"""Reading files: front matter, inference of title, kind and ADR status, bad files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ingest.documents import Skipped, SourceDocument, decode, discover, parse


def _parse(
    path: str, text: str, fmt: str = "markdown", known: frozenset[str] = frozenset()
) -> SourceDocument:
    result = parse(path, textwrap.dedent(text).lstrip("\n"), fmt, known)
    assert isinstance(result, SourceDocument), result
    return result


def test_front_matter_fields_are_read() -> None:
    """Every documented front matter key lands on the document."""
    document = _parse(
        "runbooks/x.md",
        """
        ---
        title: Roll back
        kind: runbook
        status: accepted
        owner: "@dana"
        tags: [models, rollback]
        services: fraud-scorer, churn
        last_reviewed: 2026-01-02
        review_by: 2026-07-02
        superseded_by: runbooks/y.md
        url: https://git.example.com/kb/runbooks/x.md
        ---
        # Something else
        text
        """,
        known=frozenset({"runbooks/y.md"}),
    )
    assert (document.title, document.kind, document.status, document.owner) == (
        "Roll back",
        "runbook",
        "accepted",
        "@dana",
    )
    assert document.tags == ["models", "rollback"]
    assert document.services == ["fraud-scorer", "churn"]
    assert (document.last_reviewed, document.review_by) == ("2026-01-02", "2026-07-02")
    assert document.superseded_by == "runbooks/y.md"
    assert document.url == "https://git.example.com/kb/runbooks/x.md"
    assert document.body.startswith("# Something else")


def test_malformed_front_matter_names_the_line() -> None:
    """A YAML error skips the file and says which line of the file is wrong."""
    result = parse("a.md", "---\ntitle: ok\nowner: [unclosed\n---\nbody\n", "markdown")
    assert isinstance(result, Skipped)
    assert "malformed front matter" in result.reason
    assert "line 4" in result.reason or "line 3" in result.reason


def test_unclosed_front_matter_is_skipped_with_advice() -> None:
    """Front matter without its closing line is reported, not swallowed into the body."""
    result = parse("a.md", "---\ntitle: ok\n# Heading\n", "markdown")
    assert isinstance(result, Skipped)
    assert "never closed" in result.reason


def test_invalid_field_is_ignored_with_a_warning_naming_file_line_and_field() -> None:
    """A bad status value is ignored, the rest of the document is kept."""
    document = _parse("a.md", "---\ntitle: T\nstatus: maybe\nreview_by: soon\n---\n# T\nbody\n")
    assert document.status is None
    assert any("a.md, line 3" in w and "'status'" in w for w in document.warnings)
    assert any("a.md, line 4" in w and "'review_by'" in w for w in document.warnings)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("# T\n\nStatus: Accepted\n\n## Context\n", "accepted"),
        ("# T\n\n- Status: proposed\n- Date: 2020-01-01\n", "proposed"),
        ("# T\n\n## Status\n\nDeprecated\n\n## Context\n", "deprecated"),
        ("# T\n\n## Status\n\n**Approved**\n", "accepted"),
        ("# T\n\n* **Status**: superseded\n", "superseded"),
    ],
)
def test_adr_status_is_inferred_from_common_formats(text: str, status: str) -> None:
    """A `Status:` line or a `## Status` section gives the status."""
    assert _parse("adr/0001-x.md", text).status == status


def test_superseded_by_link_in_status_line_is_resolved_relative_to_the_folder() -> None:
    """`Superseded by [ADR 7](0007-y.md)` points at the successor's ingested path."""
    document = _parse(
        "decisions/0001-x.md",
        "# X\n\nStatus: Superseded by [ADR 7](0007-y.md)\n",
        known=frozenset({"decisions/0007-y.md"}),
    )
    assert document.status == "superseded"
    assert document.superseded_by == "decisions/0007-y.md"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("team/runbooks/db.md", "runbook"),
        ("openshift-runbooks/alerts/x/Y.md", "runbook"),
        ("docs/adr/0001-x.md", "decision"),
        ("architecture-decision-record/012-x.md", "decision"),
        ("postmortems/2026-01.md", "postmortem"),
        ("policies/ai-use.md", "policy"),
        ("guides/eval.md", "guide"),
    ],
)
def test_kind_is_inferred_from_the_folder(path: str, kind: str) -> None:
    """Without front matter, the nearest folder with a telling name gives the kind."""
    assert _parse(path, "# T\ntext\n").kind == kind


def test_title_comes_from_the_first_heading_then_the_file_name() -> None:
    """Title: front matter, else the first heading, else the file name."""
    assert _parse("a.md", "intro\n\n## First *section*\n").title == "First section"
    assert _parse("a.md", "Setext title\n============\n\nbody\n").title == "Setext title"
    assert _parse("notes/disk-full_alert.md", "just text\n").title == "disk full alert"


def test_erb_template_tags_are_removed_and_review_in_gives_a_review_date() -> None:
    """Middleman pages: template tags dropped, `last_reviewed_on` + `review_in` understood."""
    document = _parse(
        "source/x.html.md.erb",
        """
        ---
        title: Instance scheduling
        owner_slack: "#platform"
        last_reviewed_on: 2026-02-13
        review_in: 6 months
        ---
        # <%= current_page.data.title %>

        Instances stop at 21:00.
        """,
    )
    assert document.title == "Instance scheduling"
    assert "<%" not in document.body
    assert document.owner == "#platform"
    assert document.review_by == "2026-08-13"


def test_html_keeps_headings_and_title() -> None:
    """HTML pages become Markdown-like text with their headings."""
    document = _parse(
        "page.html",
        "<html><head><title>Pager</title><script>x()</script></head>"
        "<body><h1>Pager</h1><h2>Escalation</h2><p>Call the lead.</p></body></html>",
        fmt="html",
    )
    assert document.title == "Pager"
    assert "## Escalation" in document.body
    assert "Call the lead." in document.body
    assert "x()" not in document.body


def test_binary_oversize_and_non_utf8_files_are_skipped_with_reasons() -> None:
    """decode() refuses what it cannot read and says why."""
    binary = decode("a.md", b"abc\x00def", 100)
    oversize = decode("b.md", b"x" * 101, 100)
    latin = decode("c.md", "café".encode("latin-1"), 100)
    assert isinstance(binary, Skipped) and "binary" in binary.reason
    assert isinstance(oversize, Skipped) and "STEWARD_MAX_FILE_BYTES" in oversize.reason
    assert isinstance(latin, Skipped) and "UTF-8" in latin.reason


def test_discover_finds_supported_formats_and_skips_hidden_folders(tmp_path: Path) -> None:
    """Markdown, .html.md.erb, text and HTML are found; .git and images are not."""
    for name in ("a.md", "b.markdown", "c.html.md.erb", "d.txt", "e.html", "f.png", ".git/g.md", "sub/h.md"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    found = [relative for relative, _ in discover(tmp_path)]
    assert found == ["a.md", "b.markdown", "c.html.md.erb", "d.txt", "e.html", "sub/h.md"]


def test_a_runbook_status_line_is_not_read_as_a_document_status() -> None:
    """ADR status inference applies to decision records, not to a runbook's instructions."""
    document = _parse(
        "runbooks/incident.md", "# Incident\n\nStatus: open the status page and post an update.\n"
    )
    assert document.kind == "runbook"
    assert document.status is None
