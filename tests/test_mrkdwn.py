"""Markdown to Slack mrkdwn: emphasis, links, headings, lists, code, escaping, quotes and tables."""

from __future__ import annotations

import pytest

from bot.slack.mrkdwn import escape, link, to_mrkdwn, to_plain

CONVERSIONS = [
    pytest.param("**bold** and __bold__", "*bold* and *bold*", id="bold"),
    pytest.param("*italic* and _italic_", "_italic_ and _italic_", id="italic"),
    pytest.param("~~gone~~", "~gone~", id="strikethrough"),
    pytest.param("***both***", "*_both_*", id="bold-italic"),
    pytest.param("**bold with *italic* inside**", "*bold with _italic_ inside*", id="nested-emphasis"),
    pytest.param("snake_case_name and 2*3*4", "snake_case_name and 2*3*4", id="intraword-markers"),
    pytest.param("a * b * c", "a * b * c", id="spaced-asterisks"),
    pytest.param("[the runbook](https://kb.example/r)", "<https://kb.example/r|the runbook>", id="link"),
    pytest.param("[a | b > c](https://x.example)", "<https://x.example|a ∣ b &gt; c>", id="link-text-pipe"),
    pytest.param(
        "[q](https://x.example/?a=1&b=2)", "<https://x.example/?a=1&amp;b=2|q>", id="link-url-ampersand"
    ),
    pytest.param("[mail us](mailto:ml@example.com)", "<mailto:ml@example.com|mail us>", id="mailto-link"),
    pytest.param("[local](./docs/x.md) and [bad](javascript:alert(1))", "local and bad", id="non-web-links"),
    pytest.param("**[doc](https://x.example)**", "*<https://x.example|doc>*", id="bold-link"),
    pytest.param("see <https://x.example/a_b_c>", "see <https://x.example/a_b_c>", id="autolink"),
    pytest.param("at https://x.example/snake_case.", "at <https://x.example/snake_case>.", id="bare-url"),
    pytest.param("# Rollback", "*Rollback*", id="h1"),
    pytest.param("###### Deep **bold** #", "*Deep bold*", id="h6-closing-hashes"),
    pytest.param("#hashtag", "#hashtag", id="not-a-heading"),
    pytest.param("- one\n* two\n+ three", "• one\n• two\n• three", id="bullets"),
    pytest.param("- a\n    - b\n        - c", "• a\n    ◦ b\n        ▪ c", id="nested-4-spaces"),
    pytest.param("- a\n  - b\n- c", "• a\n    ◦ b\n• c", id="nested-2-spaces"),
    pytest.param("1. first\n2. second\n   - detail", "1. first\n2. second\n    ◦ detail", id="ordered"),
    pytest.param("use `**x** <y> _z_`", "use `**x** &lt;y&gt; _z_`", id="inline-code-verbatim"),
    pytest.param("```python\nx = a**2 **b**\n```", "```\nx = a**2 **b**\n```", id="fence-language-dropped"),
    pytest.param("~~~\nif a < b && c:\n~~~", "```\nif a &lt; b &amp;&amp; c:\n```", id="tilde-fence-escaped"),
    pytest.param("```\nunclosed *x*", "```\nunclosed *x*\n```", id="unclosed-fence"),
    pytest.param(
        "<script>alert(1)</script> & co", "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co", id="escape"
    ),
    pytest.param("&lt;b&gt; &amp; x", "&lt;b&gt; &amp; x", id="entities-not-doubled"),
    pytest.param("> quoted **b**", "> quoted *b*", id="blockquote"),
    pytest.param("> > nested", "> nested", id="nested-blockquote"),
    pytest.param(
        "| a | b |\n|---|:-:|\n| 1 | <2> |",
        "```\n| a   | b   |\n|-----|:---:|\n| 1   | &lt;2&gt; |\n```",
        id="table-columns-lined-up",
    ),
    pytest.param("Roll back [1]. Also [2][3].", "Roll back [1]. Also [2][3].", id="citations"),
    pytest.param("above\n\n---\n\n***\nbelow", "above\n\nbelow", id="rules"),
    pytest.param(r"not \*emphasis\*", "not *emphasis*", id="backslash-escape"),
    pytest.param("- [ ] todo\n- [x] done", "• ☐ todo\n• ☑ done", id="task-list"),
    pytest.param("a\n\n\n\nb", "a\n\nb", id="blank-lines-collapsed"),
    pytest.param("```bash\n# not a heading\n```", "```\n# not a heading\n```", id="hash-line-in-fence"),
    pytest.param("Deploy\n======\n\nShip it.", "*Deploy*\n\nShip it.", id="setext-heading"),
    pytest.param("- a\n\n- b\n- c", "• a\n\n• b\n• c", id="loose-list-keeps-its-blank-line"),
    pytest.param("- a\n  | not a table", "• a\n    | not a table", id="pipe-line-in-list-item"),
    pytest.param("- <!channel> now", "• &lt;!channel&gt; now", id="mention-in-list-item"),
    pytest.param(
        "See [x].\n\n[x]: https://x.example", "See [x].\n\n[x]: <https://x.example>", id="reference"
    ),
]


