"""Whether CSS hides text: declarations read with tinycss2, colours compared by their contrast.

A browser hides text many ways besides `display: none`: invisibility, no opacity, a zero font, a
position far off the screen, a clip to nothing, a zero box whose overflow is hidden, or the colour of
its background. Values are read as CSS tokens, so comments (`display:/**/none`), case and spacing
change nothing. Where rules conflict, any rule that hides is taken as hiding: an attacker can only
use this to remove text, never to keep hidden text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import tinycss2
from tinycss2 import color4
from tinycss2.ast import Declaration, FunctionBlock, Node

# Roughly how many CSS pixels one unit is; the thresholds below are far from any ordinary value.
_PIXELS = {
    "px": 1.0,
    "pt": 4 / 3,
    "pc": 16.0,
    "in": 96.0,
    "cm": 37.8,
    "mm": 3.78,
    "q": 0.945,
    "em": 16.0,
    "rem": 16.0,
    "ex": 8.0,
    "ch": 8.0,
    "vw": 10.0,
    "vh": 10.0,
    "vmin": 10.0,
    "vmax": 10.0,
}
OFF_SCREEN_PX = -500.0  # an offset, margin, indent or translation this far left or up leaves the screen
FAR_PX = 5000.0  # ... and this far right or down
SMALLEST_FONT_PX = 2.0
SMALLEST_OPACITY = 0.05
SMALLEST_CONTRAST = 1.5  # WCAG contrast ratio: 1 is the same colour; #ccc on white is 1.6
_OFFSETS = ("left", "top", "right", "bottom", "inset", "inset-inline-start", "inset-block-start")
_MARGINS = ("margin", "margin-left", "margin-top", "margin-inline-start", "margin-block-start")
_SIZES = ("width", "height", "max-width", "max-height")
_OVERFLOW = ("overflow", "overflow-x", "overflow-y")

# what `hiding` and the colour checks read; rules that set none of these are not matched
_READ = frozenset(
    {
        *("display", "visibility", "content-visibility", "opacity", "filter", "font-size", "font"),
        *("text-indent", "position", "transform", "translate", "scale", "clip", "clip-path"),
        *("color", "-webkit-text-fill-color", "background", "background-color"),
        *_OFFSETS,
        *_MARGINS,
        *_SIZES,
        *_OVERFLOW,
    }
)
_IMAGES = ("url", "gradient", "image", "image-set", "cross-fade", "element")

Colour = tuple[float, float, float, float]  # sRGB red, green, blue and alpha, 0 to 1
WHITE: Colour = (1.0, 1.0, 1.0, 1.0)
BLACK: Colour = (0.0, 0.0, 0.0, 1.0)


@dataclass
class Style:
    """The declarations that apply to one element, in the order they were written, inline last."""

    values: dict[str, list[list[Node]]] = field(default_factory=dict)

    def add(self, declarations: Iterable[Declaration]) -> None:
        for declaration in declarations:
            tokens = [token for token in declaration.value if token.type not in ("whitespace", "comment")]
            self.values.setdefault(declaration.lower_name, []).append(tokens)

    def of(self, *names: str) -> Iterator[list[Node]]:
        """Every value given to any of these properties."""
        for name in names:
            yield from self.values.get(name, [])

    def keywords(self, *names: str) -> set[str]:
        return {
            value[0].lower_value for value in self.of(*names) if len(value) == 1 and value[0].type == "ident"
        }


def is_read(name: str) -> bool:
    """Whether the checks here read a property (custom properties too: `var()` may use them)."""
    return name in _READ or name.startswith("--")


def custom_properties(style: Style, inherited: dict[str, list[Node]]) -> dict[str, list[Node]]:
    """The custom properties (`--name: value`) an element sees: its own over its parent's."""
    own = {name: values[-1] for name, values in style.values.items() if name.startswith("--")}
    return {**inherited, **own} if own else inherited


def substituted(style: Style, variables: dict[str, list[Node]]) -> Style:
    """The declarations with each `var(--name, fallback)` replaced by its value."""
    if not variables and not any(_uses_var(value) for values in style.values.values() for value in values):
        return style
    return Style(
        {
            name: [_substitute(value, variables, 0) for value in values]
            for name, values in style.values.items()
        }
    )


def _uses_var(value: Sequence[Node]) -> bool:
    return any(
        token.type == "function" and (token.lower_name == "var" or _uses_var(token.arguments))
        for token in value
    )


