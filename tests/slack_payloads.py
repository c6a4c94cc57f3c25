"""What Slack would refuse in a payload Steward sends: slack_sdk's own models plus the limits they skip.

`block_problems`, `message_problems` and `view_problems` list what is wrong (empty when Slack would take
it); `check_message` and `check_view` raise `PayloadError` listing it. The fake Slack runs `call_problems`
on every chat.postMessage, chat.postEphemeral, chat.update, chat.stopStream, views.* call and
response_url post it gets, so every Slack test checks every payload it makes Steward send.

The limits are Slack's documented ones (api.slack.com/reference/block-kit); slack_sdk checks some of
them (section text, header text, view block counts), not all (button text, block counts per message,
ids, fields, context elements, modal titles).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_ID = 255  # action_id, block_id, callback_id
MAX_MODAL_TITLE = 24  # also the submit and close buttons
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_PRIVATE_METADATA = 3000
MISSING_TEXT = "blocks without a `text` fallback (notifications and screen readers show nothing)"

# Methods whose payload the fake checks, and whether a message needs a `text` fallback beside its blocks.
MESSAGE_METHODS = ("chat.postMessage", "chat.postEphemeral", "chat.update", "response_url")
VIEW_METHODS = ("views.publish", "views.open", "views.update", "views.push")
STREAM_METHODS = ("chat.stopStream",)  # blocks under a streamed answer; its text is the streamed markdown


class PayloadError(AssertionError):
    """A payload Slack would refuse; `problems` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("Slack would refuse this payload:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def check_message(blocks: Any, text: Any) -> None:
    """Raise PayloadError unless Slack takes a message with these blocks and this fallback text."""
    problems = message_problems(blocks, text)
    if problems:
        raise PayloadError(problems)


def check_view(view: Any) -> None:
    """Raise PayloadError unless Slack takes this view (Home tab or modal)."""
    problems = view_problems(view)
    if problems:
        raise PayloadError(problems)


def message_problems(blocks: Any, text: Any) -> list[str]:
    """What Slack would refuse in a message: its blocks, and a missing notification fallback."""
    if blocks is None or blocks == []:
        return []
    problems = block_problems(blocks, MAX_MESSAGE_BLOCKS)
    if not isinstance(text, str) or not text.strip():
        problems.append(MISSING_TEXT)
    return problems


def view_problems(view: Any) -> list[str]:
    """What Slack would refuse in a view: slack_sdk's View checks, its blocks, title and ids."""
    if not isinstance(view, Mapping):
        return [f"view must be an object, not {type(view).__name__}"]
    problems = block_problems(view.get("blocks"), MAX_VIEW_BLOCKS)
    try:
        View(**dict(view)).validate_json()
    except (SlackObjectFormationError, TypeError) as error:
        problems.append(f"view: {error}")
    if view.get("type") == "modal":
        for key in ("title", "submit", "close"):
            problems += _too_long(f"modal {key}", _text_of(view.get(key)), MAX_MODAL_TITLE)
    problems += _too_long("callback_id", view.get("callback_id"), MAX_ID)
    problems += _too_long("private_metadata", view.get("private_metadata"), MAX_PRIVATE_METADATA)
    return problems


def call_problems(method: str, args: Mapping[str, Any]) -> list[str]:
    """What Slack would refuse in one recorded call of `method` (nothing for methods not checked)."""
    if method in VIEW_METHODS:
        return [f"{method}: {p}" for p in view_problems(args.get("view"))]
    if method in STREAM_METHODS:
        return [f"{method}: {p}" for p in block_problems(args.get("blocks"), MAX_MESSAGE_BLOCKS)]
    if method not in MESSAGE_METHODS:
        return []
    problems = message_problems(args.get("blocks"), args.get("text"))
    for index, attachment in enumerate(args.get("attachments") or []):
        if isinstance(attachment, Mapping) and attachment.get("blocks"):
            found = block_problems(attachment["blocks"], MAX_MESSAGE_BLOCKS)
            problems += [f"attachment {index}: {p}" for p in found]
    return [f"{method}: {p}" for p in problems]


def block_problems(blocks: Any, max_blocks: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """What slack_sdk's Block Kit models and Slack's other limits find wrong in a list of blocks.

    A block must parse into its model (not None: an unknown type), pass the model's own checks and
    come back unchanged from it (so misspelt fields are caught), and keep the limits slack_sdk skips.
    """
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return [f"blocks must be a list, not {type(blocks).__name__}"]
    problems = [f"{len(blocks)} blocks, Slack allows {max_blocks}"] if len(blocks) > max_blocks else []
    for index, raw in enumerate(blocks):
        where = f"block {index}"
        parsed = Block.parse(raw) if isinstance(raw, dict) else None
        if parsed is None:
            problems.append(f"{where}: not a known block ({raw!r:.80})")
            continue
        problems += [f"{where}: {p}" for p in _limits(raw)]
        try:
            if parsed.to_dict() != raw:  # to_dict runs the model's own checks first
                problems.append(f"{where}: fields slack_sdk does not know ({raw!r:.200})")
        except SlackObjectFormationError as error:
            problems.append(f"{where}: {error}")
    return problems


def _limits(block: Mapping[str, Any]) -> list[str]:
    """Limits of one block that slack_sdk does not check."""
    kind = block.get("type")
    problems = _too_long("block_id", block.get("block_id"), MAX_ID)
    if kind == "section":
        problems += _too_long("section text", _text_of(block.get("text")), MAX_SECTION_TEXT)
        fields = block.get("fields") or []
        if len(fields) > MAX_SECTION_FIELDS:
            problems.append(f"{len(fields)} section fields, Slack allows {MAX_SECTION_FIELDS}")
        for number, field in enumerate(fields):
            problems += _too_long(f"section field {number}", _text_of(field), MAX_FIELD_TEXT)
    elif kind == "header":
        problems += _too_long("header text", _text_of(block.get("text")), MAX_HEADER_TEXT)
    elif kind == "context":
        elements = block.get("elements") or []
        if len(elements) > MAX_CONTEXT_ELEMENTS:
            problems.append(f"{len(elements)} context elements, Slack allows {MAX_CONTEXT_ELEMENTS}")
    elif kind == "actions":
        elements = block.get("elements") or []
        if len(elements) > MAX_ACTIONS_ELEMENTS:
            problems.append(f"{len(elements)} actions elements, Slack allows {MAX_ACTIONS_ELEMENTS}")
    for element in _elements(block):
        problems += _too_long("action_id", element.get("action_id"), MAX_ID)
        if element.get("type") == "button":
            problems += _too_long("button text", _text_of(element.get("text")), MAX_BUTTON_TEXT)
            problems += _too_long("button value", element.get("value"), MAX_BUTTON_VALUE)
        for option in _options(element):
            problems += _too_long("option text", _text_of(option.get("text")), MAX_OPTION_TEXT)
            problems += _too_long("option value", option.get("value"), MAX_OPTION_VALUE)
    return problems


def _elements(block: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The interactive elements of a block: an accessory, an input's element, an actions block's."""
    for key in ("accessory", "element"):
        if isinstance(block.get(key), Mapping):
            yield block[key]
    if block.get("type") in ("actions", "input"):
        for element in block.get("elements") or []:
            if isinstance(element, Mapping):
                yield element


def _options(element: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The options of a select, radio or checkbox element (also in option groups, and the initial ones)."""
    for key in ("options", "initial_options"):
        yield from (o for o in element.get(key) or [] if isinstance(o, Mapping))
    for group in element.get("option_groups") or []:
        yield from (o for o in group.get("options") or [] if isinstance(o, Mapping))
    if isinstance(element.get("initial_option"), Mapping):
        yield element["initial_option"]


def _text_of(value: Any) -> Any:
    """The string of a text object (or the value itself when it is not one)."""
    return value.get("text") if isinstance(value, Mapping) else value


def _too_long(what: str, value: Any, limit: int) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"{what} of {len(value)} characters, Slack allows {limit}"]
    return []
