"""Test tiers, selectable with markers (`pytest -m unit`, `-m slack`, `-m integration`, `-m deploy`).

Each test gets exactly one tier from what it uses, so a new test is placed without being marked by hand:
- deploy: builds or runs the container image or the compose stack;
- slack: drives Steward's Slack app (a fixture or the test itself starts `running_bot` or builds the app);
- integration: real servers, subprocesses or PostgreSQL (a `postgresql` parameter, the `slow` marker,
  or its code or fixtures start a process, a Chroma server or replicas), or the real embedding model
  (the `embedder` fixture, or the `real_model` marker on a test whose services need its semantics);
- unit: everything else (in-process, SQLite, loopback fakes, the fake embedder).
"""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

TIERS = ("unit", "slack", "integration", "deploy")
DEPLOY_MODULES = frozenset({"test_image.py", "test_compose.py"})
SLACK_WORDS = ("running_bot(", "RunningBot", "build_test_app(", "serving(")
INTEGRATION_WORDS = ("subprocess", "Popen", "chroma_server", "start_replicas", "postgres_database")
TESTS = Path(__file__).resolve().parents[1]


@functools.cache
def _source(function: Any) -> str:
    """The source of a test or fixture function defined under tests/ ("" for pytest's own fixtures)."""
    try:
        if not Path(inspect.getsourcefile(function) or "").resolve().is_relative_to(TESTS):
            return ""
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


CALL = re.compile(r"\b([A-Za-z_]\w*)\(")


def _with_helpers(functions: list[Any], module: Any) -> list[Any]:
    """The functions and, transitively, the helpers of their test module that they call (a test that
    runs `steward` through `_run_cli(...)` starts a process as surely as one that calls Popen itself)."""
    found: list[Any] = []
    pending = list(functions)
    while pending:
        function = pending.pop()
        if function in found:
            continue
        found.append(function)
        for name in CALL.findall(_source(function)):
            helper = getattr(module, name, None)
            if inspect.isfunction(helper) and helper.__module__ == getattr(module, "__name__", None):
                pending.append(helper)
    return found


def tier(item: pytest.Item) -> str:
    """The one tier of a collected test."""
    if item.path.name in DEPLOY_MODULES:
        return "deploy"
    functions = [getattr(item, "function", None)]
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is not None:
        functions += [definition.func for defs in fixtures.name2fixturedefs.values() for definition in defs]
    functions = _with_helpers([f for f in functions if f is not None], getattr(item, "module", None))
    sources = [_source(function) for function in functions]
    if any(word in source for source in sources for word in SLACK_WORDS):
        return "slack"
    callspec = getattr(item, "callspec", None)
    parameters = list(callspec.params.values()) if callspec is not None else []
    if (
        "postgresql" in parameters
        or item.get_closest_marker("slow") is not None
        or item.get_closest_marker("real_model") is not None
        or "embedder" in getattr(item, "fixturenames", ())
        or any(word in source for source in sources for word in INTEGRATION_WORDS)
    ):
        return "integration"
    return "unit"


def mark_tiers(items: list[pytest.Item]) -> None:
    """Give every collected test its tier's marker."""
    for item in items:
        item.add_marker(getattr(pytest.mark, tier(item)))
