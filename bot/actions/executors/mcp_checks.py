"""`steward policy check --tools`: do the catalog's mcp actions match the tools their servers list?

For each action of kind `mcp`, the downstream server is started or reached (once per server), its tools
listed, and the action compared with its tool: the tool exists (else close matches are suggested), every
property the tool's input schema requires is a parameter, every parameter is a property (when the schema
takes no others: `additionalProperties: false`), and each parameter's type fits the property's. Each
problem names the policy file and line of the action. A server that cannot be reached is a problem too,
reported as one line, not a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from bot.actions.executors.dispatch import ExecutionError, mcp_downstream
from bot.actions.executors.mcp_tools import DownstreamUnavailableError, list_tools
from bot.actions.models import ActionSpec, ParamSpec
from bot.actions.policy.rules import Policy, suggest

# The JSON Schema types a catalog parameter's value fits: an integer is a number too.
_FITS = {
    "string": {"string"},
    "integer": {"integer", "number"},
    "number": {"number"},
    "boolean": {"boolean"},
}


def tool_report(policy: Policy, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """What `steward policy check --tools` adds: 0 with a summary, or 1 with every problem, one a line."""
    env = os.environ if environ is None else environ
    actions = [action for action in policy.actions.values() if action.executor.kind == "mcp"]
    problems: list[str] = []
    listings: dict[tuple[Any, ...], dict[str, dict[str, Any]] | str] = {}
    for action in actions:
        source = policy.action_sources[action.name]
        where = f"{source.file}, line {source.line}: actions.{action.name}.executor"
        problems.extend(f"{where}{problem}" for problem in _action_problems(action, env, listings))
    if problems:
        count = len(problems)
        header = f"{count} problem{'s' if count != 1 else ''} with the tools of mcp actions:"
        return 1, "\n".join([header, *(f"  {problem}" for problem in problems)])
    servers = len(listings)
    return (
        0,
        f"mcp tools OK: {len(actions)} actions on {servers} server{'s' * (servers != 1)} match their tools",
    )


def _action_problems(
    action: ActionSpec,
    env: Mapping[str, str],
    listings: dict[tuple[Any, ...], dict[str, dict[str, Any]] | str],
) -> Iterable[str]:
    """Problems with one action, each starting with the field it is about (`.tool: …`, `: …`)."""
    try:
        downstream = mcp_downstream(action, env)
    except ExecutionError as error:
        yield f": {error}"
        return
    key = (downstream.program, downstream.args, downstream.url, tuple(sorted(downstream.headers.items())))
    if key not in listings:
        try:
            tools = list_tools(downstream, timeout=action.executor.timeout_seconds)
            listings[key] = {tool.name: tool.input_schema for tool in tools}
        except DownstreamUnavailableError as failure:
            listings[key] = (
                f"could not list the tools of the MCP server {downstream.describe()}: {failure.reason}"
            )
    listing = listings[key]
    if isinstance(listing, str):
        yield f": {listing}"
        return
    tool = action.executor.tool or action.name
    if tool not in listing:
        known = ", ".join(sorted(listing)) or "none"
        close = suggest(tool, listing)
        yield f".tool: the server {downstream.describe()} has no tool {tool!r}{close}; it has {known}"
        return
    for problem in schema_problems(action.params, listing[tool]):
        yield f".tool: {tool}: {problem}"


def schema_problems(params: Iterable[ParamSpec], schema: Mapping[str, Any]) -> list[str]:
    """How the catalog's parameters disagree with a tool's input schema (a JSON Schema object)."""
    declared = {param.name: param for param in params}
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = [name for name in schema.get("required") or () if isinstance(name, str)]
    problems: list[str] = []
    for name in required:
        param = declared.get(name)
        if param is None:
            problems.append(f"the tool requires {name!r}, which is not a parameter of the action; add it")
        elif not param.required and param.default is None:
            problems.append(f"the tool requires {name!r}; make the parameter required or give it a default")
    for name, param in declared.items():
        if name not in properties:
            if schema.get("additionalProperties") is False:
                listed = ", ".join(sorted(properties)) or "none"
                problems.append(f"{name!r} is not an argument of the tool, which takes only {listed}")
            continue
        types = _schema_types(properties[name])
        if types and not _FITS[param.type] & types:
            wanted = " or ".join(sorted(types))
            problems.append(f"{name!r} is a {param.type} parameter, but the tool takes {wanted}")
    return problems


def _schema_types(schema: Any) -> set[str]:
    """The JSON types a property's value may have; empty: any type. `null` (an absent optional argument)
    is left out: a value is never checked against it."""
    return _written_types(schema) - {"null"}


def _written_types(schema: Any) -> set[str]:
    """A schema's `type`, or the types of its anyOf/oneOf options; empty when any type is allowed."""
    if not isinstance(schema, dict):
        return set()
    found: set[str] = set()
    written = schema.get("type")
    if isinstance(written, str):
        found.add(written)
    elif isinstance(written, list):
        found.update(item for item in written if isinstance(item, str))
    for combinator in ("anyOf", "oneOf"):
        for option in schema.get(combinator) or ():
            if not (option_types := _written_types(option)):
                return set()  # an option of any type: anything fits
            found |= option_types
    return found
