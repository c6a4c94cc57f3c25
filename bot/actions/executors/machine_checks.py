"""Warnings `steward policy check` adds from the machine it runs on: will each executor find what it needs?

Three checks, each a warning because the server may run elsewhere, with another environment:
- a `python` entry point is imported and its signature compared with the action's parameters;
- a `command` or `mcp` executor's program must be on PATH (or exist, when written as a path);
- a `${VAR}` in a URL (and the variables `secret_env` and `token_env` name) should be set, or the action
  fails at run time.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.actions.executors.entry_points import entry_point_problem
from bot.actions.models import ActionSpec

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL_FIELDS = ("url", "tracking_uri", "registry_uri")


@dataclass(frozen=True)
class ExecutorWarning:
    """Something the executor will not find when it runs: the executor field at fault and what to do."""

    field: str
    message: str


def executor_warnings(action: ActionSpec, environ: Mapping[str, str]) -> list[ExecutorWarning]:
    """Every warning for one action's executor, judged against this environment."""
    executor = action.executor
    found: list[ExecutorWarning] = []
    if executor.kind == "python" and executor.entry_point and (problem := entry_point_problem(action)):
        found.append(ExecutorWarning("entry_point", problem))
    if (
        executor.kind in ("command", "mcp")
        and executor.program
        and (problem := _program_problem(executor.program, environ))
    ):
        found.append(ExecutorWarning("program", problem))
    for field in _URL_FIELDS:
        value = getattr(executor, field)
        for name in dict.fromkeys(_ENV_REFERENCE.findall(value or "")):
            if name not in environ:
                message = (
                    f"${{{name}}} is not set here, so the action fails when it runs unless the server's "
                    f"environment sets {name}; see the Settings table in docs/reference.md"
                )
                found.append(ExecutorWarning(field, message))
    if executor.kind == "webhook" and executor.secret_env and not environ.get(executor.secret_env):
        message = (
            f"{executor.secret_env} is not set here, so the action fails when it runs unless the server's "
            "environment sets it to the webhook's shared signing key"
        )
        found.append(ExecutorWarning("secret_env", message))
    if executor.kind == "mcp" and executor.url and executor.token_env and not environ.get(executor.token_env):
        message = (
            f"{executor.token_env} is not set here, so the action fails when it runs unless the server's "
            "environment sets it to the MCP server's bearer token"
        )
        found.append(ExecutorWarning("token_env", message))
    return found


def _program_problem(program: str, environ: Mapping[str, str]) -> str | None:
    """Why the program would not be found when the action runs (the child gets this PATH), or None."""
    if os.sep in program:
        if Path(program).is_file() and os.access(program, os.X_OK):
            return None
        return f"{program!r} is not an executable file here, so the action fails when it runs; fix the path"
    if shutil.which(program, path=environ.get("PATH", os.defpath)) is not None:
        return None
    return (
        f"{program!r} is not on PATH here, so the action fails when it runs; install it on the server, "
        "write its full path, or change the program"
    )
