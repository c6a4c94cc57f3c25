"""What a reader sees of an HTML page: the parts a browser would not show are removed.

Documents are untrusted, and text a reader never sees is where injected instructions hide. Pages are
parsed by html5lib, as a browser parses them (comments, misnested tags). Removed:
- comments, `<script>`, `<style>`, `<template>`, `<noscript>`, `<title>` and `<head>`, `<iframe>`,
  `<noembed>`, `<datalist>`, and the SVG parts that are never drawn (`<defs>`, `<desc>`, ...);
- elements with the `hidden` attribute, `aria-hidden="true"` or a closed `<dialog>`, with everything
  inside them;
- elements whose CSS hides them (`ingest.css`): inline `style` attributes, and the rules of every
  `<style>` element, matched by selector with soupsieve (Beautiful Soup's selector engine);
- text whose colour is that of its background (white on white), the background coming from the
  element or any parent (the page is white unless a parent says otherwise).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import soupsieve
from bs4 import BeautifulSoup, CData, Comment, Declaration, Doctype, ProcessingInstruction
from bs4.element import NavigableString, PageElement, Tag
from tinycss2.ast import Node

from ingest import css

NOT_SHOWN = frozenset(
    {
        *("script", "style", "template", "noscript", "title", "head", "datalist", "iframe"),
        *("noembed", "noframes", "frameset"),
        *("defs", "desc", "metadata", "symbol", "clippath", "mask", "pattern", "marker", "filter"),
    }
)
_REFUSED = (soupsieve.SelectorSyntaxError, NotImplementedError, ValueError)
_NOT_TEXT = (Comment, CData, Declaration, Doctype, ProcessingInstruction)
_Inherited = tuple[list[css.Colour], list[css.Colour], dict[str, list[Node]]]


@dataclass
class Removal:
    """What was removed from a page: passages of hidden text by reason."""

    reasons: Counter[str] = field(default_factory=Counter)
    stylesheet: bool = False  # the page has `<style>` rules
    rule_on_rendered: bool = False  # a `<style>` rule hid an element the Markdown renderer made


class Markers:
    """Placeholders for text the HTML parser must not read (Markdown between raw HTML), by number."""

    def __init__(self, prefix: str, texts: list[str]) -> None:
        self.prefix = prefix
        self.texts = texts

    def tag(self, number: int) -> str:
        return f"<{self.prefix}{number}></{self.prefix}{number}>"

    def text(self, element: PageElement) -> str | None:
        """The text a marker stands for; None for anything that is not a marker."""
        if isinstance(element, Tag) and element.name.startswith(self.prefix):
            return self.texts[int(element.name[len(self.prefix) :])]
        return None

    def is_marker(self, element: PageElement) -> bool:
        return self.text(element) is not None

    def inside(self, tag: Tag) -> str:
        return "".join(self.text(marker) or "" for marker in tag.find_all(self.is_marker))


def remove_hidden(
    soup: BeautifulSoup, markers: Markers | None = None, rendered: Callable[[Tag], bool] | None = None
) -> Removal:
    """Remove from the parsed page what a browser would not show; count the passages of text that
    went, by reason. `rendered` tells the elements a Markdown renderer made (see `Removal`)."""
    sheets = (_own_text(style) for style in soup("style"))  # get_text() leaves a stylesheet out
    sheet = [rule for text in sheets for rule in css.rules(text)]
    removal = Removal(stylesheet=bool(sheet))
    for node in soup.find_all(string=lambda text: isinstance(text, _NOT_TEXT)):
        node.extract()
    for tag in soup.find_all(lambda tag: tag.name.lower() in NOT_SHOWN):
        if not tag.decomposed:
            tag.decompose()
    styles = _styles(soup, sheet)
    inherited: dict[int, _Inherited] = {id(soup): ([css.BLACK], [css.WHITE], {})}
    for tag in soup.find_all(True):
        if tag.decomposed or (markers and markers.is_marker(tag)):
            continue
        own = styles.get(id(tag))
        text, background, variables = inherited[id(tag.parent)]
        style = own or css.Style()
        variables = css.custom_properties(style, variables)
        style = css.substituted(style, variables)
        reason = _attribute_hiding(tag) or css.hiding(style)
        removal.rule_on_rendered |= bool(reason and own and rendered and rendered(tag))
        if reason:
            if tag.get_text(strip=True) or (markers and markers.inside(tag).strip()):
                removal.reasons[reason] += 1
            tag.decompose()
            continue
        text, background = _colours(tag, style, text, background)
        inherited[id(tag)] = (text, background, variables)
        unreadable = any(css.unreadable(ink, paper) for ink in text for paper in background)
        if unreadable and "".join(_remove_own_text(tag, markers)).strip():
            removal.reasons["same colour as the background"] += 1
            removal.rule_on_rendered |= bool(own and rendered and rendered(tag))
    return removal


def _own_text(tag: Tag) -> str:
    return "".join(str(text) for text in tag.contents if isinstance(text, NavigableString))


def _attribute_hiding(tag: Tag) -> str | None:
    if tag.has_attr("hidden"):
        return "hidden attribute"
    if str(tag.get("aria-hidden", "")).strip().lower() == "true":
        return 'aria-hidden="true"'
    if tag.name == "dialog" and not tag.has_attr("open"):
        return "closed <dialog>"
    return None


def _styles(soup: BeautifulSoup, sheet: list[css.Rule]) -> dict[int, css.Style]:
    """Each element's declarations: the matching `<style>` rules in order, then its `style` attribute."""
    styles: dict[int, css.Style] = {}
    for rule in sheet:
        relevant = [item for item in rule.declarations if css.is_read(item.lower_name)]
        if relevant:
            for tag in _select(soup, rule.selector):
                styles.setdefault(id(tag), css.Style()).add(relevant)
    for tag in soup.find_all(style=True):
        styles.setdefault(id(tag), css.Style()).add(css.declarations(str(tag["style"])))
    return styles