def _substitute(value: Sequence[Node], variables: dict[str, list[Node]], depth: int) -> list[Node]:
    result: list[Node] = []
    for token in value:
        if token.type != "function" or depth > 8:  # a variable that refers to itself stops somewhere
            result.append(token)
        elif token.lower_name == "var":
            parts = [item for item in token.arguments if item.type not in ("whitespace", "comment")]
            name = parts[0].value.lower() if parts and parts[0].type == "ident" else ""
            fallback = parts[2:] if len(parts) > 2 else []
            result += _substitute(variables.get(name, fallback), variables, depth + 1)
        else:
            arguments = _substitute(token.arguments, variables, depth + 1)
            result.append(FunctionBlock(token.source_line, token.source_column, token.name, arguments))
    return result


def declarations(css: str | list[Node]) -> list[Declaration]:
    """The declarations of an inline `style` attribute or a rule's block; what is not CSS is skipped."""
    parsed = tinycss2.parse_blocks_contents(css, skip_comments=True, skip_whitespace=True)
    return [node for node in parsed if isinstance(node, Declaration)]


@dataclass(frozen=True)
class Rule:
    """A style rule of a `<style>` element: its selector and declarations."""

    selector: str
    declarations: list[Declaration]


def rules(stylesheet: str) -> list[Rule]:
    """The style rules of a stylesheet, those inside @media (except print-only), @supports and @layer too."""
    return list(_rules(tinycss2.parse_stylesheet(stylesheet, skip_comments=True, skip_whitespace=True)))


def _rules(nodes: Sequence[Node]) -> Iterator[Rule]:
    for node in nodes:
        if node.type == "qualified-rule":
            found = declarations(node.content)
            if found:
                yield Rule(tinycss2.serialize(node.prelude).strip(), found)
        elif node.type == "at-rule" and node.content is not None:
            prelude = tinycss2.serialize(node.prelude).strip().lower()
            if node.lower_at_keyword in ("media", "supports", "layer", "container", "scope") and not (
                node.lower_at_keyword == "media" and prelude.startswith(("print", "only print"))
            ):
                yield from _rules(
                    tinycss2.parse_rule_list(node.content, skip_comments=True, skip_whitespace=True)
                )


def _pixels(token: Node, percent_of: float) -> float | None:
    if token.type == "number" and token.value == 0:
        return 0.0
    if token.type == "dimension" and token.lower_unit in _PIXELS:
        return float(token.value) * _PIXELS[token.lower_unit]
    if token.type == "percentage":
        return float(token.value) / 100 * percent_of
    return None


def _lengths(tokens: Iterable[Node], percent_of: float) -> list[float]:
    found = (_pixels(token, percent_of) for token in tokens)
    return [value for value in found if value is not None]


def _arguments(function: Node) -> list[Node]:
    return [token for token in function.arguments if token.type not in ("whitespace", "comment", "literal")]


def _off_screen(values: Iterable[float]) -> bool:
    return any(value <= OFF_SCREEN_PX or value >= FAR_PX for value in values)


def hiding(style: Style) -> str | None:
    """The reason the declarations hide an element's text (e.g. 'display:none'), or None."""
    if "none" in style.keywords("display"):
        return "display:none"
    if style.keywords("visibility") & {"hidden", "collapse"} or "hidden" in style.keywords(
        "content-visibility"
    ):
        return "visibility:hidden"
    for value in style.of("opacity"):
        if len(value) == 1 and value[0].type in ("number", "percentage"):
            amount = value[0].value / (100 if value[0].type == "percentage" else 1)
            if amount <= SMALLEST_OPACITY:
                return "opacity:0"
    for function in _flat(style.of("filter")):
        if function.type == "function" and function.lower_name == "opacity":
            amounts = [
                t.value / (100 if t.type == "percentage" else 1)
                for t in _arguments(function)
                if t.type in ("number", "percentage")
            ]
            if amounts and amounts[0] <= SMALLEST_OPACITY:
                return "opacity:0"
    sizes = [_lengths(value, 16.0)[:1] for value in style.of("font-size")]
    sizes += [_lengths(value, 16.0)[:1] for value in style.of("font")]  # `font: 0/0 a`: the first length
    if any(size and size[0] < SMALLEST_FONT_PX for size in sizes):
        return "font-size:0"
    if any(_off_screen(_lengths(value, 500.0)) for value in style.of("text-indent")):
        return "text-indent off the screen"
    positioned = style.keywords("position") & {"absolute", "fixed", "relative", "sticky"}
    if positioned and any(_off_screen(_lengths(value, 500.0)) for value in style.of(*_OFFSETS)):
        return "positioned off the screen"
    if any(value <= OFF_SCREEN_PX for value in _lengths(_flat(style.of(*_MARGINS)), 500.0)):
        return "margin off the screen"
    transform = _transform(style)
    if transform:
        return transform
    if any(_clipped(value) for value in style.of("clip", "clip-path")):
        return "clipped to nothing"
    if style.keywords(*_OVERFLOW) & {"hidden", "clip"} and any(
        size <= 1 for size in _lengths(_flat(style.of(*_SIZES)), 500.0)
    ):
        return "zero size with overflow hidden"
    return None


