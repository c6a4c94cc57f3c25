"""Steward's error vocabulary: one base error whose message is for the user, a few kinds, one renderer.

A known failure is a `StewardError` of one kind: `Unavailable` (a backend cannot be reached),
`ConfigurationError` (settings or files are wrong), `BadRequest` (what the user gave cannot be used;
`UsageError` when it is the command line itself) or `Refused` (policy or permission said no). The
message names the file, line, field or setting at fault and says what to do. The CLI and Slack render
them here, so the kinds are told the same way everywhere; anything else is unexpected, logged loudly
with a reference the user can quote.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

EXIT_FAILURE = 1
EXIT_USAGE = 2
_FIELD = re.compile(r"\{(\w+)\}")


class StewardError(Exception):
    """A known failure; `str(error)` is the message for the user."""

    kind: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_FAILURE
    label: ClassVar[str] = "error"  # how the CLI introduces the message: `steward: error: …`

    @property
    def user_message(self) -> str:
        """What the user is told (the message the error was raised with)."""
        return str(self)


class Unavailable(StewardError):  # noqa: N818 - a kind, named as issue 16 names it
    """A backend (database, index, data source) cannot be reached or read."""

    kind = "unavailable"


class ConfigurationError(StewardError):
    """A setting or a configuration file cannot be used; the message names it."""

    kind = "configuration"


class BadRequest(StewardError):  # noqa: N818 - a kind, named as issue 16 names it
    """What the user gave (a file, parameters, a request body) cannot be used."""

    kind = "bad_request"


class UsageError(BadRequest):
    """The command line itself is wrong (exit 2, as argparse's own usage errors)."""

    exit_code = EXIT_USAGE
    label = "usage error"


class Refused(StewardError):  # noqa: N818 - a kind, named as issue 16 names it
    """Policy or permission said no; nothing happened."""

    kind = "refused"


def cli_report(error: StewardError) -> tuple[int, str]:
    """The exit code and the line on standard error for a known failure of a command."""
    return error.exit_code, f"steward: {error.label}: {error.user_message}"


def new_reference() -> str:
    """A short id the user can quote and the log carries."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Told:
    """How one failure is told in a situation: the user's text and the log line.

    Both are templates: `{reference}`, `{error}` (the message), `{error_type}` (the class of the
    driver's own error when the error wraps one) and the situation's details fill them in.
    """

    text: str
    log: str = ""  # empty: not logged
    level: int = logging.ERROR


@dataclass(frozen=True)
class Situation:
    """What the user was doing, and how each failure is told to them in Slack.

    `told` maps an error class (a kind, or a class the situation tells apart) to its words: the most
    specific class of the error's ancestry found there wins. Anything else is unexpected: `unexpected`
    is said with a reference, and `context` is logged with the traceback.
    """

    unexpected: str
    context: str
    told: Mapping[type[BaseException], Told] = field(default_factory=dict)

    def render(self, error: BaseException, log: logging.Logger, reference: str = "", **details: str) -> str:
        """The text for the user; the failure is logged with the reference the text quotes."""
        fields = {
            **details,
            "reference": reference or new_reference(),
            "error": str(error),
            "error_type": type(getattr(error, "orig", None) or error).__name__,
        }
        told = next((self.told[cls] for cls in type(error).__mro__ if cls in self.told), None)
        if told is None:
            log.error(_fill(self.context, fields), exc_info=error)
            return _fill(self.unexpected, fields)
        if told.log:
            log.log(told.level, _fill(told.log, fields))
        return _fill(told.text, fields)


def _fill(template: str, fields: Mapping[str, str]) -> str:
    """`template` with each `{name}` of `fields` filled in (other braces, as in Slack texts, stay)."""
    return _FIELD.sub(lambda match: fields.get(match.group(1), match.group(0)), template)