def _select(soup: BeautifulSoup, selector: str) -> list[Tag]:
    """The elements a selector matches. When soupsieve refuses a selector list (`:hover`, `::before`
    in it), its parts are tried one by one: the refused ones never hide what a reader sees at first."""
    try:
        return list(soupsieve.select(selector, soup))
    except _REFUSED:
        pass
    found: list[Tag] = []
    for part in selector.split(","):
        try:
            found += soupsieve.select(part, soup)
        except _REFUSED:
            continue
    return found


def _legacy_colour(tag: Tag, attribute: str) -> list[css.Colour] | None:
    """`<font color=white>`, `<td bgcolor=ffffff>`: colours from HTML attributes."""
    value = str(tag.get(attribute, "")).strip()
    if not value:
        return None
    colour = css.parse_colour(value) or css.parse_colour(f"#{value}")
    return [colour] if colour else None


def _colours(
    tag: Tag, style: css.Style, text: list[css.Colour], background: list[css.Colour]
) -> tuple[list[css.Colour], list[css.Colour]]:
    """The element's text and background colours: its own, else its parent's."""
    own_text = css.colours(style, "color", "-webkit-text-fill-color")
    if own_text is None and tag.name == "font":
        own_text = _legacy_colour(tag, "color")
    own_background = css.colours(style, "background-color", "background")
    if own_background is None:
        own_background = _legacy_colour(tag, "bgcolor")
    if own_text is not None:
        text = own_text
    return text, (background if own_background is None else own_background)


def _remove_own_text(tag: Tag, markers: Markers | None) -> Iterable[str]:
    """Remove the element's own text and markers, but not the line breaks between them (Markdown reads
    those) nor its child elements, which are judged on their own colours."""
    for child in list(tag.children):
        text = str(child) if isinstance(child, NavigableString) else markers and markers.text(child)
        if text and text.strip():
            yield text
            child.extract()


def to_markdown(soup: BeautifulSoup) -> str:
    """A page's text as Markdown-ish text keeping headings, paragraphs, lists and code."""
    for tag in soup("nav"):
        tag.decompose()
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    for pre in soup.find_all("pre"):
        pre.replace_with(f"\n\n```\n{pre.get_text()}\n```\n\n")
    for item in soup.find_all("li"):
        item.replace_with(f"\n- {item.get_text(' ', strip=True)}\n")
    for block in soup.find_all(["p", "div", "tr", "br", "table"]):
        block.insert_after("\n\n")
    body = soup.body if soup.body else soup
    return re.sub(r"\n{3,}", "\n\n", body.get_text()).strip() + "\n"