@pytest.mark.parametrize(("markdown", "expected"), CONVERSIONS)
def test_conversion(markdown: str, expected: str) -> None:
    """Each Markdown construct becomes its Slack mrkdwn form."""
    assert to_mrkdwn(markdown) == expected


def test_code_fence_inside_code_is_defused() -> None:
    """``` inside a ~~~ block cannot close Slack's code block early."""
    converted = to_mrkdwn("~~~\nprint('```')\n~~~")
    assert converted.count("```") == 2


def test_fence_indented_under_a_list_item_is_dedented() -> None:
    """A fence indented under a list item keeps its content without the item's indentation."""
    converted = to_mrkdwn("1. Run:\n   ```bash\n   make rollback\n   ```\n2. Check")
    assert converted == "1. Run:\n```\nmake rollback\n```\n2. Check"


def test_list_continuation_is_indented_under_its_item() -> None:
    """A paragraph indented under a list item stays indented after a blank line."""
    assert to_mrkdwn("- item\n\n  more text\n- next") == "• item\n\n    more text\n• next"


def test_link_helper_escapes_text_and_url() -> None:
    """`link` keeps `|`, `>` and `&` in the text from breaking the link."""
    assert (
        link("https://x.example/a b|c", "A|B > C & D") == "<https://x.example/a%20b%7Cc|A∣B &gt; C &amp; D>"
    )


def test_escape_only_touches_the_three_control_characters() -> None:
    """Only `&`, `<` and `>` are escaped; quotes and Markdown markers are left alone."""
    assert escape('<a href="x">*&*</a>') == '&lt;a href="x"&gt;*&amp;*&lt;/a&gt;'


def test_plain_text_drops_markers_and_keeps_link_text() -> None:
    """to_plain gives readable text: no emphasis markers, link texts instead of URLs, code contents."""
    plain = to_plain("# Title\n**Roll back** with [the runbook](https://x.example) and `make it`.")
    assert plain == "Title\nRoll back with the runbook and make it."


def test_a_quote_nested_past_the_parser_limit_keeps_its_text_inert() -> None:
    """Quotes nested deeper than markdown-it follows still show their text, escaped."""
    assert to_mrkdwn("> " * 30 + "deep <!channel>") == "> deep &lt;!channel&gt;"


def test_special_mentions_never_render_live_in_any_block() -> None:
    """`<!channel>`, `<!here>`, `<@U…>`, `<!subteam^…>` stay text in headings, quotes, lists, tables, HTML."""
    blocks = [
        "# <!here>",
        "> <@U1>",
        "- <!subteam^S1|team>",
        "| a | <!channel> |\n|---|---|",
        "<div>\n<!channel>\n</div>",
    ]
    markdown = "\n\n".join(blocks)
    converted = to_mrkdwn(markdown)
    assert not any(live in converted for live in ("<!here>", "<@U1>", "<!subteam", "<!channel>"))
    assert converted.count("&lt;!channel&gt;") == 2
