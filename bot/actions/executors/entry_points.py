"""How the `python` executor calls an entry point, and what `steward policy check` learns from its signature.

Two ways to write an entry point:
- keyword-only parameters named after the action's parameters, plus `request_id`
  (`def toggle(*, flag: str, env: str, request_id: str) -> str`): called by name, so its signature
  says which parameters it reads and a mismatch with the catalog is found before anything runs;
- `def run(params: dict, request_id: str)`: called with the parameters as one dict and the request id.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from bot.actions.models import ActionSpec

REQUEST_ID = "request_id"


def by_keyword(function: Callable[..., Any]) -> bool:
    """Whether the entry point takes keyword-only parameters (then it is called by name)."""
    return _keyword_only(_signature(function))


def _keyword_only(signature: inspect.Signature | None) -> bool:
    return signature is not None and any(
        parameter.kind is inspect.Parameter.KEYWORD_ONLY for parameter in signature.parameters.values()
    )


def call(function: Callable[..., Any], params: Mapping[str, Any], request_id: str) -> Any:
    """Call the entry point the way its signature asks: by name, or with `(params, request_id)`."""
    signature = _signature(function)
    if signature is None or not _keyword_only(signature):
        return function(dict(params), request_id)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    extra = {REQUEST_ID: request_id} if takes_any or REQUEST_ID in signature.parameters else {}
    return function(**dict(params), **extra)


def entry_point_problem(action: ActionSpec) -> str | None:
    """Why the action's entry point cannot run its parameters, as far as importing it and reading its
    signature can tell; None when it looks right (or cannot be read, such as a builtin)."""
    written = action.executor.entry_point or ""
    module_name, _, attribute = written.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # any failure while importing someone else's module is worth showing
        return (
            f"module {module_name!r} cannot be imported ({type(error).__name__}: {error}); install it, "
            "make it importable from Steward's working directory, or fix the entry point"
        )
    for part in attribute.split("."):
        if not hasattr(target, part):
            return f"module {module_name!r} has no attribute {attribute!r}; fix the entry point"
        target = getattr(target, part)
    if not callable(target):
        return f"{written} is not callable; name a function"
    return signature_problem(target, action)


def signature_problem(function: Callable[..., Any], action: ActionSpec) -> str | None:
    """What in the function's signature disagrees with the action's parameters, or None."""
    signature = _signature(function)
    if signature is None:
        return None
    if not by_keyword(function):
        try:
            signature.bind({}, "request-id")
        except TypeError as error:
            return (
                f"cannot be called as function(params, request_id) ({error}); take (params, request_id), "
                "or keyword-only parameters named after the action's parameters"
            )
        return None
    parameters = signature.parameters.values()
    named = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    declared = {spec.name: spec for spec in action.params}
    # A parameter the request may lack: optional in the catalog and without a default there.
    may_be_absent = {name for name, spec in declared.items() if not spec.required and spec.default is None}
    parts = []
    if not takes_any and (unaccepted := [name for name in declared if name not in named]):
        parts.append(f"does not accept {_names(unaccepted)}")
    required = [p for p in parameters if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD]
    if undeclared := [
        p.name
        for p in required
        if p.name not in declared and p.name != REQUEST_ID and p.kind is not p.VAR_POSITIONAL
    ]:
        parts.append(f"requires {_names(undeclared)}, which {action.name} does not declare")
    if absent := [p.name for p in required if p.name in may_be_absent]:
        parts.append(
            f"requires {_names(absent)}, which a request may leave out (required: false, no default)"
        )
    if not parts:
        return None
    catalog = ", ".join(declared) or "none"
    return (
        f"{action.executor.entry_point} {'; '.join(parts)}. It is called with the action's parameters by "
        f"name ({catalog}) and request_id: rename the function's parameters to match, or change the catalog"
    )


def _names(names: list[str]) -> str:
    """`'a'`, or `'a', 'b'`."""
    return ", ".join(repr(name) for name in names)


def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, or None when Python cannot tell (some builtins)."""
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None