def _flat(values: Iterable[list[Node]]) -> Iterator[Node]:
    for value in values:
        yield from value


def _transform(style: Style) -> str | None:
    translations = list(style.of("translate"))  # the properties, lengths without a function
    scales = list(style.of("scale"))
    for function in _flat(style.of("transform")):
        if function.type == "function" and function.lower_name.startswith("translate"):
            translations.append(_arguments(function))
        elif function.type == "function" and function.lower_name.startswith("scale"):
            scales.append(_arguments(function)[:2])  # scale3d's third factor flattens nothing on a page
    if any(_off_screen(_lengths(value, 500.0)) for value in translations):
        return "translated off the screen"
    if any(token.type in ("number", "percentage") and token.value == 0 for token in _flat(scales)):
        return "scale(0)"
    return None


def _clipped(value: list[Node]) -> bool:
    """`clip: rect(0 0 0 0)`, `clip-path: inset(50%)`, `circle(0)`: nothing of the box is left."""
    if len(value) != 1 or value[0].type != "function":
        return False
    function, arguments = value[0], _arguments(value[0])
    if function.lower_name == "rect":
        edges = _lengths(arguments, 500.0)
        if len(edges) != 4:  # `auto` keeps an edge
            return False
        top, right, bottom, left = edges
        return bottom - top <= 1 or right - left <= 1
    if function.lower_name == "inset":
        insets = _lengths(arguments, 200.0)  # percentages of the box: 50% from each side is nothing
        return bool(insets) and max(insets) >= 100
    if function.lower_name in ("circle", "ellipse"):
        radii = _lengths(arguments[:1], 200.0)
        return bool(radii) and radii[0] <= 0
    return False


def colours(style: Style, *names: str) -> list[Colour] | None:
    """The colours given to these properties (text or background); None if none is given. A background
    image makes the background unknown: an empty list, which no colour is compared with."""
    found: list[Colour] = []
    given = False
    for value in style.of(*names):
        given = True
        for token in value:
            if token.type == "url" or (
                token.type == "function"
                and token.lower_name.endswith(("url", "gradient", "image", "image-set"))
            ):
                return []
            colour = parse_colour(token)
            if colour is not None:
                found.append(colour)
    return found if given else None


def parse_colour(value: Node | str) -> Colour | None:
    """A CSS colour as sRGB and alpha; None for what is not a colour (or is `currentcolor`)."""
    parsed = color4.parse_color(value)
    if parsed is None or isinstance(parsed, str):
        return None
    red, green, blue = (min(max(float(part or 0), 0.0), 1.0) for part in parsed.to("srgb").coordinates)
    return red, green, blue, float(parsed.alpha if parsed.alpha is not None else 1)


def _luminance(colour: Colour) -> float:
    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    red, green, blue, _ = colour
    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def _over(top: Colour, below: Colour) -> Colour:
    alpha = top[3]
    red, green, blue = (top[i] * alpha + below[i] * (1 - alpha) for i in range(3))
    return red, green, blue, 1.0


def unreadable(text: Colour, background: Colour) -> bool:
    """Whether text of this colour cannot be read on this background (WCAG contrast below 1.5)."""
    if text[3] <= SMALLEST_OPACITY:
        return True
    solid = _over(background, WHITE)
    lighter, darker = sorted((_luminance(_over(text, solid)), _luminance(solid)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05) < SMALLEST_CONTRAST
