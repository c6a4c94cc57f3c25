"""One error vocabulary: every known error has a kind, the CLI and Slack tell each kind one way."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from bot.actions.models import Refusal
from bot.actions.policy.engine import ParamError, PolicyError
from bot.answers.service import EmptyQuestionError
from bot.config import SettingsError
from bot.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    BadRequest,
    ConfigurationError,
    Refused,
    Situation,
    StewardError,
    Told,
    Unavailable,
    cli_report,
)
from bot.slack.intake import RefusedError
from bot.store.catalog import CatalogError
from tests.conftest import ROOT

# The base itself, and a signal raised and caught inside one module to switch readers (never told).
INTERNAL = {"StewardError", "NotColumnarError"}


def _exception_classes() -> dict[str, list[str]]:
    """Every exception class defined in bot/ and ingest/, with the bases it names."""
    found: dict[str, list[str]] = {}
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "ingest").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                found[f"{Path(path).relative_to(ROOT)}:{node.name}"] = [ast.unparse(b) for b in node.bases]
    return found


def test_every_error_class_has_a_kind() -> None:
    """No exception class of Steward's derives straight from Exception (or ValueError) alone."""
    bare = {
        where: bases
        for where, bases in _exception_classes().items()
        if where.rsplit(":", 1)[1] not in INTERNAL and set(bases) <= {"Exception", "ValueError"}
    }
    assert len(_exception_classes()) > 20
    assert bare == {}


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (
            EmptyQuestionError("the question is empty"),
            EXIT_USAGE,
            "steward: usage error: the question is empty",
        ),
        (ParamError(["model: required"]), EXIT_FAILURE, "steward: error: "),
        (SettingsError("STEWARD_PORT: not a port"), EXIT_FAILURE, "steward: error: STEWARD_PORT: not a port"),
        (CatalogError("catalog unreadable"), EXIT_FAILURE, "steward: error: catalog unreadable"),
    ],
)
def test_the_cli_tells_a_known_error_in_one_line(error: StewardError, code: int, line: str) -> None:
    """Exit 2 and `usage error` for the command line, exit 1 and `error` for everything else."""
    got_code, got_line = cli_report(error)
    assert got_code == code and got_line.startswith(line) and str(error) in got_line


def test_existing_errors_keep_their_other_bases() -> None:
    """Code that catches ValueError still catches the errors that were ValueErrors."""
    assert isinstance(EmptyQuestionError("x"), ValueError) and isinstance(EmptyQuestionError("x"), BadRequest)
    assert isinstance(ParamError(["x"]), ValueError) and isinstance(ParamError(["x"]), BadRequest)
    assert isinstance(PolicyError(Path("policies"), ["x"]), ConfigurationError)
    assert isinstance(CatalogError("x"), Unavailable)
    assert isinstance(RefusedError(403, "x"), Refused)


SITUATION = Situation(
    unexpected="Something went wrong (reference `{reference}`).",
    context="failed ref={reference} user={user}",
    told={
        Unavailable: Told(
            "I cannot reach it (reference `{reference}`).", "unavailable ref={reference} error={error}"
        ),
        CatalogError: Told("The catalog is damaged.", "catalog ref={reference}", logging.WARNING),
        BadRequest: Told("Say it again {like this}."),
    },
)


def test_slack_is_told_the_most_specific_words_a_situation_has(caplog: pytest.LogCaptureFixture) -> None:
    """The error's own class wins over its kind; the log carries the reference the user sees."""
    log = logging.getLogger("steward.test_errors")
    with caplog.at_level(logging.INFO, logger=log.name):
        assert SITUATION.render(CatalogError("x"), log, "ref1") == "The catalog is damaged."
        assert (
            SITUATION.render(Unavailable("db down"), log, "ref2") == "I cannot reach it (reference `ref2`)."
        )
        assert SITUATION.render(ParamError(["x"]), log, "ref3") == "Say it again {like this}."
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "catalog ref=ref1"),
        (logging.ERROR, "unavailable ref=ref2 error=db down"),
    ]


def test_the_unexpected_is_logged_with_its_traceback_and_a_reference(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error outside the situation's words gets the reference and a logged traceback."""
    log = logging.getLogger("steward.test_errors")
    try:
        raise KeyError("boom")
    except KeyError as exc:
        text = SITUATION.render(exc, log, user="U1")
    reference = text.split("`")[1]
    assert len(reference) == 12 and text == f"Something went wrong (reference `{reference}`)."
    (record,) = caplog.records
    assert record.getMessage() == f"failed ref={reference} user=U1" and record.exc_info is not None


@pytest.mark.parametrize(
    ("reason", "approve", "reject"),
    [
        (
            "requester",
            "you are the requester; someone else in ml or sre must approve",
            "you are the requester; someone else in ml or sre must reject",
        ),
        # the old word swap made "approvers" "rejectrs"
        ("outside", "approvers must be in ml or sre", "rejecters must be in ml or sre"),
        ("already", "you have already approved; each approver counts once", None),
    ],
)
def test_a_refusal_is_rendered_for_the_verb_clicked(reason: str, approve: str, reject: str | None) -> None:
    """A typed refusal says what the clicked button does; approve's words are the policy engine's."""
    refusal = Refusal(reason=reason, groups="ml or sre")  # type: ignore[arg-type]
    assert refusal.render("approve") == approve
    if reject is not None:
        assert refusal.render("reject") == reject
